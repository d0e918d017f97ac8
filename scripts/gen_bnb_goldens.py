#!/usr/bin/env python3
"""Generate bitsandbytes (bnb) serialization goldens for the Pixtral server.

Usage:
    python3 gen_bnb_goldens.py OUT_DIR [--fixture DIR] [--skip-model]

Needs torch, bitsandbytes (tested 0.50.2, CPU backend), safetensors, numpy and,
for the whole-model part, transformers (tested 5.24.0) + accelerate (transformers
refuses bnb without it). No GPU is needed: everything runs on CPU.

What it writes (all deterministic; re-running reproduces the same bytes):

  OUT_DIR/cases.safetensors   small per-layer cases. For case C every tensor a
                              quantized linear writes into a checkpoint is stored
                              under "C.<original suffix>" (e.g. "C.weight",
                              "C.weight.absmax", "C.weight.quant_state.bitsandbytes__nf4",
                              "C.SCB"), plus
                                C.original         the bf16/f16/f32 weight before quantization
                                C.expected         F32: bitsandbytes' own dequantization
                                                   (dequantize_4bit / int8_vectorwise_dequant)
                                                   with the output dtype forced to float32
                                C.expected_native  4-bit only: bitsandbytes' dequantization in
                                                   the dtype recorded in the quant_state JSON
                                                   (what transformers/bnb produce at run time)
  OUT_DIR/manifest.json       cases, key lists, dtypes/shapes, decoded JSON blobs,
                              formulas, code tables and the formula checks.
  OUT_DIR/tiny-nf4/           (unless --skip-model) the tiny Pixtral fixture quantized by
                              transformers with BitsAndBytesConfig(load_in_4bit, nf4,
                              double quant, compute bf16) and saved with save_pretrained,
                              plus tekken.json / tokenizer_config.json / preprocessor_config.json.
  OUT_DIR/tiny-nf4-golden/    reference outputs for the fixture's golden inputs:
                              *.dequant_f64.*  dense float64 model whose quantized linear
                                               weights are replaced by their exact dequantized
                                               values (the golden to match tightly)
                              *.hf_bnb_cpu.*   transformers running the bnb model itself on
                                               CPU (bf16 compute, informational only)
                              golden.json lists files, shapes and diffs.
"""

import argparse
import copy
import hashlib
import json
import os
import shutil
import struct
import sys

import numpy as np
import torch

import bitsandbytes as bnb
import bitsandbytes.functional as F
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
from safetensors.torch import save_file

SEED = 20260301

# ----------------------------------------------------------------------------
# Pure-numpy reference decoders (same maths as verify.py; used here to record in
# the manifest whether a plain formula reproduces bitsandbytes bit for bit).
# ----------------------------------------------------------------------------


def f32(x):
    return np.asarray(x, dtype=np.float64).astype(np.float32)


def round_to(x, dtype_name):
    """Round float64/float32 values to dtype_name (round to nearest even), return float64."""
    x32 = f32(x)
    if dtype_name == "float32":
        return x32.astype(np.float64)
    if dtype_name == "bfloat16":
        return bf16_rne(x32).astype(np.float64)
    if dtype_name == "float16":
        return x32.astype(np.float16).astype(np.float64)
    raise ValueError(dtype_name)


def np_absmax(absmax, nested):
    """Per-block absmax, for both decoding modes.

    nested is None for plain absmax (stored float32), else a dict with
    nested_absmax (f32), nested_quant_map (f32[256]), nested_blocksize, nested_offset,
    nested_dtype. Returns {True: exact emulation of bnb (a float32 product rounded to
    nested_dtype, + float32 offset, rounded to nested_dtype), False: one float64 expression}.
    """
    if nested is None:
        return {True: absmax.astype(np.float32), False: absmax.astype(np.float64)}
    nd = nested.get("nested_dtype", "float32")
    idx = np.arange(absmax.size) // nested["nested_blocksize"]
    code = nested["nested_quant_map"].astype(np.float64)[absmax.astype(np.int64)]
    scale = nested["nested_absmax"].astype(np.float64)[idx]
    off32 = np.float64(np.float32(nested["nested_offset"]))  # JSON number -> float32 tensor in bnb
    stepped = f32(round_to(round_to(code * scale, nd) + off32, nd))
    pure = code * scale + off32
    return {True: stepped, False: pure}


def np_dequant_4bit(packed_u8, absmax_by_mode, quant_map, blocksize, shape):
    n = int(np.prod(shape))
    b = packed_u8.reshape(-1)
    q = np.empty(b.size * 2, dtype=np.int64)
    q[0::2] = b >> 4  # element 2i   = HIGH nibble
    q[1::2] = b & 0xF  # element 2i+1 = LOW nibble
    q = q[:n]
    blk = np.arange(n) // blocksize  # blocks run over the flattened row-major tensor
    code = quant_map.astype(np.float64)[q]
    out = {}
    for mode, am in absmax_by_mode.items():
        out[mode] = f32(code * am.astype(np.float64)[blk]).reshape(shape)
    return out  # {True: stepwise f32, False: pure f64 then one f32 rounding}


