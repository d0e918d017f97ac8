#!/usr/bin/python3
"""Golden cases for the image patcher (tests/images_golden_test.ts), for inputs the shared fixtures lack.

Run with Debian's Python and its python3-opencv, python3-pil, python3-numpy and python3-png:

    apt-get install -y python3-opencv python3-pil python3-numpy python3-png
    /usr/bin/python3 scripts/images_goldens.py

It writes tests/fixtures/images/: each input image, and per resize mode what the reference produces from it
(before normalization, channel-first, so the test measures the issue's bounds directly):
- mistral: mistral_common's path (Pillow open, non-RGB modes pasted onto white through RGBA, grid rounded
  half to even, cv2.resize INTER_CUBIC on float32), as float32 on the 0..255 scale (`*.mistral.f32`);
- hf: the Hugging Face slow processor's path (alpha_composite onto white, grid with floor, Pillow 13's BICUBIC
  on uint8), as uint8 (`*.hf.u8`);
- the decoded RGB after white compositing, as uint8 HWC (`*.rgb.u8`), to check decoding exactly.
The 4000x3000 case stores per-channel means and a strided sample of each tensor instead of the tensors.
It also writes the hf-mode references for the shared fixtures' preprocessing images (`shared_*`; their
mistral-mode goldens come with the fixtures), read from ../shared/fixtures/tiny-pixtral beside the checkout
or $PIXTRAL_FIXTURES. Everything is deterministic: the same bytes come out on every run.
"""

import io
import json
import math
import os
import pathlib
import struct
import zlib

import cv2
import numpy as np
import PIL
import png  # python3-png, for the interlaced PNG Pillow cannot write
from PIL import Image, ImageDraw

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "images"
SHARED = pathlib.Path(os.environ.get("PIXTRAL_FIXTURES", ROOT.parent / "shared" / "fixtures" / "tiny-pixtral"))
SAMPLE_STRIDE = 7919  # prime: the sampled indices i * stride mod n cover rows, columns and channels evenly
SAMPLES = 4096


# --- the two references -----------------------------------------------------------------------------------


def grid(width, height, max_size, patch, rounding):
    ratio = max(width / max_size, height / max_size)
    if ratio > 1:
        width, height = rounding(width / ratio), rounding(height / ratio)
    return (width - 1) // patch + 1, (height - 1) // patch + 1


def mistral_rgb(image):
    """mistral_common's _convert_to_rgb."""
    if image.mode == "RGB":
        return image
    if image.mode != "RGBA":
        image = image.convert("RGBA")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    white.paste(image, (0, 0), image)
    return white.convert("RGB")


def hf_rgb(image):
    """transformers' convert_to_rgb (5.x): images with an alpha band or a transparency colour go through RGBA
    and alpha_composite onto white, the others straight to RGB. (4.x returned every RGB image unchanged,
    ignoring an RGB PNG's tRNS colour; nothing else differs.)"""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image).convert("RGB")
    return image.convert("RGB")


def mistral_resized(image, max_size, patch):
    rgb = mistral_rgb(image)
    cols, rows = grid(*rgb.size, max_size, patch, round)
    out = cv2.resize(np.asarray(rgb, dtype=np.float32), (cols * patch, rows * patch), interpolation=cv2.INTER_CUBIC)
    return cols, rows, out.reshape(rows * patch, cols * patch, 3).transpose(2, 0, 1)


def pillow13_resize(image, size):
    """Pillow 13's BICUBIC resize with Pillow 9's: Pillow 13 runs the vertical pass first when the height shrinks
    by more than twice as many pixels as the width (Resample.c, ImagingResampleInner); Pillow 9 always runs the
    horizontal pass first. Resizing one axis at a time runs only that pass, so the two passes are run here in
    Pillow 13's order (each rounds to 8 bits, as inside one resize)."""
    (width, height), (dst_w, dst_h) = image.size, size
    if height - dst_h > 0 and height - dst_h > (width - dst_w) * 2:
        return image.resize((width, dst_h), Image.BICUBIC).resize(size, Image.BICUBIC)
    return image.resize(size, Image.BICUBIC)


def hf_resized(image, max_size, patch):
    rgb = hf_rgb(image)
    cols, rows = grid(*rgb.size, max_size, patch, lambda v: int(math.floor(v)))
    out = np.asarray(pillow13_resize(rgb, (cols * patch, rows * patch)))
    return cols, rows, out.transpose(2, 0, 1)


# --- inputs -----------------------------------------------------------------------------------------------


def rng(seed):
    return np.random.default_rng(seed)


