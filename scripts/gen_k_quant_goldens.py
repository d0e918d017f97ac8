"""Goldens for quantize-on-load to Q4_K and Q6_K (runtime/gpu/ops/quantize.ts, kernels/quantize.wgsl): llama.cpp's
own reference quantizers (quantize_row_q4_K_ref, quantize_row_q6_K_ref from the ggml that llama-cpp-python 0.3.36
builds: pip install llama-cpp-python==0.3.36 numpy) applied to blocks chosen for their edge cases: zeros, a
sub-block under GROUP_MAX_EPS, a constant, an outlier that makes the other sub-blocks' scales round to 0, all
negative, tiny and large magnitudes, and random ones. The fixture's Q4_K_M file (llama-quantize's) covers ordinary
weights. Writes tests/fixtures/gguf/k_quants.json: the f32 inputs and each type's blocks, base64.

Run from the repository root: python3 scripts/gen_k_quant_goldens.py
"""
import base64
import ctypes
import json
import os

import llama_cpp
import numpy as np

OUT = "tests/fixtures/gguf/k_quants.json"
ggml = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so"))

rng = np.random.default_rng(20261202)
blocks = []
def random(scale=0.05):
    return rng.normal(0, scale, 256).astype(np.float32)
blocks.append(np.zeros(256, np.float32))
b = random(); b[16:32] = 1e-20; blocks.append(b)
blocks.append(np.full(256, 0.01, np.float32))
b = random(); b[7] = 100; blocks.append(b)
b = random(); b[40] = -100; blocks.append(b)
blocks.append(-np.abs(random()) - 1e-3)
blocks.append(random(1e-6))
blocks.append(random(1e4))
b = random(); b[:128] = 0; blocks.append(b)
b = random(); b[::2] = 0.02; blocks.append(b)
blocks.extend(random() for _ in range(6))
x = np.concatenate(blocks).astype(np.float32)

out = {"llama_cpp_python": llama_cpp.__version__, "values": base64.b64encode(x.tobytes()).decode()}
for name, size in (("q4_k", 144), ("q6_k", 210)):
    fn = getattr(ggml, f"quantize_row_{name[:-2]}_K_ref")
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    dst = np.zeros(len(blocks) * size, np.uint8)
    fn(x.ctypes.data, dst.ctypes.data, len(x))
    out[name] = base64.b64encode(dst.tobytes()).decode()
with open(OUT, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
