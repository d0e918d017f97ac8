#!/usr/bin/python3
"""Small random JPEGs for tests/images_jpeg_decoder_test.ts, which checks that the vendored jpeg-decoder
(wasm/vendor/jpeg-decoder) decodes them to Pillow's bytes.

    /usr/bin/python3 scripts/jpeg_decoder_cases.py    # Debian's python3-pil and python3-numpy

Writes tests/fixtures/images/jpeg_decoder/*.jpg: noise, gradients and flat colour at odd and block-aligned
sizes, baseline and progressive, gray, RGB at 4:4:4, 4:2:2 and 4:2:0, CMYK, qualities 1-100, and coarse
custom quantization tables (some with 16-bit entries, whose products overflow the IDCT's 16-bit arithmetic).
Then, written here by a minimal baseline encoder because Pillow cannot make them: 4:4:0 and 4:1:1 sampling,
restart intervals, and gray blocks of extreme coefficients with 16-bit tables. Deterministic: the same bytes
come out on every run. The expected hashes come from scripts/jpeg_decoder_pillow_hashes.py.
"""

import io
import pathlib
import random
import struct

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


# Zigzag order: ZIGZAG[k] is the natural (row-major) index of the k-th coefficient.
ZIGZAG = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6,
          7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31,
          39, 46, 53, 60, 61, 54, 47, 55, 62, 63]


def segment(marker, payload):
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


class Bits:
    def __init__(self):
        self.out, self.acc, self.n = bytearray(), 0, 0

    def put(self, value, n):
        for i in range(n - 1, -1, -1):
            self.acc, self.n = (self.acc << 1) | ((value >> i) & 1), self.n + 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)
                self.acc, self.n = 0, 0

    def flush(self):
        while self.n:
            self.put(1, 1)


# One Huffman table per class with every symbol at one code length: DC categories 0-11, and AC run/size pairs
# with sizes up to 15 (coefficients up to +-32767), end of block and the 16-zero run.
DC_SYMBOLS = list(range(12))
AC_SYMBOLS = [0x00, 0xF0] + [(r << 4) | s for r in range(16) for s in range(1, 16)]


def huffman_table(symbols, length):
    counts = [0] * 16
    counts[length - 1] = len(symbols)
    return bytes(counts) + bytes(symbols), {s: (i, length) for i, s in enumerate(symbols)}