def bf16_rne(x32):
    """float32 -> bfloat16 bits (round to nearest even), returned as float32 values."""
    u = x32.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return (u.astype(np.uint32) << 16).view(np.float32)


def bits_equal(a, b):
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    return bool(a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32)))


def n_mismatch(a, b):
    a = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    b = np.ascontiguousarray(b, dtype=np.float32).view(np.uint32)
    return int((a != b).sum())


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read())
    return h.hexdigest()


def f32_hex(v):
    return "0x%08x" % struct.unpack("<I", struct.pack("<f", float(v)))[0]


# ----------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------

# name, shape [out, in], weight dtype, quant_type, double quant, blocksize, quant_storage, bias, note
CASES_4BIT = [
    ("nf4_dq", (96, 256), torch.bfloat16, "nf4", True, 64, torch.uint8, False,
     "the common case (unsloth-style): nf4 + double quant; 384 blocks -> 2 nested blocks (256 + 128); "
     "block 0 is all zeros"),
    ("nf4", (32, 128), torch.bfloat16, "nf4", False, 64, torch.uint8, True,
     "nf4 without double quant: absmax stored as F32; layer has a bias (saved unquantized)"),
    ("fp4_dq", (48, 128), torch.bfloat16, "fp4", True, 64, torch.uint8, False, "fp4 + double quant"),
    ("fp4", (16, 64), torch.bfloat16, "fp4", False, 64, torch.uint8, False,
     "fp4 without double quant; row 3 all zeros"),
    ("nf4_dq_ragged", (7, 100), torch.bfloat16, "nf4", True, 64, torch.uint8, False,
     "700 elements = 10 full blocks + one block of 60; blocks cross row boundaries"),
    ("fp4_odd", (5, 13), torch.bfloat16, "fp4", False, 64, torch.uint8, False,
     "65 elements (odd): 33 packed bytes, low nibble of the last byte is padding; last block has 1 element"),
    ("nf4_dq_bs128", (16, 256), torch.bfloat16, "nf4", True, 128, torch.uint8, False,
     "blocksize 128 (transformers always uses 64; read blocksize from the JSON)"),
    ("nf4_dq_storage_bf16", (32, 128), torch.bfloat16, "nf4", True, 64, torch.bfloat16, False,
     "bnb_4bit_quant_storage=bfloat16: the packed bytes are saved as a BF16 tensor [n/4, 1]; "
     "reinterpret its raw bytes as uint8"),
    ("nf4_dq_fp16", (16, 128), torch.float16, "nf4", True, 64, torch.uint8, False,
     "float16 source weights: JSON dtype is 'float16'"),
    ("nf4_f32", (16, 128), torch.float32, "nf4", False, 64, torch.uint8, False,
     "float32 source weights: JSON dtype is 'float32'"),
    ("nf4_dq_cpu_resaved", (64, 256), torch.bfloat16, "nf4", True, 64, torch.uint8, False,
     "saved after a CPU forward on an AVX512-BF16 machine: bnb repacks the weight for its CPU kernel and, "
     "on save, re-quantizes the absmax from bfloat16 values, so nested_dtype is 'bfloat16' and the nested "
     "dequantization is rounded to bfloat16 (reproduced here without depending on the CPU)"),
]

CASES_8BIT = [
    ("int8", (24, 40), torch.bfloat16, True,
     "LLM.int8 (load_in_8bit): row-wise absmax int8; one outlier row; layer has a bias"),
]


def make_weight(gen, shape, dtype, case):
    w = torch.randn(shape, generator=gen, dtype=torch.float32) * 0.08
    if case == "nf4_dq":
        w.view(-1)[:64] = 0.0  # an all-zero block
        w[5, 7] = 1.5  # an outlier
    if case == "fp4":
        w[3, :] = 0.0
    if case == "int8":
        w[2, 3] = 2.0  # outlier row
    return w.to(dtype)


def state_dict_4bit(w, quant_type, dq, blocksize, storage, bias, cpu_repacked=False):
    """Quantize exactly as transformers does (Linear4bit + Params4bit) and return
    the module's state_dict, i.e. what save_pretrained writes for this layer."""
    out_f, in_f = w.shape
    lin = bnb.nn.Linear4bit(in_f, out_f, bias=bias is not None, compute_dtype=torch.bfloat16,
                            compress_statistics=dq, quant_type=quant_type, quant_storage=storage)
    lin.weight = bnb.nn.Params4bit(w.clone(), requires_grad=False, blocksize=blocksize,
                                   compress_statistics=dq, quant_type=quant_type,
                                   quant_storage=storage, module=lin)
    if bias is not None:
        lin.bias = torch.nn.Parameter(bias.clone(), requires_grad=False)
    lin = lin.to("cpu")  # Params4bit.to(device) quantizes (bnb.functional.quantize_4bit)
    if cpu_repacked:
        # what Linear4bit.forward does on CPU with AVX512-BF16; _save_to_state_dict undoes it
        lin.weight.data, lin.weight.quant_state = F._convert_weight_packed_for_cpu(lin.weight.data, lin.weight.quant_state)
    return {k: v.detach().clone().contiguous() for k, v in lin.state_dict().items()}


