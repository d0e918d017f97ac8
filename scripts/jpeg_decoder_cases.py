#!/usr/bin/python3
"""Small random JPEGs for tests/images_jpeg_decoder_test.ts, which checks that the vendored jpeg-decoder's
WASM SIMD kernels (wasm/vendor/jpeg-decoder) decode to the same bytes as the unmodified crate.

    /usr/bin/python3 scripts/jpeg_decoder_cases.py    # Debian's python3-pil and python3-numpy

Writes tests/fixtures/images/jpeg_decoder/*.jpg: noise, gradients and flat colour at odd and block-aligned
sizes, baseline and progressive, gray, RGB at 4:4:4, 4:2:2 and 4:2:0, CMYK, qualities 1-100, and coarse
custom quantization tables (some with 16-bit entries, whose products overflow the IDCT's 32-bit arithmetic).
Deterministic: the same bytes come out on every run. The expected hashes come from
scripts/jpeg_decoder_hashes.ts run on the unmodified decoder's build.
"""

import io
import pathlib
import random

import numpy as np
from PIL import Image

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/images/jpeg_decoder"
SIZES = [(1, 1), (2, 3), (7, 9), (8, 8), (15, 17), (16, 16), (17, 15), (33, 31), (64, 48), (65, 33), (47, 64)]


def pixels(kind, w, h, rng):
    if kind == "noise":
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if kind == "flat":
        return np.full((h, w, 3), rng.integers(0, 256, 3), dtype=np.uint8)
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x * 255 / w, y * 255 / h, (x + y) * 37 % 256], -1) + rng.normal(0, 30, (h, w, 3))
    return np.clip(a, 0, 255).astype(np.uint8)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.jpg"):
        old.unlink()
    pick = random.Random(4)
    for k in range(48):
        w, h = SIZES[k % len(SIZES)]
        kind = ["noise", "smooth", "flat"][k % 3]
        mode = ["RGB", "RGB", "RGB", "L", "CMYK"][k % 5]
        image = Image.fromarray(pixels(kind, w, h, np.random.default_rng(k)), "RGB").convert(mode)
        options = {"progressive": k % 4 == 1}
        if k % 6 == 5:
            top = [255, 1000, 32767][k % 3]
            options["qtables"] = [[pick.randint(1, top) for _ in range(64)] for _ in range(2)]
        else:
            options["quality"] = [1, 10, 50, 75, 90, 95, 100][k % 7]
        if mode == "RGB":
            options["subsampling"] = k // 3 % 3
        buf = io.BytesIO()
        image.save(buf, "JPEG", **options)
        (OUT / f"{k:02d}_{w}x{h}_{mode.lower()}_{kind}.jpg").write_bytes(buf.getvalue())


if __name__ == "__main__":
    main()