def encode(width, height, components, blocks, tables, restart=0):
    """A baseline JPEG: components are (h, v, table), blocks[c][(by, bx)] 64 quantized coefficients in row-major
    order, tables 64 16-bit quantization entries each (row-major), one interleaved scan (restart every `restart`
    MCUs if nonzero)."""
    dc_bytes, dc_codes = huffman_table(DC_SYMBOLS, 4)
    ac_bytes, ac_codes = huffman_table(AC_SYMBOLS, 8)
    h_max, v_max = max(c[0] for c in components), max(c[1] for c in components)
    if len(components) == 1:
        h_max = v_max = components[0][0] = components[0][1] = 1
    mcus_x, mcus_y = -(-width // (8 * h_max)), -(-height // (8 * v_max))
    bits, predictors, count = Bits(), [0] * len(components), 0

    def put(value, size):
        if size:
            bits.put(value if value > 0 else value + (1 << size) - 1, size)

    for my in range(mcus_y):
        for mx in range(mcus_x):
            if restart and count and count % restart == 0:
                bits.flush()
                bits.out += bytes([0xFF, 0xD0 + (count // restart - 1) % 8])
                predictors = [0] * len(components)
            count += 1
            for c, (h, v, _) in enumerate(components):
                for by in range(v):
                    for bx in range(h):
                        zz = [blocks[c][(my * v + by, mx * h + bx)][ZIGZAG[k]] for k in range(64)]
                        diff, predictors[c] = zz[0] - predictors[c], zz[0]
                        size = abs(diff).bit_length()
                        bits.put(*dc_codes[size])
                        put(diff, size)
                        run = 0
                        for value in zz[1:]:
                            if value == 0:
                                run += 1
                                continue
                            while run > 15:
                                bits.put(*ac_codes[0xF0])
                                run -= 16
                            size = abs(value).bit_length()
                            bits.put(*ac_codes[(run << 4) | size])
                            put(value, size)
                            run = 0
                        if run:
                            bits.put(*ac_codes[0x00])
    bits.flush()
    data = b"\xFF\xD8"
    for t, table in enumerate(tables):
        data += segment(0xDB, bytes([0x10 | t]) + b"".join(struct.pack(">H", table[ZIGZAG[k]]) for k in range(64)))
    frame = bytes([8]) + struct.pack(">HH", height, width) + bytes([len(components)])
    for c, (h, v, t) in enumerate(components):
        frame += bytes([c + 1, (h << 4) | v, t])
    data += segment(0xC0, frame)
    for t in range(min(len(components), 2)):  # baseline: two tables per class, the second for chroma
        data += segment(0xC4, bytes([0x00 | t]) + dc_bytes) + segment(0xC4, bytes([0x10 | t]) + ac_bytes)
    if restart:
        data += segment(0xDD, struct.pack(">H", restart))
    scan = bytes([len(components)]) + b"".join(bytes([c + 1, 0x11 if c else 0x00]) for c in range(len(components)))
    return data + segment(0xDA, scan + bytes([0, 63, 0])) + bytes(bits.out) + b"\xFF\xD9"


def crafted_cases():
    """(name, bytes): colour at 4:4:0, 4:1:1, 4:2:0 and 4:2:2 with and without restart intervals at odd sizes,
    and gray blocks of extreme coefficients (AC-free, DC-only, full-range) with 16-bit tables."""
    rng = random.Random(40)
    cases = []
    sampling = [("440", (1, 2)), ("411", (4, 1)), ("420", (2, 2)), ("422", (2, 1)), ("440", (1, 2)), ("420", (2, 2))]
    for k, (label, (h, v)) in enumerate(sampling):
        w, hh = [(37, 29), (45, 19), (23, 41), (3, 70), (70, 3), (1, 33)][k]
        restart = [0, 3, 1, 2, 5, 0][k]
        components = [[h, v, 0], [1, 1, 1], [1, 1, 1]]
        blocks = []
        for c, (ch, cv, _) in enumerate(components):
            bw, bh = -(-w // (8 * h)) * ch, -(-hh // (8 * v)) * cv
            blocks.append({(y, x): [rng.randint(-60, 60) if i == 0 else (rng.randint(-12, 12) if rng.random() < 0.2 else 0)
                                    for i in range(64)] for y in range(bh) for x in range(bw)})
        tables = [[rng.randint(1, 12) for _ in range(64)] for _ in range(2)]
        cases.append((f"c{k}_{w}x{hh}_crafted_{label}{f'_rst{restart}' if restart else ''}.jpg",
                      encode(w, hh, components, blocks, tables, restart)))
    for k in range(4):
        w, hh = 24, 16
        blocks = {}
        for y in range(2):
            for x in range(3):
                kind, limit = rng.randrange(5), rng.choice([50, 1023, 32767])
                block = [0] * 64
                for i in range(64):
                    if kind == 0 or (kind == 1 and i < 8) or (kind == 2 and i % 8 == 0) or (kind == 3 and rng.random() < 0.2):
                        block[i] = rng.randint(-limit, limit)
                block[0] = rng.randint(-1000, 1000)  # DC differences stay within category 11
                blocks[(y, x)] = block
        table = [rng.choice([1, 255, 1000, 32767, 32768, 40000, 65535, rng.randint(1, 65535)]) for _ in range(64)]
        cases.append((f"o{k}_{w}x{hh}_crafted_gray_overflow.jpg", encode(w, hh, [[1, 1, 0]], [blocks], [table])))
    return cases


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
    for name, data in crafted_cases():
        (OUT / name).write_bytes(data)


if __name__ == "__main__":
    main()