def state_dict_8bit(w, bias):
    out_f, in_f = w.shape
    lin = bnb.nn.Linear8bitLt(in_f, out_f, bias=bias is not None, has_fp16_weights=False, threshold=6.0)
    lin.weight = bnb.nn.Int8Params(w.clone(), requires_grad=False, has_fp16_weights=False)
    if bias is not None:
        lin.bias = torch.nn.Parameter(bias.clone(), requires_grad=False)
    lin = lin.to("cpu")  # Int8Params.to(device) quantizes (int8_vectorwise_quant of w.half())
    return {k: v.detach().clone().contiguous() for k, v in lin.state_dict().items()}


def quant_state_from_sd(sd):
    """Rebuild bnb's QuantState from the saved tensors, exactly like
    transformers' Bnb4bitDeserialize -> Params4bit.from_prequantized."""
    stats = {k[len("weight."):]: v for k, v in sd.items() if k.startswith("weight.")}
    return F.QuantState.from_dict(qs_dict=stats, device=torch.device("cpu"))


def qs_json(sd):
    key = [k for k in sd if k.startswith("weight.quant_state.")][0]
    raw = bytes(sd[key].numpy().tobytes())
    return key, raw.decode("utf-8"), json.loads(raw)


def tensor_info(t):
    return {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape)}


