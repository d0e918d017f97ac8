"""Goldens for the GGUF block types the kernels read (kernels/lib/weights.wgsl) beyond those of the fixture's own
files: the legacy types, Q2_K, Q3_K, Q5_K, IQ4_NL, IQ4_XS and the i-quants IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S,
IQ1_S and IQ1_M (the last by gguf-py's code mended as iq1_m_values says), from llama.cpp's own Python package
`gguf` (pip install gguf==0.19.0 numpy):

- tests/fixtures/gguf/blocks.json: per type, random blocks (scales kept finite and small) and gguf-py's
  dequantization of them as float32, base64.
- tests/fixtures/gguf/tiny-pixtral-text-mixed.gguf: the tiny fixture's text model with its matrices in those
  types (Q4_0, Q4_1, Q5_0 and Q5_1 by gguf-py's quantizers, Q5_K and IQ4_NL by the simple ones below), norms F32,
  to load through the whole model.

Run from the repository root: python3 scripts/gen_gguf_goldens.py
"""
import base64
import hashlib
import json
import struct

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T, GGUFReader, quants

FIXTURE = "../shared/fixtures/tiny-pixtral/gguf/tiny-pixtral-text-f32.gguf"
OUT = "tests/fixtures/gguf"
TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q2_K, T.Q3_K, T.Q5_K, T.IQ4_NL, T.IQ4_XS,
         T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ3_XXS, T.IQ3_S, T.IQ1_S, T.IQ1_M]
# Where each type keeps its f16 scales (d, and m or dmin), by byte offset in the block (ggml-common.h).
HALVES = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q2_K: [80, 82],
    T.Q3_K: [108], T.Q5_K: [0, 2], T.IQ4_NL: [0], T.IQ4_XS: [0],
    T.IQ2_XXS: [0], T.IQ2_XS: [0], T.IQ2_S: [0], T.IQ3_XXS: [0], T.IQ3_S: [0], T.IQ1_S: [0], T.IQ1_M: [],
}
IQ4_LEVELS = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.float32)


def random_blocks(t, count, rng):
    _, size = GGML_QUANT_SIZES[t]
    raw = rng.integers(0, 256, size=(count, size), dtype=np.uint8)
    for at in HALVES[t]:
        scale = (rng.uniform(1e-3, 0.05, size=count) * rng.choice([-1, 1], size=count)).astype(np.float16)
        raw[:, at:at + 2] = scale.view(np.uint8).reshape(count, 2)
    if t == T.IQ1_M:
        # The f16 d is spread over the top nibbles of the four u16 scales at 48.
        bits = (rng.uniform(1e-3, 0.05, size=count) * rng.choice([-1, 1], size=count)).astype(np.float16).view(np.uint16)
        scales = raw[:, 48:56].copy().view(np.uint16)
        for i in range(4):
            scales[:, i] = (scales[:, i] & 0x0FFF) | (((bits >> (4 * i)) & 0xF) << 12)
        raw[:, 48:56] = scales.view(np.uint8)
    return raw


