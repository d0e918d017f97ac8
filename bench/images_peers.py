#!/usr/bin/python3
"""Peers for bench/images.ts: writes the benchmark images, and times Python pipelines doing what the patcher
does (encoded bytes in, normalized float32 [3, H, W] out), one thread.

    images_peers.py generate DIR            writes the four benchmark images into DIR
    images_peers.py time RUNS FILE...       prints one JSON line per file: best CPU ms of RUNS per peer

Peers: "pillow" is the Hugging Face slow processor's path (Pillow decode, alpha_composite onto white, floor
grid, BICUBIC on uint8, numpy rescale and normalize); "opencv" is OpenCV alone (imdecode, blend onto white,
INTER_CUBIC on float32, numpy normalize); "mistral_common" is the reference of the default mode (Pillow
decode and paste onto white, INTER_CUBIC on float32, numpy normalize). Debian's python3-pil, python3-opencv.
"""

import io
import json
import math
import sys
import time

import cv2
import numpy as np
from PIL import Image

cv2.setNumThreads(1)
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def grid(width, height, rounding, max_size=1024, patch=16):
    ratio = max(width / max_size, height / max_size)
    if ratio > 1:
        width, height = rounding(width / ratio), rounding(height / ratio)
    return ((max(width, 1) - 1) // patch + 1) * patch, ((max(height, 1) - 1) // patch + 1) * patch


def normalize(hwc):
    return ((hwc * np.float32(1 / 255) - MEAN) / STD).transpose(2, 0, 1).copy()


def pillow(data):
    image = Image.open(io.BytesIO(data))
    if image.mode != "RGB":
        image = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image).convert("RGB")
    size = grid(*image.size, lambda v: int(math.floor(v)))
    return normalize(np.asarray(image.resize(size, Image.BICUBIC), dtype=np.float32))


def opencv(data):
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        alpha = pixels[..., 3:].astype(np.float32) * np.float32(1 / 255)
        pixels = pixels[..., :3] * alpha + np.float32(255) * (1 - alpha)
    rgb = cv2.cvtColor(pixels.astype(np.float32), cv2.COLOR_BGR2RGB)
    size = grid(rgb.shape[1], rgb.shape[0], round)
    return normalize(cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC))


def mistral_common(data):
    image = Image.open(io.BytesIO(data))
    if image.mode != "RGB":
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        white.paste(image, (0, 0), image)
        image = white.convert("RGB")
    size = grid(*image.size, round)
    return normalize(cv2.resize(np.asarray(image, dtype=np.float32), size, interpolation=cv2.INTER_CUBIC))


def photo(width, height, seed):
    """A photo-like image: smooth colour fields, mid-frequency texture and sensor noise (a few MB as JPEG)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 64 + 2, width // 64 + 2, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16)
    fine = rng.integers(0, 256, (height // 4, width // 4), dtype=np.uint8)
    texture = np.asarray(Image.fromarray(fine).resize((width, height), Image.BILINEAR), dtype=np.int16)
    pixels = base + (texture[..., None] - 128) // 3 + rng.integers(-6, 7, base.shape, dtype=np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def generate(directory):
    for width, height in [(4000, 3000), (2048, 1536), (1024, 768)]:
        photo(width, height, width).save(f"{directory}/photo_{width}x{height}.jpg", quality=90)
    rgba = np.asarray(photo(1000, 1000, 7).convert("RGBA")).copy()
    rgba[..., 3] = np.linspace(0, 255, 1000).astype(np.uint8)[None, :]
    Image.fromarray(rgba).save(f"{directory}/rgba_1000x1000.png")


def main():
    if sys.argv[1] == "generate":
        generate(sys.argv[2])
        return
    runs = int(sys.argv[2])
    for file in sys.argv[3:]:
        data = open(file, "rb").read()
        result = {"file": file}
        for name, peer in [("pillow", pillow), ("opencv", opencv), ("mistral_common", mistral_common)]:
            peer(data)  # warm-up
            times = []
            for _ in range(runs):
                start = time.process_time()
                peer(data)
                times.append((time.process_time() - start) * 1000)
            result[name] = min(times)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