def noise_rgb(w, h, seed):
    return Image.fromarray(rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def scene(w, h, seed):
    """Smooth gradients, hard-edged shapes, one-pixel stripes and a noise patch: compresses well, and has the
    edges and fine detail that separate resampling filters."""
    # The gradients step every 8 pixels, which keeps the large PNG small.
    y, x = (np.mgrid[0:h, 0:w] // 8 * 8).astype(np.float64)
    base = np.stack(
        [127 + 120 * np.sin(x / w * 5.1 + y / h * 1.3), 127 + 120 * np.cos(y / h * 4.3), 255 * x / max(w - 1, 1)],
        axis=-1,
    )
    image = Image.fromarray(np.round(base).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    r = rng(seed)
    for _ in range(40):
        x0, y0 = int(r.integers(0, w)), int(r.integers(0, h))
        x1, y1 = x0 + int(r.integers(1, max(2, w // 4))), y0 + int(r.integers(1, max(2, h // 4)))
        colour = tuple(int(v) for v in r.integers(0, 256, 3))
        (draw.rectangle if r.integers(0, 2) else draw.ellipse)([x0, y0, x1, y1], fill=colour)
    for i in range(0, w // 8, 2):  # one-pixel vertical stripes in the left eighth
        draw.line([(i, h // 2), (i, h - 1)], fill=(0, 0, 0))
    n = min(64, w // 4, h // 4)
    if n:
        image.paste(noise_rgb(n, n, seed + 1), (w - n - 1, 1))
    return image


def png_bytes(image, **options):
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=True, **options)
    return buf.getvalue()


def save_bytes(image, fmt, **options):
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def png16(array, mode):
    """A 16-bit PNG from a uint16 array (HxW or HxWxC) written by pypng."""
    h, w = array.shape[:2]
    planes = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    writer = png.Writer(w, h, greyscale=mode in ("L", "LA"), alpha="A" in mode, bitdepth=16)
    buf = io.BytesIO()
    writer.write(buf, array.reshape(h, w * planes).tolist())
    return buf.getvalue()


def interlaced_palette_png(w, h, seed):
    """A 4-bit palette PNG with Adam7 interlacing and a tRNS chunk."""
    r = rng(seed)
    palette = [tuple(int(v) for v in r.integers(0, 256, 3)) for _ in range(16)]
    alpha = [255] * 12 + [0, 64, 128, 200]
    y, x = np.mgrid[0:h, 0:w]
    index = ((x // 3 + y // 5 + r.integers(0, 2, (h, w))) % 16).astype(np.uint8)
    writer = png.Writer(w, h, palette=[p + (a,) for p, a in zip(palette, alpha)], bitdepth=4, interlace=True)
    buf = io.BytesIO()
    writer.write(buf, index.tolist())
    return buf.getvalue()


def palette_with_alpha(w, h, seed):
    r = rng(seed)
    index = (np.add.outer(np.arange(h) // 4, np.arange(w) // 5) % 32).astype(np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette([int(v) for v in r.integers(0, 256, 32 * 3)])
    alpha = bytes(int(v) for v in np.linspace(0, 255, 32).round())
    return png_bytes(image, transparency=alpha)


def rgba_image(w, h, seed):
    r = rng(seed)
    a = r.integers(0, 256, (h, w, 4), dtype=np.uint8)
    a[..., 3] = np.linspace(0, 255, w, dtype=np.float64).round().astype(np.uint8)[None, :]
    return Image.fromarray(a, "RGBA")


def animated_gif(w, h, seed):
    r = rng(seed)
    frames = []
    for i in range(2):
        index = ((np.add.outer(np.arange(h), np.arange(w) * (i + 1)) // 3) % 8).astype(np.uint8)
        frame = Image.fromarray(index, "P")
        frame.putpalette([int(v) for v in r.integers(0, 256, 8 * 3)])
        frames.append(frame)
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0, transparency=0)
    return buf.getvalue()


def offset_gif(transparent):
    """A GIF whose first frame covers only part of the logical screen: Pillow fills the rest with the
    transparent index (white after compositing) or, without one, with palette index 0."""
    frame = Image.fromarray(rng(30).integers(1, 4, (5, 6), dtype=np.uint8), "P")
    frame.putpalette([10, 20, 30, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    buf = io.BytesIO()
    frame.save(buf, "GIF", optimize=False, **({"transparency": 2} if transparent else {}))
    data = bytearray(buf.getvalue())
    data[6:10] = bytes([12, 0, 9, 0])  # logical screen 12x9
    descriptor = data.index(0x2C, 13 + 3 * 2 ** ((data[10] & 7) + 1))
    data[descriptor + 1 : descriptor + 5] = bytes([4, 0, 3, 0])  # frame at (4, 3)
    return bytes(data)


def animated_webp(w, h, seed):
    frames = [noise_rgb(w, h, seed), noise_rgb(w, h, seed + 1)]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], lossless=True, duration=100)
    return buf.getvalue()


def animated_lossy_webp(w, h, seed):
    frames = [scene(w, h, seed), scene(w, h, seed + 1)]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], quality=85, duration=100)
    return buf.getvalue()


def exif_orientation(value):
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def without_adobe_marker(jpeg):
    """The JPEG without its APP14 segment (Pillow's CMYK JPEGs carry one), as some other writers make them."""
    out, i = bytearray(jpeg[:2]), 2
    while jpeg[i + 1] != 0xDA:
        length = struct.unpack(">H", jpeg[i + 2 : i + 4])[0]
        if jpeg[i + 1] != 0xEE:
            out += jpeg[i : i + 2 + length]
        i += 2 + length
    return bytes(out + jpeg[i:])


def low_bit_gray_trns(width, height, bitdepth, transparent):
    """Gray below 8 bits with a tRNS value: Pillow compares it with the samples scaled to 8 bits, so 4-bit tRNS 9
    (9 * 17 = 153) makes nothing transparent although the stored 9s are by the PNG specification, and tRNS 0
    (0 scaled or not) makes black transparent."""
    values = (np.add.outer(np.arange(height), np.arange(width)) % (1 << bitdepth)).astype(np.uint8)
    writer = png.Writer(width, height, greyscale=True, bitdepth=bitdepth, transparent=transparent)
    buf = io.BytesIO()
    writer.write(buf, values.tolist())
    return buf.getvalue()


def gray16_trns(transparent):
    """16-bit gray with a tRNS value: Pillow clamps the samples to 255 and compares them with the value's low
    byte, so tRNS 300 makes the 44s transparent (and not the 300s), tRNS 255 every sample from 255 up."""
    values = (np.add.outer(np.arange(16) * 7, np.arange(20) * 3) % 80).astype(np.uint16)
    values[3:6, 4:9] = 300
    values[8:11, 2:7] = 44
    values[12:15, 10:17] = 4000
    writer = png.Writer(20, 16, greyscale=True, bitdepth=16, transparent=transparent)
    buf = io.BytesIO()
    writer.write(buf, values.tolist())
    return buf.getvalue()


def rgb16_trns():
    """16-bit RGB with tRNS (3, 7, 11): Pillow keeps each sample's high byte and compares the stored value with
    it, so (0x0300, 0x0700, 0x0B00) is transparent for it and (3, 7, 11) is not."""
    pixels = rng(37).integers(0, 65536, (16, 20, 3), dtype=np.uint16)
    pixels[2:6, 3:9] = (0x0300, 0x0700, 0x0B00)
    pixels[8:12, 10:16] = (3, 7, 11)
    writer = png.Writer(20, 16, greyscale=False, bitdepth=16, transparent=(3, 7, 11))
    buf = io.BytesIO()
    writer.write(buf, pixels.reshape(16, 60).tolist())
    return buf.getvalue()


def rgb_component_ids(image):
    """A JPEG storing RGB samples, marked only by component ids 'R', 'G', 'B' (no JFIF or Adobe marker), which
    libjpeg reads as RGB. Pillow writes a YCbCr-mode image's samples as they are."""
    jpeg = save_bytes(Image.frombytes("YCbCr", image.size, image.tobytes()), "JPEG", quality=95, subsampling=0)
    out, i = bytearray(jpeg[:2]), 2
    while True:
        marker, length = jpeg[i + 1], struct.unpack(">H", jpeg[i + 2 : i + 4])[0]
        segment = bytearray(jpeg[i : i + 2 + length])
        if marker == 0xC0:  # components at 10, 13, 16: id, sampling, table
            segment[10], segment[13], segment[16] = b"RGB"
        if marker == 0xDA:  # selectors at 5, 7, 9
            segment[5], segment[7], segment[9] = b"RGB"
        if marker != 0xE0:
            out += segment
        i += 2 + length
        if marker == 0xDA:
            return bytes(out + jpeg[i:])


def webp_alpha_without_flag(w, h, seed):
    """A lossy WebP with an ALPH chunk whose VP8X header does not declare alpha: libwebp (so Pillow) leaves it
    out."""
    data = bytearray(save_bytes(rgba_image(w, h, seed), "WEBP", quality=80))
    assert data[12:16] == b"VP8X"
    data[20] &= ~0x10
    return bytes(data)


def webp_chunks(data):
    """The (id, payload) chunks of a WebP file."""
    out, i = [], 12
    while i < len(data):
        size = struct.unpack("<I", data[i + 4 : i + 8])[0]
        out.append((data[i : i + 4], data[i + 8 : i + 8 + size]))
        i += 8 + size + (size & 1)
    return out


def riff_webp(chunks):
    body = b"WEBP" + b"".join(c + struct.pack("<I", len(p)) + p + b"\0" * (len(p) & 1) for c, p in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_raw_alpha(w, h, seed, filtering):
    """Lossy WebP with noisy alpha, which libwebp stores uncompressed, its plane filtered again here by libwebp's
    filter (0 none, 1 horizontal, 2 vertical, 3 gradient; the first row always horizontal) with the header
    saying so. w·h even: the chunk has a padding byte."""
    r = rng(seed)
    rgba = np.dstack([np.asarray(scene(w, h, seed)), r.integers(0, 256, (h, w), dtype=np.uint8)])
    chunks = webp_chunks(save_bytes(Image.fromarray(rgba, "RGBA"), "WEBP", quality=50))
    alph = dict(chunks)[b"ALPH"]
    assert alph[0] & 3 == 0 and (w * h) % 2 == 0, "libwebp compressed the alpha plane"
    alpha = np.asarray(Image.open(io.BytesIO(riff_webp(chunks))).getchannel("A")).astype(np.int16)
    out = np.empty_like(alpha)
    for y in range(h):
        prev = alpha[y - 1] if y else None
        row = alpha[y]
        if filtering == 0:
            out[y] = row
        elif prev is None or filtering == 1:
            out[y, 0] = row[0] - (prev[0] if prev is not None else 0)
            out[y, 1:] = row[1:] - row[:-1]
        elif filtering == 2:
            out[y] = row - prev
        else:
            out[y, 0] = row[0] - prev[0]
            out[y, 1:] = row[1:] - np.clip(row[:-1] + prev[1:] - prev[:-1], 0, 255)
    plane = bytes([filtering << 2]) + (out % 256).astype(np.uint8).tobytes()
    return riff_webp([(c, plane if c == b"ALPH" else p) for c, p in chunks])


def webp_vp8l_alpha_without_flag(w, h, seed):
    """A lossless WebP with alpha in a VP8X container whose header does not declare alpha: libwebp keeps the
    VP8L bitstream's own alpha (unlike an ALPH chunk's)."""
    (vp8l,) = [p for c, p in webp_chunks(save_bytes(rgba_image(w, h, seed), "WEBP", lossless=True)) if c == b"VP8L"]
    canvas = bytes([0, 0, 0, 0]) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    return riff_webp([(b"VP8X", canvas), (b"VP8L", vp8l)])


def webp_two_bitstreams(w, h, seed):
    """A simple WebP holding a VP8L chunk, then a VP8 one: libwebp decodes the first."""
    (vp8l,) = [p for c, p in webp_chunks(save_bytes(noise_rgb(w, h, seed), "WEBP", lossless=True)) if c == b"VP8L"]
    (vp8,) = [p for c, p in webp_chunks(save_bytes(scene(w, h, seed), "WEBP", quality=80)) if c == b"VP8 "]
    return riff_webp([(b"VP8L", vp8l), (b"VP8 ", vp8)])


def png_chunks(data):
    """(type, payload) of each chunk of a PNG."""
    chunks, i = [], 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        chunks.append((data[i + 4 : i + 8], data[i + 8 : i + 8 + length]))
        i += 12 + length
    return chunks


def png_of_chunks(chunks, bad_crc=()):
    """A PNG of (type, payload) chunks; those whose place is in bad_crc get a wrong CRC."""
    out = bytearray(b"\x89PNG\r\n\x1a\n")
    for at, (kind, payload) in enumerate(chunks):
        crc = zlib.crc32(kind + payload) ^ (0x5A5A5A5A if at in bad_crc else 0)
        out += struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)
    return bytes(out)


def png_without_iend(image):
    """A PNG cut right after its image data: no IEND chunk, which Pillow does not need."""
    return png_of_chunks([c for c in png_chunks(png_bytes(image)) if c[0] != b"IEND"])


def png_cut_in_crc(image, cut):
    """A PNG cut inside the CRC of its last IDAT chunk (`cut` of its 4 bytes gone, and IEND): Pillow reads it."""
    chunks = [c for c in png_chunks(png_bytes(image)) if c[0] != b"IEND"]
    return png_of_chunks(chunks)[:-cut]


def png_bad_data_crcs(image):
    """The image data in three IDAT chunks, the second with a wrong CRC, then a text chunk with a wrong CRC and no
    IEND: Pillow checks the CRCs of the chunks before the image data only."""
    chunks = png_chunks(png_bytes(image))
    data = b"".join(payload for kind, payload in chunks if kind == b"IDAT")
    head = [c for c in chunks if c[0] not in (b"IDAT", b"IEND")]
    third = len(data) // 3
    idat = [(b"IDAT", data[:third]), (b"IDAT", data[third : 2 * third]), (b"IDAT", data[2 * third :])]
    return png_of_chunks(head + idat + [(b"tEXt", b"Comment\0after the image")], bad_crc={len(head) + 1, len(head) + 3})


def gif_without_colour_table(w, h, seed):
    """A GIF with neither a global nor a local colour table: Pillow opens it as mode L, each index a gray level."""
    indices = rng(seed).integers(0, 256, (h, w)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(indices, "L").save(buf, "GIF")
    data = bytearray(buf.getvalue())
    flags = data[10]
    assert flags & 0x80, "Pillow wrote a global table"
    table = 3 << ((flags & 7) + 1)
    out = data[:10] + bytes([flags & 0x78]) + data[11:13] + data[13 + table :]
    assert b"\x2c" in out[13:] and Image.open(io.BytesIO(bytes(out))).mode == "L"
    return bytes(out)


def bmp16(image, masks565):
    """A 16-bit BMP, bottom-up: BI_RGB 5-5-5, or BI_BITFIELDS 5-6-5 (Pillow writes neither)."""
    a = np.asarray(image).astype(np.uint32)
    h, w = a.shape[:2]
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    if masks565:
        pixels, compression, masks = (r >> 3) << 11 | (g >> 2) << 5 | b >> 3, 3, struct.pack("<III", 0xF800, 0x07E0, 0x001F)
    else:
        pixels, compression, masks = (r >> 3) << 10 | (g >> 3) << 5 | b >> 3, 0, b""
    stride = (w * 2 + 3) & ~3
    rows = b"".join(pixels[y].astype("<u2").tobytes().ljust(stride, b"\0") for y in range(h - 1, -1, -1))
    header = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 16, compression, len(rows), 2835, 2835, 0, 0)
    offset = 14 + 40 + len(masks)
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + header + masks + rows


def bmp16_alpha_mask(image):
    """A 16-bit BMP with a V4 header and an alpha mask (ARGB1555), every alpha bit clear: Pillow ignores the mask."""
    a = np.asarray(image).astype(np.uint32)
    h, w = a.shape[:2]
    pixels = (a[..., 0] >> 3) << 10 | (a[..., 1] >> 3) << 5 | a[..., 2] >> 3
    stride = (w * 2 + 3) & ~3
    rows = b"".join(pixels[y].astype("<u2").tobytes().ljust(stride, b"\0") for y in range(h - 1, -1, -1))
    info = struct.pack("<IiiHHIIiiII", 108, w, h, 1, 16, 3, len(rows), 2835, 2835, 0, 0)
    header = info + struct.pack("<IIII", 0x7C00, 0x03E0, 0x001F, 0x8000) + b"sRGB" + bytes(48)
    offset = 14 + len(header)
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + header + rows


def cases():
    """(name, file name, encoded bytes, max image size, whether the decode is lossy, description)."""
    noise = noise_rgb(48, 36, 11)
    gray16 = (np.add.outer(np.arange(30) * 37, np.arange(40) * 11) % 700).astype(np.uint16)
    rgb16 = rng(12).integers(0, 65536, (20, 33, 3), dtype=np.uint16)
    rgba16 = rng(13).integers(0, 65536, (18, 24, 4), dtype=np.uint16)
    la16 = rng(14).integers(0, 65536, (9, 21, 2), dtype=np.uint16)
    gray_trns = Image.fromarray((np.arange(400).reshape(20, 20) % 7 * 40).astype(np.uint8), "L")
    rgb_trns = Image.fromarray((np.arange(1200).reshape(20, 20, 3) % 5 * 60).astype(np.uint8), "RGB")
    photo = scene(64, 48, 21)
    yield "tiny_1x1_rgba", "tiny_1x1_rgba.png", png_bytes(Image.new("RGBA", (1, 1), (200, 100, 50, 128))), 1024, False, "1x1 RGBA, half transparent"
    yield "extreme_300x5", "extreme_300x5.png", png_bytes(noise_rgb(300, 5, 15)), 128, False, "300x5 at max size 128: 8x1 patches"
    yield "extreme_3x70", "extreme_3x70.png", png_bytes(noise_rgb(3, 70, 16)), 1024, False, "3x70, upscaled to 16x80"
    yield "tall_40x300", "tall_40x300.png", png_bytes(scene(40, 300, 36)), 64, False, "40x300 to 16x64: Pillow 13 resizes vertically first"
    yield "roundfloor_500x130", "roundfloor_500x130.png", png_bytes(scene(500, 130, 17)), 64, False, "max size 64: height 16.64 rounds to 17 (2 rows) but floors to 16 (1 row)"
    yield "gray16_40x30", "gray16_40x30.png", png16(gray16, "L"), 1024, False, "16-bit gray, values 0..699 (Pillow clamps to 255)"
    yield "rgb16_33x20", "rgb16_33x20.png", png16(rgb16, "RGB"), 1024, False, "16-bit RGB (Pillow keeps the high byte)"
    yield "rgba16_24x18", "rgba16_24x18.png", png16(rgba16, "RGBA"), 1024, False, "16-bit RGBA"
    yield "la16_21x9", "la16_21x9.png", png16(la16, "LA"), 1024, False, "16-bit gray + alpha"
    yield "palette_alpha_45x37", "palette_alpha_45x37.png", palette_with_alpha(45, 37, 18), 1024, False, "8-bit palette with a tRNS alpha ramp"
    yield "palette4_interlaced_50x40", "palette4_interlaced_50x40.png", interlaced_palette_png(50, 40, 19), 1024, False, "4-bit palette, Adam7 interlaced, tRNS"
    yield "gray_trns_20x20", "gray_trns_20x20.png", png_bytes(gray_trns, transparency=80), 1024, False, "gray with a tRNS colour (transparent where 80)"
    yield "rgb_trns_20x20", "rgb_trns_20x20.png", png_bytes(rgb_trns, transparency=(60, 120, 180)), 1024, False, "RGB with a tRNS colour (mode RGB: the references ignore it)"
    yield "gray4_trns_24x20", "gray4_trns_24x20.png", low_bit_gray_trns(24, 20, 4, 9), 1024, False, "4-bit gray, tRNS 9 (Pillow compares it with 8-bit samples: nothing transparent)"
    yield "gray2_trns0_18x12", "gray2_trns0_18x12.png", low_bit_gray_trns(18, 12, 2, 0), 1024, False, "2-bit gray, tRNS 0: the black pixels are transparent"
    yield "gray16_trns300_20x16", "gray16_trns300_20x16.png", gray16_trns(300), 1024, False, "16-bit gray, tRNS 300: the 44s are transparent (Pillow compares the low byte with clamped samples)"
    yield "gray16_trns255_20x16", "gray16_trns255_20x16.png", gray16_trns(255), 1024, False, "16-bit gray, tRNS 255: every sample from 255 up is transparent"
    yield "rgb16_trns_20x16", "rgb16_trns_20x16.png", rgb16_trns(), 1024, False, "16-bit RGB with tRNS (Pillow compares it with the high bytes; hf mode composites)"
    yield "no_iend_40x30", "no_iend_40x30.png", png_without_iend(scene(40, 30, 42)), 1024, False, "PNG without IEND (cut after its image data)"
    yield "cut_crc_40x30", "cut_crc_40x30.png", png_cut_in_crc(scene(40, 30, 49), 3), 1024, False, "PNG cut 3 bytes into its last IDAT chunk's CRC (no IEND)"
    yield "bad_data_crcs_40x30", "bad_data_crcs_40x30.png", png_bad_data_crcs(rgba_image(40, 30, 43)), 1024, False, "PNG whose IDAT and trailing chunks have wrong CRCs, without IEND"
    yield "rgba_37x29", "rgba_37x29.png", save_bytes(rgba_image(37, 29, 20), "PNG"), 1024, False, "RGBA alpha ramp"
    yield "progressive_64x48", "progressive_64x48.jpg", save_bytes(photo, "JPEG", quality=85, progressive=True), 1024, True, "progressive JPEG, 4:2:0"
    yield "sub422_64x48", "sub422_64x48.jpg", save_bytes(photo, "JPEG", quality=90, subsampling=1), 1024, True, "JPEG with 4:2:2 chroma"
    yield "sub444_64x48", "sub444_64x48.jpg", save_bytes(photo, "JPEG", quality=90, subsampling=0), 1024, True, "JPEG with 4:4:4 chroma"
    yield "gray_64x40", "gray_64x40.jpg", save_bytes(scene(64, 40, 22).convert("L"), "JPEG", quality=90), 1024, True, "grayscale JPEG"
    yield "cmyk_40x30", "cmyk_40x30.jpg", save_bytes(scene(40, 30, 23).convert("CMYK"), "JPEG", quality=95), 1024, True, "CMYK JPEG with Adobe marker"
    yield "cmyk_noadobe_40x30", "cmyk_noadobe_40x30.jpg", without_adobe_marker(save_bytes(scene(40, 30, 33).convert("CMYK"), "JPEG", quality=95)), 1024, True, "CMYK JPEG without Adobe marker (Pillow still reads inverted ink)"
    yield "rgb_ids_40x30", "rgb_ids_40x30.jpg", rgb_component_ids(scene(40, 30, 38)), 1024, True, "RGB JPEG known by its component ids 'R', 'G', 'B' alone"
    yield "anim_30x20", "anim_30x20.gif", animated_gif(30, 20, 24), 1024, False, "animated GIF, transparent index 0: first frame"
    yield "offset_12x9", "offset_12x9.gif", offset_gif(False), 1024, False, "GIF frame 6x5 at (4, 3) on a 12x9 screen: the rest is palette index 0"
    yield "offset_trns_12x9", "offset_trns_12x9.gif", offset_gif(True), 1024, False, "the same with a transparent index: the rest is white"
    yield "no_palette_23x17", "no_palette_23x17.gif", gif_without_colour_table(23, 17, 44), 1024, False, "GIF without any colour table: indices as gray levels (Pillow's mode L)"
    yield "lossless_40x30", "lossless_40x30.webp", save_bytes(rgba_image(40, 30, 25), "WEBP", lossless=True), 1024, False, "lossless WebP with alpha"
    yield "lossy_64x48", "lossy_64x48.webp", save_bytes(scene(64, 48, 26), "WEBP", quality=90), 1024, True, "lossy WebP"
    yield "lossy_noise_48x32", "lossy_noise_48x32.webp", save_bytes(noise_rgb(48, 32, 31), "WEBP", quality=75), 1024, True, "lossy WebP of noise: busy, loop-filtered macroblocks everywhere"
    yield "lossy_alpha_40x30", "lossy_alpha_40x30.webp", save_bytes(rgba_image(40, 30, 28), "WEBP", quality=80), 1024, True, "lossy WebP with a lossless alpha plane"
    yield "alpha_noflag_40x30", "alpha_noflag_40x30.webp", webp_alpha_without_flag(40, 30, 39), 1024, True, "lossy WebP with an ALPH chunk its VP8X header does not declare: opaque"
    yield "raw_alpha_40x30", "raw_alpha_40x30.webp", webp_raw_alpha(40, 30, 45, 0), 1024, True, "lossy WebP with an uncompressed alpha plane of even size (the chunk is padded)"
    yield "raw_alpha_horizontal_40x30", "raw_alpha_horizontal_40x30.webp", webp_raw_alpha(40, 30, 46, 1), 1024, True, "uncompressed alpha, horizontally filtered"
    yield "raw_alpha_vertical_40x30", "raw_alpha_vertical_40x30.webp", webp_raw_alpha(40, 30, 47, 2), 1024, True, "uncompressed alpha, vertically filtered"
    yield "raw_alpha_gradient_40x30", "raw_alpha_gradient_40x30.webp", webp_raw_alpha(40, 30, 48, 3), 1024, True, "uncompressed alpha, gradient filtered"
    yield "vp8l_alpha_noflag_40x30", "vp8l_alpha_noflag_40x30.webp", webp_vp8l_alpha_without_flag(40, 30, 40), 1024, False, "lossless WebP with alpha in a VP8X header not declaring it: the alpha stays"
    yield "two_bitstreams_32x24", "two_bitstreams_32x24.webp", webp_two_bitstreams(32, 24, 41), 1024, False, "simple WebP of a VP8L chunk then a VP8 one: the first is the image"
    yield "anim_lossless_30x20", "anim_lossless_30x20.webp", animated_webp(30, 20, 29), 1024, False, "animated lossless WebP: first frame"
    yield "anim_lossy_40x30", "anim_lossy_40x30.webp", animated_lossy_webp(40, 30, 34), 1024, True, "animated lossy WebP: first frame"
    yield "lossless_exif_40x30", "lossless_exif_40x30.webp", save_bytes(scene(40, 30, 35), "WEBP", lossless=True, exif=exif_orientation(1)), 1024, False, "lossless WebP without alpha in a VP8X container (EXIF chunk)"
    yield "rgb24_31x17", "rgb24_31x17.bmp", save_bytes(noise.crop((0, 0, 31, 17)), "BMP"), 1024, False, "24-bit BMP, odd width (row padding)"
    yield "pal8_30x20", "pal8_30x20.bmp", save_bytes(noise.crop((0, 0, 30, 20)).quantize(50), "BMP"), 1024, False, "8-bit palette BMP"
    yield "rgb555_31x17", "rgb555_31x17.bmp", bmp16(noise.crop((0, 0, 31, 17)), False), 1024, False, "16-bit BMP 5-5-5 (Pillow expands 5 bits rounding down)"
    yield "rgb565_31x17", "rgb565_31x17.bmp", bmp16(noise.crop((0, 0, 31, 17)), True), 1024, False, "16-bit BMP 5-6-5 bitfields"
    yield "argb1555_31x17", "argb1555_31x17.bmp", bmp16_alpha_mask(noise.crop((0, 0, 31, 17))), 1024, False, "16-bit BMP with an alpha mask, alpha bits clear (Pillow ignores it)"
    yield "downscale_4000x3000", "downscale_4000x3000.png", png_bytes(scene(4000, 3000, 27)), 1024, False, "4000x3000 synthetic scene: 1024x768, checked by means and samples"


def write(name, array):
    (OUT / name).write_bytes(np.ascontiguousarray(array).tobytes())


def samples(array):
    flat = array.reshape(-1)
    return flat[(np.arange(SAMPLES, dtype=np.int64) * SAMPLE_STRIDE) % flat.size]


def reference(name, image, max_size, modes):
    """Each mode's reference output: the whole tensor for small images, means and samples for big ones."""
    big = image.width * image.height > 1_000_000
    results = {}
    for mode in modes:
        resized, dtype, suffix = {"mistral": (mistral_resized, "float32", "f32"), "hf": (hf_resized, "uint8", "u8")}[mode]
        cols, rows, tensor = resized(image, max_size, 16)
        tensor = tensor.astype(dtype)
        result = {"cols": cols, "rows": rows, "shape": list(tensor.shape), "dtype": dtype}
        if big:
            result["channel_means"] = [float(tensor[c].astype(np.float64).mean()) for c in range(3)]
            result["samples"] = {"file": f"{name}.{mode}.samples.{suffix}", "count": SAMPLES, "stride": SAMPLE_STRIDE}
            write(result["samples"]["file"], samples(tensor))
        else:
            result["file"] = f"{name}.{mode}.{suffix}"
            write(result["file"], tensor)
        results[mode] = result
    return results


def shared_entries():
    manifest = json.loads((SHARED / "golden" / "preprocess" / "manifest.json").read_text())
    for image in manifest["images"]:
        pil = Image.open(SHARED / "golden" / image["input"])
        yield {"name": image["name"], "input": image["input"], **reference("shared_" + image["name"], pil, 1024, ["hf"])}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, file, data, max_size, lossy, description in cases():
        (OUT / file).write_bytes(data)
        image = Image.open(io.BytesIO(data))
        image.seek(0)
        small = image.width * image.height <= 10_000
        entry = {
            "name": name,
            "file": file,
            "description": description,
            "pil_mode": image.mode,
            "width": image.width,
            "height": image.height,
            "max_image_size": max_size,
            "patch_size": 16,
            "lossy": lossy,
            **reference(name, image, max_size, ["mistral", "hf"]),
        }
        if small:
            entry["rgb"] = f"{name}.rgb.u8"
            write(entry["rgb"], np.asarray(mistral_rgb(image)))
        entries.append(entry)
    manifest = {
        "what": __doc__.strip().splitlines()[0],
        "generator": "scripts/images_goldens.py",
        "versions": {"pillow": PIL.__version__, "opencv": cv2.__version__, "numpy": np.__version__, "zlib": zlib.ZLIB_VERSION},
        "layouts": {
            "mistral": "float32 little-endian [3, H, W], OpenCV INTER_CUBIC output on the 0..255 scale (before /255 and CLIP normalization)",
            "hf": "uint8 [3, H, W], Pillow BICUBIC output (before rescale and normalization)",
            "rgb": "uint8 [H, W, 3], the decoded image after mistral_common's white compositing",
            "samples": "element i * stride mod n of the flattened [3, H, W] tensor, i = 0..count-1",
        },
        "images": entries,
        "shared": list(shared_entries()),
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