def iq1_m_values(blocks):
    """gguf-py 0.19.0's IQ1_M dequantization with its delta's sign test mended: it reads `qh & 0x08 == 0`, which
    Python parses as `qh & (0x08 == 0)`, always 0, so every delta came out negative; ggml's dequantize_row_iq1_m
    tests bit 3 of each nibble."""
    cls = quants.IQ1_M
    cls.init_grid()
    n_blocks = blocks.shape[0]
    qs, rest = np.hsplit(blocks, [256 // 8])
    qh, scales = np.hsplit(rest, [256 // 16])
    scales = scales.view(np.uint16)
    d = (scales.reshape((n_blocks, 4)) & np.uint16(0xF000)) >> np.array([12, 8, 4, 0], dtype=np.uint16).reshape((1, 4))
    d = d[..., 0] | d[..., 1] | d[..., 2] | d[..., 3]
    d = d.view(np.float16).astype(np.float32).reshape((n_blocks, 1))
    scales = scales.reshape(n_blocks, -1, 1) >> np.array([0, 3, 6, 9], dtype=np.uint16).reshape((1, 1, 4))
    scales = (scales & 0x07).reshape((n_blocks, -1))
    dl = d * (2 * scales + 1)
    dl = dl.reshape((n_blocks, -1, 2, 1, 1))
    qh = qh.reshape((n_blocks, -1, 1)) >> np.array([0, 4], dtype=np.uint8).reshape((1, 1, 2))
    qs = qs.astype(np.uint16) | ((qh & 0x07).astype(np.uint16) << 8).reshape((n_blocks, -1))
    delta = np.where((qh & 0x08) == 0, cls.delta, -cls.delta)
    delta = delta.reshape((n_blocks, -1, 2, 2, 1))
    grid = np.take_along_axis(cls.grid, qs.reshape((n_blocks, -1, 1, 1)), axis=-2)
    grid = grid.reshape((n_blocks, -1, 2, 2, 8))
    return (dl * (grid + delta)).reshape(1, -1)


def b64(array):
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()


def blocks_golden():
    rng = np.random.default_rng(20261130)
    out = {}
    for t in TYPES:
        raw = random_blocks(t, 4, rng)
        values = (iq1_m_values(raw) if t == T.IQ1_M else quants.dequantize(raw.reshape(1, -1), t)).astype(np.float32)
        assert np.isfinite(values).all()
        out[t.name] = {"blocks": b64(raw), "values": b64(values)}
        cls = quants._type_traits[t]
        if getattr(cls, "grid_hex", None) is not None and t != T.IQ1_M:  # IQ1_M's grid is IQ1_S's
            # Four random blocks use a fraction of a grid's rows: the whole grid, as gguf-py unpacks it, by hash.
            cls.init_grid()
            out[t.name]["grid_sha256"] = hashlib.sha256(cls.grid.astype(np.uint8).tobytes()).hexdigest()
    with open(f"{OUT}/blocks.json", "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


def quantize_q5_k(x):
    """x: [n, 256] float32 -> [n, 176] Q5_K blocks (per 32: scale and min to 6 bits, codes 0..31)."""
    sub = x.reshape(-1, 8, 32)
    low = np.minimum(sub.min(axis=2), 0)
    scale = (sub.max(axis=2) - low) / 31
    d = np.maximum(scale.max(axis=1), 1e-8) / 63
    dmin = np.maximum((-low).max(axis=1), 1e-8) / 63
    d16, dmin16 = d.astype(np.float16), dmin.astype(np.float16)
    sc = np.clip(np.rint(scale / d16.astype(np.float32)[:, None]), 0, 63).astype(np.int32)
    m = np.clip(np.rint(-low / dmin16.astype(np.float32)[:, None]), 0, 63).astype(np.int32)
    step = d16.astype(np.float32)[:, None, None] * sc[:, :, None]
    offset = dmin16.astype(np.float32)[:, None, None] * m[:, :, None]
    q = np.clip(np.rint((sub + offset) / np.where(step == 0, 1, step)), 0, 31).astype(np.int32).reshape(-1, 256)
    blocks = np.zeros((x.shape[0], 176), np.uint8)
    blocks[:, 0:2] = d16.view(np.uint8).reshape(-1, 2)
    blocks[:, 2:4] = dmin16.view(np.uint8).reshape(-1, 2)
    packed = np.zeros((x.shape[0], 12), np.int32)
    for j in range(4):
        packed[:, j] = sc[:, j] | ((sc[:, j + 4] >> 4) << 6)
        packed[:, j + 4] = m[:, j] | ((m[:, j + 4] >> 4) << 6)
        packed[:, j + 8] = (sc[:, j + 4] & 0xF) | ((m[:, j + 4] & 0xF) << 4)
    blocks[:, 4:16] = packed.astype(np.uint8)
    qh = np.zeros((x.shape[0], 32), np.int32)
    ql = np.zeros((x.shape[0], 128), np.int32)
    for j in range(4):
        first, second = q[:, 64 * j:64 * j + 32], q[:, 64 * j + 32:64 * j + 64]
        ql[:, 32 * j:32 * j + 32] = (first & 0xF) | ((second & 0xF) << 4)
        qh |= ((first >> 4) << (2 * j)) | ((second >> 4) << (2 * j + 1))
    blocks[:, 16:48] = qh.astype(np.uint8)
    blocks[:, 48:176] = ql.astype(np.uint8)
    return blocks


def quantize_iq4_nl(x):
    """x: [n, 32] float32 -> [n, 18] IQ4_NL blocks (the scale that maps the largest magnitude to the end level)."""
    amax = np.abs(x).max(axis=1)
    d = (np.where(amax == 0, 1e-8, amax) / 127).astype(np.float16)
    scaled = x / d.astype(np.float32)[:, None]
    q = np.abs(scaled[:, :, None] - IQ4_LEVELS[None, None, :]).argmin(axis=2)
    blocks = np.zeros((x.shape[0], 18), np.uint8)
    blocks[:, 0:2] = d.view(np.uint8).reshape(-1, 2)
    blocks[:, 2:18] = (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)
    return blocks


def encode(values, t):
    rows, k = values.shape
    if t == T.Q5_K:
        return quantize_q5_k(values.reshape(-1, 256)).reshape(rows, -1)
    if t == T.IQ4_NL:
        return quantize_iq4_nl(values.reshape(-1, 32)).reshape(rows, -1)
    return quants.quantize(values, t)


def mixed_model():
    reader = GGUFReader(FIXTURE)
    raw = open(FIXTURE, "rb").read()
    alignment = 32
    field = reader.fields.get("general.alignment")
    if field is not None:
        alignment = int(field.parts[field.data[0]][0])
    order = [T.Q5_K, T.Q4_0, T.Q5_0, T.IQ4_NL, T.Q4_1, T.Q5_1]
    infos, datas, offset, n = b"", [], 0, 0
    for tensor in reader.tensors:
        dims = [int(d) for d in tensor.shape]  # innermost first
        values = np.asarray(tensor.data, dtype=np.float32).reshape(-1, dims[0])
        t = T.F32
        if len(dims) == 2 and dims[0] % 32 == 0:
            t = order[n % len(order)]
            if t == T.Q5_K and dims[0] % 256:
                t = T.Q5_0
            n += 1
        data = values.tobytes() if t == T.F32 else encode(values, t).tobytes()
        name = tensor.name.encode()
        infos += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(dims))
        infos += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", int(t), offset)
        datas.append(data)
        offset += len(data) + (-len(data)) % alignment
    head = raw[:reader.tensors[0].field.offset] + infos
    out = bytearray(head + b"\0" * ((-len(head)) % alignment))
    for data in datas:
        out += data + b"\0" * ((-len(data)) % alignment)
    with open(f"{OUT}/tiny-pixtral-text-mixed.gguf", "wb") as f:
        f.write(out)
    check = GGUFReader(f"{OUT}/tiny-pixtral-text-mixed.gguf")
    for a, b in zip(reader.tensors, check.tensors):
        decoded = quants.dequantize(b.data, b.tensor_type).reshape(-1)
        error = np.abs(decoded - np.asarray(a.data, np.float32).reshape(-1)).max()
        print(f"{b.name:28} {b.tensor_type.name:7} max |error| {error:.4f}")


blocks_golden()
mixed_model()
