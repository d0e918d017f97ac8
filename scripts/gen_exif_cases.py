#!/usr/bin/env python3
"""Images tagged with each EXIF orientation, and each as Pillow's ImageOps.exif_transpose shows it.

    pip install pillow numpy && python3 scripts/gen_exif_cases.py

Writes tests/fixtures/images/exif/: per case the tagged file (PNG with an eXIf chunk, JPEG with an APP1
segment, lossless WebP with an EXIF chunk) and `<name>.seen.png`, the pixels Pillow decodes from it, turned as
its tag says, stored losslessly without a tag; and manifest.json. tests/images_exif_test.ts checks that the
patcher turning the tagged file gives what it gives for the seen one (whose preprocessing the other golden
tests check against the references).
"""

import io
import json
import pathlib

import numpy as np
from PIL import Image, ImageOps

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "images" / "exif"


def picture(width, height, seed):
    """A smooth picture with a few blocks of colour: no two corners alike, small as a JPEG."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, (x + 2 * y) * 3 % 256], axis=-1).astype(np.uint8)
    rng = np.random.default_rng(seed)
    for _ in range(4):
        x0, y0 = rng.integers(0, width - 6), rng.integers(0, height - 6)
        rgb[y0 : y0 + 6, x0 : x0 + 6] = rng.integers(0, 256, 3)
    return Image.fromarray(rgb, "RGB")


def tagged(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def encoded(image, fmt, orientation, **options):
    out = io.BytesIO()
    image.save(out, format=fmt, exif=tagged(orientation), **options)
    return out.getvalue()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    cases = [(f"png_o{o}_40x24", "png", "PNG", o, {}) for o in range(1, 9)]
    cases += [
        ("jpeg_o6_40x24", "jpg", "JPEG", 6, {"quality": 90}),
        ("jpeg_o8_40x24", "jpg", "JPEG", 8, {"quality": 90}),
        ("webp_o5_40x24", "webp", "WEBP", 5, {"lossless": True}),
    ]
    manifest = []
    for i, (name, ext, fmt, orientation, options) in enumerate(cases):
        data = encoded(picture(40, 24, i), fmt, orientation, **options)
        (OUT / f"{name}.{ext}").write_bytes(data)
        opened = Image.open(io.BytesIO(data))
        assert opened.getexif().get(0x0112) == orientation, name
        seen = ImageOps.exif_transpose(opened).convert("RGB")
        seen.save(OUT / f"{name}.seen.png", format="PNG")
        manifest.append({
            "file": f"{name}.{ext}",
            "seen": f"{name}.seen.png",
            "orientation": orientation,
            "width": seen.width,
            "height": seen.height,
        })
    (OUT / "manifest.json").write_text(json.dumps({"cases": manifest}, indent=2) + "\n")


if __name__ == "__main__":
    main()
