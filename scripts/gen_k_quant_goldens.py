"""Goldens for quantize-on-load to the k-quants (runtime/gpu/ops/quantize.ts, kernels/quantize.wgsl, the recipes of
runtime/model/plan.ts mixFormat), from llama.cpp itself (the ggml and llama.cpp that llama-cpp-python 0.3.36
builds: pip install llama-cpp-python==0.3.36 numpy gguf):
- its reference quantizers (quantize_row_q4_K_ref, _q5_K_ref, _q6_K_ref) applied to blocks chosen for their edge
  cases: zeros, a sub-block under GROUP_MAX_EPS, a constant, an outlier that makes the other sub-blocks' scales
  round to 0, all negative, tiny and large magnitudes, and random ones: tests/fixtures/gguf/k_quants.json, the f32
  inputs and each type's blocks, base64;
- llama_model_quantize of the tiny fixture's f32 text model to Q5_K_M and Q6_K (the fixture has its Q4_K_M file):
  tests/fixtures/gguf/k_quant_models.json, each tensor's type and the sha256 of its bytes.

Run from the repository root: python3 scripts/gen_k_quant_goldens.py
"""
import base64
import ctypes
import hashlib
import json
import os
import tempfile

import llama_cpp
import numpy as np
from gguf import GGUFReader

OUT = "tests/fixtures/gguf/k_quants.json"
MODELS_OUT = "tests/fixtures/gguf/k_quant_models.json"
FIXTURE = "../shared/fixtures/tiny-pixtral/gguf/tiny-pixtral-text-f32.gguf"
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
for name, size in (("q4_k", 144), ("q5_k", 176), ("q6_k", 210)):
    fn = getattr(ggml, f"quantize_row_{name[:-2]}_K_ref")
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    dst = np.zeros(len(blocks) * size, np.uint8)
    fn(x.ctypes.data, dst.ctypes.data, len(x))
    out[name] = base64.b64encode(dst.tobytes()).decode()
with open(OUT, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")

models = {"llama_cpp_python": llama_cpp.__version__}
with tempfile.TemporaryDirectory() as tmp:
    for name, ftype in (("Q5_K_M", llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M), ("Q6_K", llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K)):
        path = os.path.join(tmp, f"{name}.gguf")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        params.nthread = 1
        assert llama_cpp.llama_model_quantize(FIXTURE.encode(), path.encode(), ctypes.byref(params)) == 0
        models[name] = {
            t.name: {"type": t.tensor_type.name, "sha256": hashlib.sha256(t.data.tobytes()).hexdigest()}
            for t in GGUFReader(path).tensors
            if t.tensor_type.name != "F32"
        }
with open(MODELS_OUT, "w") as f:
    json.dump(models, f, indent=1)
    f.write("\n")
