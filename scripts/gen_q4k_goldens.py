"""Goldens for quantize-on-load to Q4_K (runtime/gpu/ops/quantize.ts, kernels/quantize.wgsl): llama.cpp's own
quantizer (quantize_row_q4_K_ref, through llama-cpp-python 0.3.36: pip install llama-cpp-python==0.3.36 gguf
numpy, built from source) applied to the tiny fixture's f32 text model as Q4_K_S, and the Q4_K blocks of two of
its matrices kept: tests/fixtures/gguf/q4_k.json, base64, with the tensor names whose f32 values they quantize.

Run from the repository root: python3 scripts/gen_q4k_goldens.py
"""
import base64
import ctypes
import json
import os
import tempfile

import llama_cpp
from gguf import GGMLQuantizationType as T, GGUFReader

FIXTURE = "../shared/fixtures/tiny-pixtral/gguf/tiny-pixtral-text-f32.gguf"
OUT = "tests/fixtures/gguf/q4_k.json"
NAMES = ["blk.0.attn_k.weight", "blk.1.attn_k.weight"]

with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "q4_k_s.gguf")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_S
    params.nthread = 1
    assert llama_cpp.llama_model_quantize(FIXTURE.encode(), path.encode(), ctypes.byref(params)) == 0
    reader = GGUFReader(path)
    out = {}
    for t in reader.tensors:
        if t.name in NAMES:
            assert t.tensor_type == T.Q4_K, t.name
            out[t.name] = {
                "shape": [int(n) for n in reversed(t.shape.tolist())],
                "blocks": base64.b64encode(t.data.tobytes()).decode(),
            }
with open(OUT, "w") as f:
    json.dump({"llama_cpp_python": llama_cpp.__version__, "tensors": out}, f, indent=1)
    f.write("\n")
