#!/usr/bin/env python3
"""Writes tests/fixtures/images/jpeg_decoder/decoded.json: the SHA-256 of each fixture JPEG
(scripts/jpeg_decoder_cases.py) as Pillow decodes it, which tests/images_jpeg_decoder_test.ts holds the
patcher's decoder to, byte for byte.

    python3 scripts/jpeg_decoder_pillow_hashes.py    # pip's Pillow 13 (libjpeg-turbo 3.x), not Debian's

Each hash covers the width and height (little-endian u32s) and the bytes of Image.open(path).convert("RGB"),
as decodedHash in the test hashes decodeRgb's output. Pillow's x86-64 wheels run libjpeg-turbo's SIMD inverse
DCT, whose arithmetic on overflowing coefficients differs from its C code's (JSIMD_FORCENONE=1); the hashes
are the SIMD code's, as Pillow decodes by default on x86-64.
"""

import hashlib
import json
import pathlib
import struct

import PIL
from PIL import Image, features

CASES = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/images/jpeg_decoder"


def main():
    assert int(PIL.__version__.split(".")[0]) >= 13, f"Pillow {PIL.__version__}: use pip's Pillow 13"
    hashes = {}
    for path in sorted(CASES.glob("*.jpg")):
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        data = struct.pack("<II", *rgb.size) + rgb.tobytes()
        hashes[path.name] = hashlib.sha256(data).hexdigest()
    (CASES / "decoded.json").write_text(json.dumps(hashes, indent=2) + "\n")
    print(f"{len(hashes)} hashes written (Pillow {PIL.__version__}, libjpeg-turbo {features.version('libjpeg_turbo')})")


if __name__ == "__main__":
    main()