def build_cases(out_dir):
    gen = torch.Generator().manual_seed(SEED)
    tensors = {}
    cases = []
    for name, shape, wdtype, qt, dq, bs, storage, has_bias, note in CASES_4BIT:
        w = make_weight(gen, shape, wdtype, name)
        bias = (torch.randn(shape[0], generator=gen) * 0.02).to(wdtype) if has_bias else None
        sd = state_dict_4bit(w, qt, dq, bs, storage, bias, cpu_repacked=name.endswith("cpu_resaved"))
        qkey, qraw, qdict = qs_json(sd)

        # bitsandbytes' own dequantization (CPU C++ kernel), output forced to float32 ...
        qs = quant_state_from_sd(sd)
        native_dtype = qs.dtype
        qs.dtype = torch.float32
        exp32 = F.dequantize_4bit(sd["weight"], qs).contiguous()
        # ... and in the dtype recorded in the JSON (bf16/f16/f32), as bnb returns it.
        qs_n = quant_state_from_sd(sd)
        exp_native = F.dequantize_4bit(sd["weight"], qs_n).contiguous()
        assert exp_native.dtype == native_dtype

        # cross-check: bnb's portable pure-torch implementation gives the same bits
        absmax = qs.absmax
        if qs.nested:
            absmax = F.dequantize_blockwise(qs.absmax, qs.state2)
            absmax += qs.offset
            absmax = absmax.float()
        ref = _dequantize_4bit_compute.__wrapped__(sd["weight"].view(torch.uint8).reshape(-1), absmax.float(),
                                       F.get_4bit_type(qt, device="cpu"), qs.blocksize, list(shape),
                                       torch.float32)
        assert torch.equal(ref.view(torch.int32), exp32.view(torch.int32)), name

        # plain-formula checks
        packed = sd["weight"].view(torch.uint8).numpy().reshape(-1)
        nested = None
        if dq:
            nested = {"nested_absmax": sd["weight.nested_absmax"].numpy(),
                      "nested_quant_map": sd["weight.nested_quant_map"].numpy(),
                      "nested_blocksize": qdict["nested_blocksize"],
                      "nested_offset": qdict["nested_offset"], "nested_dtype": qdict["nested_dtype"]}
        am = np_absmax(sd["weight.absmax"].numpy(), nested)
        dec = np_dequant_4bit(packed, am, sd["weight.quant_map"].numpy(), qdict["blocksize"], shape)
        e32 = exp32.numpy()
        check = {
            "stepwise_f32_formula_bitexact": bits_equal(dec[True], e32),
            "pure_f64_then_f32_mismatches": n_mismatch(dec[False], e32),
            "pure_f64_then_f32_max_abs_diff": float(np.abs(dec[False].astype(np.float64) - e32).max()),
            "bnb_cpu_kernel_equals_bnb_default_torch_impl": True,
        }
        if native_dtype == torch.bfloat16:
            check["expected_native_is_bf16_rne_of_expected"] = bits_equal(
                exp_native.float().numpy(), bf16_rne(e32))
        elif native_dtype == torch.float16:
            check["expected_native_is_f16_rne_of_expected"] = bool(np.array_equal(
                exp_native.numpy().view(np.uint16), e32.astype(np.float16).view(np.uint16)))
        else:
            check["expected_native_equals_expected"] = bits_equal(exp_native.numpy(), e32)

        for k, v in sd.items():
            tensors[f"{name}.{k}"] = v
        tensors[f"{name}.original"] = w.contiguous()
        tensors[f"{name}.expected"] = exp32
        tensors[f"{name}.expected_native"] = exp_native

        nblocks = -(-int(np.prod(shape)) // bs)
        cases.append({
            "name": name, "kind": "4bit", "note": note,
            "shape": list(shape), "numel": int(np.prod(shape)), "source_dtype": str(wdtype).replace("torch.", ""),
            "quant_type": qt, "double_quant": dq, "blocksize": bs, "n_blocks": nblocks,
            "quant_storage": str(storage).replace("torch.", ""),
            "tensors": {k: tensor_info(v) for k, v in sd.items()},
            "quant_state_key": qkey, "quant_state_json": qraw, "quant_state": qdict,
            "expected": tensor_info(exp32), "expected_native": tensor_info(exp_native),
            "max_abs_err_vs_original": float((exp32 - w.float()).abs().max()),
            "checks": check,
        })

    for name, shape, wdtype, has_bias, note in CASES_8BIT:
        w = make_weight(gen, shape, wdtype, name)
        bias = (torch.randn(shape[0], generator=gen) * 0.02).to(wdtype) if has_bias else None
        sd = state_dict_8bit(w, bias)
        exp32 = F.int8_vectorwise_dequant(sd["weight"], sd["SCB"]).float().contiguous()
        q = sd["weight"].numpy().astype(np.float64)
        scb = sd["SCB"].numpy().astype(np.float64)[:, None]
        c127 = np.float64(np.float32(7.874015718698502e-3))  # bnb multiplies by this f32 constant
        e32 = exp32.numpy()
        check = {
            "formula_f32(f32(q*SCB)*f32(1/127))_bitexact": bits_equal(f32(f32(q * scb).astype(np.float64) * c127), e32),
            "formula_f32(q*SCB/127)_mismatches": n_mismatch(f32(q * scb / 127.0), e32),
            "formula_f32(q*SCB/127)_max_abs_diff": float(np.abs(f32(q * scb / 127.0).astype(np.float64) - e32).max()),
            "SCB_values_are_float16_exact": bool(np.array_equal(sd["SCB"].numpy().astype(np.float16).astype(np.float32), sd["SCB"].numpy())),
        }
        for k, v in sd.items():
            tensors[f"{name}.{k}"] = v
        tensors[f"{name}.original"] = w.contiguous()
        tensors[f"{name}.expected"] = exp32
        cases.append({
            "name": name, "kind": "int8", "note": note, "shape": list(shape),
            "source_dtype": str(wdtype).replace("torch.", ""),
            "tensors": {k: tensor_info(v) for k, v in sd.items()},
            "weight_format_value": int(sd["weight_format"].item()),
            "expected": tensor_info(exp32),
            "max_abs_err_vs_original": float((exp32 - w.float()).abs().max()),
            "checks": check,
        })

    path = os.path.join(out_dir, "cases.safetensors")
    # a single metadata key: safetensors writes metadata from a hash map, so several keys come out in random order
    save_file(tensors, path, metadata={"format": "pt"})
    return cases, path


# ----------------------------------------------------------------------------
# Whole tiny model via transformers
# ----------------------------------------------------------------------------

def config_diff(a, b, prefix=""):
    """Keys whose values differ between two nested config dicts: {key: [a, b]}."""
    out = {}
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out.update(config_diff(va, vb, prefix + k + "."))
        elif va != vb:
            out[prefix + k] = [va, vb]
    return out


def read_f32(path, shape):
    return np.fromfile(path, dtype="<f4").reshape(shape)


def build_model(out_dir, fixture):
    from transformers import BitsAndBytesConfig, LlavaForConditionalGeneration
    import transformers
    from safetensors import safe_open

    src = os.path.join(fixture, "hf")
    man = json.load(open(os.path.join(fixture, "golden/model/manifest.json")))
    pre = json.load(open(os.path.join(fixture, "golden/preprocess/manifest.json")))
    model_dir = os.path.join(out_dir, "tiny-nf4")
    gold_dir = os.path.join(out_dir, "tiny-nf4-golden")
    for d in (model_dir, gold_dir):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)

    # 1) quantize + save. Save BEFORE any forward: on CPUs with AVX512-BF16, bnb's first CPU
    #    forward repacks the weight and on save re-quantizes the nested absmax from bf16 values.
    qcfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
    m = LlavaForConditionalGeneration.from_pretrained(src, quantization_config=qcfg, device_map="cpu",
                                                      dtype=torch.bfloat16)
    not_quantized = sorted(n for n, mod in m.named_modules() if type(mod) is torch.nn.Linear)
    m.save_pretrained(model_dir)
    del m
    for f in ("tekken.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copyfile(os.path.join(src, f), os.path.join(model_dir, f))
    # config.json: transformers 5 rewrites the whole config in its new style (rope_parameters,
    # dtype, transformers_version). Real bnb Pixtral repos (2024, transformers 4.4x) have the
    # old style, i.e. the fixture's config plus the quantization_config block. Write that, and
    # keep a record of what transformers 5 wrote.
    t5_cfg = json.load(open(os.path.join(model_dir, "config.json")))
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg["quantization_config"] = t5_cfg["quantization_config"]
    with open(os.path.join(model_dir, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2, sort_keys=True)
        fh.write("\n")
    t5_diff = config_diff(cfg, t5_cfg)

    # describe the saved checkpoint
    st_path = os.path.join(model_dir, "model.safetensors")
    with open(st_path, "rb") as fh:
        hlen = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(hlen))
    header.pop("__metadata__", None)
    quantized_prefixes = sorted(k[:-len(".weight")] for k in header if k.endswith(".weight")
                                and (k + ".absmax") in header)
    suffixes = sorted({k[len(p) + 1:] for p in quantized_prefixes for k in header if k.startswith(p + ".")})
    dense = sorted(k for k in header if not any(k.startswith(p + ".") for p in quantized_prefixes))
    blobs = {}
    with safe_open(st_path, "pt") as sf:
        for p in quantized_prefixes[:3]:
            blobs[p] = bytes(sf.get_tensor(p + ".weight.quant_state.bitsandbytes__nf4").numpy().tobytes()).decode()

    # 2) reload the saved folder the normal way (pre-quantized path) and collect bnb's
    #    float32 dequantization of every quantized linear, before any forward.
    qm = LlavaForConditionalGeneration.from_pretrained(model_dir, device_map="cpu", dtype=torch.bfloat16).eval()
    deq = {}
    for n, mod in qm.named_modules():
        if isinstance(mod, bnb.nn.Linear4bit):
            qs = copy.deepcopy(mod.weight.quant_state)
            qs.dtype = torch.float32
            deq[n] = F.dequantize_4bit(mod.weight.data, qs).clone()

    # cross-check: our numpy formula on the raw file tensors == bnb's dequantization
    def legacy_to_module(k):
        for a, b in (("language_model.model.", "model.language_model."), ("language_model.lm_head", "lm_head"),
                     ("vision_tower.", "model.vision_tower."),
                     ("multi_modal_projector.", "model.multi_modal_projector.")):
            if k.startswith(a):
                return b + k[len(a):]
        return k
    formula_ok = 0
    with safe_open(st_path, "np") as sf:
        for p in quantized_prefixes:
            qd = json.loads(bytes(sf.get_tensor(p + ".weight.quant_state.bitsandbytes__nf4")).decode())
            nested = {"nested_absmax": sf.get_tensor(p + ".weight.nested_absmax"),
                      "nested_quant_map": sf.get_tensor(p + ".weight.nested_quant_map"),
                      "nested_blocksize": qd["nested_blocksize"], "nested_offset": qd["nested_offset"],
                      "nested_dtype": qd["nested_dtype"]}
            am = np_absmax(sf.get_tensor(p + ".weight.absmax"), nested)
            dec = np_dequant_4bit(sf.get_tensor(p + ".weight"), {True: am[True]},
                                  sf.get_tensor(p + ".weight.quant_map"), qd["blocksize"], qd["shape"])
            assert bits_equal(dec[True], deq[legacy_to_module(p)].numpy()), p
            formula_ok += 1
    assert formula_ok == len(deq)

    # 3) inputs: the fixture's golden text / vision / multimodal cases
    def pixels(rel):
        p = rel.replace("shared/fixtures/tiny-pixtral", fixture)
        nm = os.path.basename(p).replace(".pixels.f32.bin", "")
        im = [i for i in pre["images"] if i["name"] == nm][0]
        return read_f32(p, im["pixels"]["shape"])

    def run(model, dtype):
        res = {}
        with torch.no_grad():
            for t in man["text"]:
                res[t["name"]] = ("logits", model(input_ids=torch.tensor([t["ids"]])).logits[0])
            for v in man["vision"]:
                x = torch.from_numpy(pixels(v["pixels_from"][0])).to(dtype)[None]
                feats = model.get_image_features(pixel_values=x, image_sizes=torch.tensor([[x.shape[2], x.shape[3]]]),
                                                 vision_feature_layer=-1, vision_feature_select_strategy="full")
                f = feats.pooler_output if hasattr(feats, "pooler_output") else feats
                f = torch.cat(list(f), 0) if isinstance(f, (list, tuple)) else f
                res[v["name"]] = ("emb", f.reshape(-1, f.shape[-1]))
            for mm in man["multimodal"]:
                x = torch.from_numpy(pixels(mm["pixels_from"])).to(dtype)[None]
                out = model(input_ids=torch.tensor([mm["ids"]]), pixel_values=x,
                            image_sizes=torch.tensor([[x.shape[2], x.shape[3]]])).logits[0]
                res[mm["name"]] = ("logits", out)
        return {k: (kind, v.float().numpy().astype("<f4")) for k, (kind, v) in res.items()}

    hf_bnb = run(qm, torch.bfloat16)  # bnb runtime on CPU (bf16 compute)
    del qm

    # 4) dense float64 model, quantized linears replaced by their exact dequantized values
    dm = LlavaForConditionalGeneration.from_pretrained(src, dtype=torch.float64, attn_implementation="eager").eval()
    orig = run(dm, torch.float64)  # sanity: must reproduce the fixture goldens
    mods = dict(dm.named_modules())
    for n, w in deq.items():
        assert mods[n].weight.shape == w.shape
        mods[n].weight.data.copy_(w.double())
    dq64 = run(dm, torch.float64)

    # fixture goldens for comparison
    fixture_ref = {}
    for t in man["text"]:
        fixture_ref[t["name"]] = read_f32(os.path.join(fixture, "golden/model", t["logits"]["file"]), t["logits"]["shape"])
    for v in man["vision"]:
        e = v["embeddings_after_adapter"]
        fixture_ref[v["name"]] = read_f32(os.path.join(fixture, "golden/model", e["file"]), e["shape"])
    for mm in man["multimodal"]:
        fixture_ref[mm["name"]] = read_f32(os.path.join(fixture, "golden/model", mm["logits"]["file"]), mm["logits"]["shape"])

    entries = []
    for name, (kind, a) in dq64.items():
        b = hf_bnb[name][1]
        fa = os.path.join(gold_dir, f"{name}.dequant_f64.{kind}.f32.bin")
        fb = os.path.join(gold_dir, f"{name}.hf_bnb_cpu.{kind}.f32.bin")
        a.tofile(fa)
        b.tofile(fb)
        ent = {
            "name": name, "kind": kind, "shape": list(a.shape), "dtype": "float32_le",
            "dequant_f64": {"file": os.path.basename(fa), "sha256": sha256(fa)},
            "hf_bnb_cpu": {"file": os.path.basename(fb), "sha256": sha256(fb)},
            "max_abs_value": float(np.abs(a).max()),
            "max_abs_hf_bnb_cpu_vs_dequant_f64": float(np.abs(a.astype(np.float64) - b).max()),
            "max_abs_dequant_f64_vs_fixture_unquantized_golden": float(np.abs(a.astype(np.float64) - fixture_ref[name]).max()),
            "sanity_max_abs_f64_unquantized_vs_fixture_golden": float(np.abs(orig[name][1].astype(np.float64) - fixture_ref[name]).max()),
        }
        if kind == "logits":
            ent["argmax_dequant_f64"] = [int(i) for i in a.argmax(-1)]
            ent["argmax_hf_bnb_cpu"] = [int(i) for i in b.argmax(-1)]
            src_case = ([t for t in man["text"] if t["name"] == name] + [x for x in man["multimodal"] if x["name"] == name])[0]
            ent["ids"] = src_case["ids"]
            if "pixels_from" in src_case:
                ent["pixels_from"] = src_case["pixels_from"]
        else:
            ent["pixels_from"] = [v for v in man["vision"] if v["name"] == name][0]["pixels_from"]
        entries.append(ent)

    golden = {
        "what": "reference outputs of tiny-nf4 (the tiny Pixtral fixture quantized nf4 + double quant by transformers) "
                "for the inputs of shared/fixtures/tiny-pixtral/golden/model/manifest.json",
        "model": "tiny-nf4",
        "dequant_f64": "transformers LlavaForConditionalGeneration in float64 (eager attention) with every quantized "
                       "linear weight replaced by bnb's float32 dequantization (exact, see manifest formulas), all other "
                       "weights from the bf16 fixture; stored as float32. This is the golden to match.",
        "hf_bnb_cpu": "transformers running the bnb model on CPU (compute dtype bf16, bf16 activations; on CPUs with "
                      "AVX512-BF16 bnb uses its fused kernel with bfloat16 absmax). Informational and CPU-dependent: "
                      "bf16 rounding makes it differ from dequant_f64 by the amounts listed.",
        "tolerance_hint": "a float32 implementation using the exact dequantized weights should match dequant_f64 to "
                          "~1e-4 absolute (the unquantized fixture goldens are reproduced by transformers float64 to "
                          "<1e-5, see sanity_*); the unquantized fixture goldens differ by several units, so "
                          "quantized models must be compared with these files, not those.",
        "transformers_version": transformers.__version__, "bitsandbytes_version": bnb.__version__,
        "torch_version": torch.__version__,
        "entries": entries,
    }
    with open(os.path.join(gold_dir, "golden.json"), "w") as fh:
        json.dump(golden, fh, indent=1)

    return {
        "dir": "tiny-nf4",
        "how": "LlavaForConditionalGeneration.from_pretrained(fixture hf, quantization_config=BitsAndBytesConfig("
               "load_in_4bit=True, bnb_4bit_quant_type='nf4', bnb_4bit_use_double_quant=True, "
               "bnb_4bit_compute_dtype=torch.bfloat16), device_map='cpu', dtype=torch.bfloat16).save_pretrained(...)",
        "quantization_config": cfg["quantization_config"],
        "config_json": "fixture hf/config.json + quantization_config (the transformers 4.x style of the real "
                       "bnb Pixtral repos); reloaded by transformers 5 for the goldens",
        "config_json_as_written_by_transformers5_differs_in": t5_diff,
        "key_layout": "transformers 5 saves with the checkpoint's own (legacy llava) names: language_model.model.*, "
                      "language_model.lm_head.weight, vision_tower.*, multi_modal_projector.*",
        "modules_left_unquantized_by_transformers": not_quantized,
        "quantized_linear_count": len(quantized_prefixes),
        "quantized_linears": quantized_prefixes,
        "suffixes_per_quantized_linear": suffixes,
        "dense_tensors": {k: {"dtype": header[k]["dtype"], "shape": header[k]["shape"]} for k in dense},
        "example_quant_state_json": blobs,
        "numpy_formula_equals_bnb_dequant_for_all_linears": True,
        "golden_dir": "tiny-nf4-golden",
        "model_safetensors_sha256": sha256(st_path),
    }


# ----------------------------------------------------------------------------

def code_tables():
    nf4 = F.get_4bit_type("nf4", device="cpu").numpy()
    fp4 = F.get_4bit_type("fp4", device="cpu").numpy()
    dyn = F.create_dynamic_map(signed=True).numpy()
    return {
        "nf4": {"values": [float(v) for v in nf4], "f32_bits": [f32_hex(v) for v in nf4],
                "note": "index = 4-bit code; sorted ascending; code 7 = 0.0, code 15 = 1.0"},
        "fp4": {"values": [float(v) for v in fp4], "f32_bits": [f32_hex(v) for v in fp4],
                "note": "float32([0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3]) / 12 "
                        "(division done in float32). Bit 3 is the sign. Code 8 is +0.0 in this table (the Python literal -0 is "
                        "an integer zero); bnb's CUDA kernel returns -0.0 for it, which only matters for bitwise "
                        "comparison of zeros"},
        "nested_quant_map_dynamic": {
            "values": [float(v) for v in dyn], "f32_bits": [f32_hex(v) for v in dyn],
            "note": "bitsandbytes.functional.create_dynamic_map(signed=True): the 8-bit 'dynamic' code used to "
                    "quantize absmax in double quant. Saved per layer as weight.nested_quant_map (F32[256]); "
                    "read it from the file."},
    }


FORMULAS = {
    "layout_4bit": [
        "weight: the packed codes, shape [ceil(numel/2), 1], dtype = bnb_4bit_quant_storage (uint8 normally; "
        "for bf16/f16/f32 storage reinterpret the raw little-endian bytes as uint8). The logical shape is quant_state.shape "
        "([out_features, in_features]).",
        "Flatten the logical tensor row-major: element e (0 <= e < numel). Byte e>>1 holds it: "
        "HIGH nibble (byte >> 4) for even e, LOW nibble (byte & 0xF) for odd e. If numel is odd the low nibble "
        "of the last byte is padding (0).",
        "Blocks run over the flattened tensor, ignoring rows: block(e) = floor(e / blocksize); "
        "n_blocks = ceil(numel / blocksize); the last block may be short. transformers always uses blocksize 64.",
    ],
    "dequant_4bit": "w[e] = f32( quant_map[code(e)] * absmax_f32[block(e)] )  -- one float32 multiply "
                    "(bnb CPU and CUDA kernels both compute in float32; the result is then cast to quant_state.dtype, "
                    "bf16 for bf16 models, with round-to-nearest-even). The f64 product of two f32 values is exact, "
                    "so computing it in float64 and rounding once to float32 (Math.fround) is bit-identical.",
    "absmax_plain": "no double quant: weight.absmax is F32[n_blocks], used as is.",
    "absmax_double_quant": "double quant: weight.absmax is U8[n_blocks] (codes), weight.nested_absmax is "
                           "F32[ceil(n_blocks/nested_blocksize)] (nested_blocksize = 256), weight.nested_quant_map is "
                           "F32[256], nested_offset is a float in the JSON. "
                           "absmax_f32[j] = f32( f32( nested_quant_map[absmax_u8[j]] * nested_absmax[j // 256] ) + f32(nested_offset) ). "
                           "Two float32 roundings: bnb dequantizes the absmax codes to a float32 tensor first, then adds "
                           "the float32 offset in place. Skipping the inner rounding (one f64 expression) is NOT "
                           "bit-exact (see checks.pure_f64_then_f32_mismatches). nested blocks also run over the flat absmax array. "
                           "General form: R(R(nested_quant_map[c] * nested_absmax[j // nested_blocksize]) + f32(nested_offset)) "
                           "with R = rounding (RNE) to nested_dtype; nested_dtype is 'float32' except in checkpoints saved "
                           "after a bnb CPU forward on AVX512-BF16 machines ('bfloat16', case nf4_dq_cpu_resaved).",
    "quantize_side_for_reference": "absmax = max|w| per block (float32 of the source); nested: offset = mean(absmax) "
                                   "(float32), codes = quantize_blockwise(absmax - offset, dynamic map, blocksize 256). "
                                   "4-bit code = nearest quant_map value of w/absmax.",
    "dequant_int8": "load_in_8bit (LLM.int8): weight is I8[out, in] (row-major, weight_format 0 = 'row'), "
                    "SCB is F32[out] = per-row absmax of the float16-cast weight. "
                    "bnb: w = f32( f32(q * SCB[row]) * f32(7.874015718698502e-3) )  (multiply by the float32 "
                    "constant 1/127, not a division). f32(q*SCB/127) differs in the last bit for some elements "
                    "(see checks).",
}


SKIP_NOTES = {
    "transformers_default": "llm_int8_skip_modules=None -> transformers skips get_keys_to_not_convert(model): the output "
                            "embedding (lm_head), the module of the last parameter (lm_head again) and tied weights. For "
                            "LlavaForConditionalGeneration that is only lm_head: every nn.Linear of the text model, the "
                            "Pixtral vision tower (attention q/k/v/o, feed_forward gate/up/down) and the projector "
                            "(linear_1/linear_2, biases kept dense) is quantized. Never quantized: embed_tokens, norms, "
                            "vision patch_conv (Conv2d), ln_pre, biases.",
    "explicit_list": "if llm_int8_skip_modules is a list, transformers uses exactly that list (plus _keep_in_fp32_modules, "
                     "none for llava) and does NOT add lm_head; names match by module-name component/suffix.",
    "third_party_repos": "the quantization_config of unsloth/Pixtral-12B-2409-bnb-4bit and SeanScripts/pixtral-12b-nf4 "
                         "could not be read from here (no hub access); they may list vision_tower / multi_modal_projector / "
                         "lm_head in llm_int8_skip_modules. A loader should decide per linear from the tensors present "
                         "(<p>.weight.quant_state.bitsandbytes__* for 4-bit, <p>.SCB for 8-bit), not from the list.",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    default_fixture = "/work/shared/fixtures/tiny-pixtral"
    ap.add_argument("--fixture", default=default_fixture, help="tiny-pixtral fixture folder (with hf/ and golden/)")
    ap.add_argument("--skip-model", action="store_true", help="only write cases.safetensors + manifest.json")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    torch.manual_seed(SEED)

    cases, cases_path = build_cases(args.out_dir)
    manifest = {
        "what": "bitsandbytes checkpoint serialization (quant_method 'bitsandbytes') and golden dequantized values",
        "generator": "gen_bnb_goldens.py",
        "versions": {"bitsandbytes": bnb.__version__, "torch": torch.__version__},
        "cases_file": {"file": "cases.safetensors", "sha256": sha256(cases_path),
                       "naming": "<case>.<suffix exactly as saved by the quantized linear>, plus <case>.original, "
                                 "<case>.expected (F32, bnb dequant), <case>.expected_native (4-bit: bnb dequant in the "
                                 "JSON dtype)"},
        "serialization_4bit": {
            "per_linear_tensors_plain": {
                "<prefix>.weight": "U8 [ceil(numel/2), 1] packed codes (dtype = quant_storage)",
                "<prefix>.weight.absmax": "F32 [n_blocks]",
                "<prefix>.weight.quant_map": "F32 [16] code table (nf4 or fp4)",
                "<prefix>.weight.quant_state.bitsandbytes__<nf4|fp4>": "U8 [len] UTF-8 JSON (json.dumps, ', ' and ': ' separators)",
            },
            "per_linear_tensors_double_quant": {
                "<prefix>.weight": "U8 [ceil(numel/2), 1]",
                "<prefix>.weight.absmax": "U8 [n_blocks] 8-bit codes of absmax - offset",
                "<prefix>.weight.nested_absmax": "F32 [ceil(n_blocks/256)]",
                "<prefix>.weight.nested_quant_map": "F32 [256] dynamic map",
                "<prefix>.weight.quant_map": "F32 [16]",
                "<prefix>.weight.quant_state.bitsandbytes__<nf4|fp4>": "U8 [len] UTF-8 JSON",
            },
            "bias": "<prefix>.bias is saved unquantized in the model dtype",
            "json_keys_plain": ["quant_type", "blocksize", "dtype", "shape"],
            "json_keys_double_quant": ["quant_type", "blocksize", "dtype", "shape", "nested_blocksize",
                                       "nested_dtype", "nested_offset"],
            "json_notes": "dtype is the torch dtype name of the source/compute weight ('bfloat16', 'float16', 'float32'); "
                          "shape is [out_features, in_features]; nested_dtype is 'float32'; nested_offset is a JSON number "
                          "(the float32 mean of absmax printed as a Python float). The U8 tensor length varies with the "
                          "digits of nested_offset (e.g. 169 or 170).",
            "detect": "a linear is 4-bit quantized iff <prefix>.weight.quant_state.bitsandbytes__nf4 (or __fp4) exists; "
                      "do not rely on llm_int8_skip_modules",
        },
        "serialization_8bit": {
            "<prefix>.weight": "I8 [out, in]",
            "<prefix>.SCB": "F32 [out]  (note: no 'weight.' in the name)",
            "<prefix>.weight_format": "U8 scalar (shape []), 0 = 'row' (the only supported layout)",
            "bias": "<prefix>.bias unquantized",
        },
        "skipped_modules": SKIP_NOTES,
        "formulas": FORMULAS,
        "code_tables": code_tables(),
        "cases": cases,
    }
    if not args.skip_model:
        manifest["tiny_model"] = build_model(args.out_dir, args.fixture)
    with open(os.path.join(args.out_dir, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
    print("wrote", args.out_dir)


if __name__ == "__main__":
    main()
