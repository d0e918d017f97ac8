#!/usr/bin/env python3
"""Generate golden vectors for decoding `compressed-tensors` checkpoints.

`compressed-tensors` is the checkpoint format that Neural Magic's / Red Hat's
llm-compressor writes (quantization_config.quant_method == "compressed-tensors";
e.g. neuralmagic/pixtral-12b-FP8-dynamic, neuralmagic/pixtral-12b-quantized.w8a8,
nintwentydo/pixtral-12b-2409-W4A16-G128).

For every case below a random bf16 weight W[out, in] is quantized the way
llm-compressor does it (min/max observer -> compressed_tensors' own
`calculate_qparams`), then pushed through the REAL library path that produces
checkpoint tensors:

    apply_quantization_config(model, QuantizationConfig(...))   # registers weight_scale/zp
    <write calibrated scale / zero point into the module>
    ModelCompressor.from_pretrained_model(model).compress_model(model)
    module state dict                                            # == what save_pretrained writes

Outputs (in OUT_DIR):
  cases.safetensors  "<case>.<param>" for every tensor the compressor wrote
                     (weight | weight_packed, weight_scale, weight_zero_point,
                     weight_shape, weight_g_idx, input_scale), plus
                       <case>.expected  f32: codes decoded BY THE LIBRARY
                                        (stored fp8/int8 tensor, or unpack_from_int32),
                                        minus zero point, times scale, all in float64,
                                        cast once to float32
                       <case>.library   the library's own decompress() output, stored in
                                        its native dtype (= scale dtype, bf16); widening
                                        it to f32 is exact
  manifest.json      schemes, formats, tensor dtypes/shapes, verified dequant formulas,
                     bit layouts, and example `quantization_config` blocks produced by the
                     library's own serialization (ModelCompressor.update_config).

Usage:  python3 gen_compressed_goldens.py OUT_DIR
Needs:  torch, safetensors, compressed-tensors (written against 0.20.1), transformers
        (imported by compressed_tensors' ModelCompressor). CPU only, deterministic.
"""

import json
import math
import os
import sys
import tempfile

import torch
from safetensors.torch import save_file
from torch import nn

import compressed_tensors
from compressed_tensors.compressors import BaseCompressor, ModelCompressor
from compressed_tensors.compressors.pack_quantized.helpers import (
    pack_to_int32,
    unpack_from_int32,
)
from compressed_tensors.quantization import (
    QuantizationArgs,
    QuantizationConfig,
    QuantizationScheme,
    QuantizationStatus,
    apply_quantization_config,
    preset_name_to_scheme,
)
from compressed_tensors.quantization.lifecycle.forward import dequantize, quantize
from compressed_tensors.quantization.utils import calculate_qparams
from compressed_tensors.utils import get_direct_state_dict

SEED = 20240917
WEIGHT_DTYPE = torch.bfloat16  # Pixtral checkpoints are bf16; scales inherit this dtype


# --------------------------------------------------------------------------------------
# Schemes (same QuantizationArgs as the library presets, plus variants)
# --------------------------------------------------------------------------------------

# Activation args used by the presets. Only the *weights* matter for decoding, but the
# activation args decide which compression format the library picks (float-quantized /
# int-quantized need input_activations; weight-only int -> pack-quantized).
A_FP8_DYNAMIC_TOKEN = dict(num_bits=8, type="float", strategy="token", symmetric=True, dynamic=True)
A_FP8_STATIC_TENSOR = dict(num_bits=8, type="float", strategy="tensor", symmetric=True,
                           dynamic=False, observer="static_minmax")
A_FP8_DYNAMIC_GROUP128 = dict(num_bits=8, type="float", strategy="group", group_size=128,
                              symmetric=True, dynamic=True)
A_INT8_DYNAMIC_TOKEN = dict(num_bits=8, type="int", strategy="token", symmetric=True, dynamic=True)


def scheme(weights: dict, inputs: dict | None = None) -> QuantizationScheme:
    return QuantizationScheme(
        targets=["Linear"],
        weights=QuantizationArgs(**weights),
        input_activations=QuantizationArgs(**inputs) if inputs else None,
    )


# name, out, in, scheme, extra options
#   actorder_group: emulate GPTQ actorder="group" (weight_g_idx); see build_actorder_case
#   asym_offsets  : add per-row offsets so min/max are asymmetric (non-trivial zero points)
#   zero_row      : make one row exactly zero (exercises the eps-scale path)
#   tiny_values   : -0.0 / +-1e-9 entries (fp8 signed zero, code 0x80)
CASES = [
    ("fp8_channel", 16, 256,  # == preset FP8_DYNAMIC
     scheme(dict(num_bits=8, type="float", strategy="channel", symmetric=True, dynamic=False),
            A_FP8_DYNAMIC_TOKEN), dict(zero_row=7, tiny_values=True)),
    ("fp8_tensor", 16, 256,  # == preset FP8 (static weights + static per-tensor activations)
     scheme(dict(num_bits=8, type="float", strategy="tensor", symmetric=True, dynamic=False),
            A_FP8_STATIC_TENSOR), dict(tiny_values=True)),
    ("fp8_block", 256, 128,  # == preset FP8_BLOCK (2 x 1 blocks)
     scheme(dict(num_bits=8, type="float", strategy="block", block_structure=[128, 128],
                 symmetric=True, dynamic=False), A_FP8_DYNAMIC_GROUP128), {}),
    ("fp8_block_ragged", 136, 160,  # FP8_BLOCK, non-multiple shape: 2 x 2 partial blocks
     scheme(dict(num_bits=8, type="float", strategy="block", block_structure=[128, 128],
                 symmetric=True, dynamic=False), A_FP8_DYNAMIC_GROUP128), {}),
    ("int8_channel", 16, 256,  # == preset W8A8 / INT8
     scheme(dict(num_bits=8, type="int", strategy="channel", symmetric=True, dynamic=False),
            A_INT8_DYNAMIC_TOKEN), {}),
    ("w4_g128", 16, 256,  # == preset W4A16
     scheme(dict(num_bits=4, type="int", strategy="group", group_size=128, symmetric=True,
                 dynamic=False)), {}),
    ("w4_g32", 16, 256,
     scheme(dict(num_bits=4, type="int", strategy="group", group_size=32, symmetric=True,
                 dynamic=False)), {}),
    ("w4_channel", 16, 260,  # in % 8 != 0: last int32 word half used
     scheme(dict(num_bits=4, type="int", strategy="channel", symmetric=True, dynamic=False)), {}),
    ("w4_asym_g32", 20, 256,  # like W4A16_ASYM, group 32; out % 8 != 0 -> partial zp word
     scheme(dict(num_bits=4, type="int", strategy="group", group_size=32, symmetric=False,
                 dynamic=False)), dict(asym_offsets=True, zero_row=3)),
    ("w8_g128", 16, 256,  # == preset W8A16 (8-bit, still pack-quantized into int32)
     scheme(dict(num_bits=8, type="int", strategy="group", group_size=128, symmetric=True,
                 dynamic=False)), {}),
    ("w4_actorder_g32", 16, 256,  # GPTQ actorder="group" -> weight_g_idx
     scheme(dict(num_bits=4, type="int", strategy="group", group_size=32, symmetric=True,
                 dynamic=False)), dict(actorder_group=True)),
    ("int8_asym_channel", 16, 256,  # W8A8 with asymmetric weights (zero point kept as int8)
     scheme(dict(num_bits=8, type="int", strategy="channel", symmetric=False, dynamic=False),
            A_INT8_DYNAMIC_TOKEN), dict(asym_offsets=True)),
]


# --------------------------------------------------------------------------------------
# Deterministic data
# --------------------------------------------------------------------------------------

def make_weight(out_f: int, in_f: int, case_idx: int, opts: dict) -> torch.Tensor:
    """N(0, 0.02) with ~0.5% outliers (x4..x10), optional per-row offsets / zero row."""
    g = torch.Generator().manual_seed(SEED + 1000 * case_idx)
    w = torch.randn(out_f, in_f, generator=g, dtype=torch.float32) * 0.02
    outlier = torch.rand(out_f, in_f, generator=g) < 0.005
    factor = 4.0 + 6.0 * torch.rand(out_f, in_f, generator=g)
    w = torch.where(outlier, w * factor, w)
    if opts.get("asym_offsets"):
        w = w + (torch.rand(out_f, 1, generator=g) - 0.5) * 0.06
    if "zero_row" in opts:
        w[opts["zero_row"]] = 0.0
    if opts.get("tiny_values"):
        # signed-zero / underflow edge cases. During compression the module still holds
        # an all-zero (forced) zero point that quantize() adds, so -0.0 becomes +0.0
        # (code 0x00) while -1e-9 survives as fp8 -0.0 (code 0x80), which a decoder
        # must turn into -0.0
        w[0, :4] = torch.tensor([-0.0, -1e-9, 1e-9, 0.0])
    return w.to(WEIGHT_DTYPE)


def make_activation(in_f: int, case_idx: int) -> torch.Tensor:
    """Calibration activations, only used for the static FP8 `input_scale`."""
    g = torch.Generator().manual_seed(SEED + 1000 * case_idx + 1)
    return torch.randn(16, in_f, generator=g).to(WEIGHT_DTYPE)


# --------------------------------------------------------------------------------------
# Observer: min/max per strategy, like llm-compressor's (memoryless) min-max observer,
# then compressed_tensors.quantization.utils.calculate_qparams (the library's math).
# --------------------------------------------------------------------------------------

def observe_minmax(x: torch.Tensor, args: QuantizationArgs):
    s = args.strategy
    if s == "tensor":
        return x.amin().reshape(1), x.amax().reshape(1)
    if s == "channel":
        return x.amin(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)
    if s == "group":
        gs = args.group_size
        xg = x.unflatten(-1, (x.shape[-1] // gs, gs))
        return xg.amin(dim=-1), xg.amax(dim=-1)
    if s == "block":
        bh, bw = args.block_structure
        rows, cols = x.shape
        pr, pc = (-rows) % bh, (-cols) % bw
        # the library zero-pads ragged weights before block quantization; zeros do not
        # change the result because calculate_qparams forces min <= 0 <= max anyway
        xp = torch.nn.functional.pad(x, (0, pc, 0, pr))
        xb = xp.reshape(xp.shape[0] // bh, bh, xp.shape[1] // bw, bw).transpose(1, 2)
        return xb.amin(dim=(-1, -2)), xb.amax(dim=(-1, -2))
    raise ValueError(s)


def qparams(x: torch.Tensor, args: QuantizationArgs):
    mn, mx = observe_minmax(x, args)
    return calculate_qparams(mn, mx, args)


# --------------------------------------------------------------------------------------
# Library round trip
# --------------------------------------------------------------------------------------

class OneLinear(nn.Module):
    def __init__(self, out_f, in_f):
        super().__init__()
        self.proj = nn.Linear(in_f, out_f, bias=False, dtype=WEIGHT_DTYPE)


def compress_with_library(w: torch.Tensor, sch: QuantizationScheme, act: torch.Tensor):
    """Returns (compressed local state dict, format string, scheme attached to module)."""
    model = OneLinear(*w.shape)
    model.proj.weight.data.copy_(w)
    cfg = QuantizationConfig(config_groups={"group_0": sch})
    apply_quantization_config(model, cfg, show_progress=False)
    m = model.proj
    wargs = m.quantization_scheme.weights

    # calibrate (what llm-compressor's QuantizationModifier does for the weights)
    scale, zp = qparams(m.weight.data, wargs)
    assert m.weight_scale.shape == scale.shape, (m.weight_scale.shape, scale.shape)
    m.weight_scale.data.copy_(scale)  # keeps the registered dtype (== weight dtype, bf16)
    if hasattr(m, "weight_zero_point"):
        assert m.weight_zero_point.shape == zp.shape
        m.weight_zero_point.data.copy_(zp)
    if hasattr(m, "input_scale"):  # static activation quant (FP8 preset)
        iscale, _ = qparams(act, m.quantization_scheme.input_activations)
        m.input_scale.data.copy_(iscale.reshape(m.input_scale.shape))
    m.quantization_status = QuantizationStatus.FROZEN

    mc = ModelCompressor.from_pretrained_model(model)
    mc.compress_model(model)
    sd = {k: v.detach().clone() for k, v in get_direct_state_dict(m).items()
          if v is not None}  # (bias=None shows up as a None entry)
    return sd, m.quantization_scheme.format, m.quantization_scheme, mc.quantization_config.format


def decompress_with_library(sd: dict, fmt: str, sch: QuantizationScheme) -> torch.Tensor:
    comp = BaseCompressor.get_value_from_registry(fmt)
    return comp.decompress(dict(sd), sch)["weight"]


def build_actorder_case(w: torch.Tensor, sch: QuantizationScheme, case_idx: int):
    """GPTQ with actorder="group" (compressed-tensors <= 0.18 / llm-compressor GPTQ).

    compressed-tensors >= 0.19 REMOVED ActivationOrdering.GROUP (QuantizationArgs rejects
    actorder="group"), so this reproduces what the old stack did, using the current
    library's quantize/dequantize/pack primitives:
      * GPTQ permutes the columns by activation order: perm = argsort(diag(H), desc)
      * per-group qparams are computed on the *permuted* weight, groups of `group_size`
        consecutive permuted columns
      * g_idx = [i // group_size for i in range(in)][invperm]  (int32), i.e.
        g_idx[perm[k]] = k // group_size  ->  column j belongs to group g_idx[j]
      * weight_packed holds the codes in ORIGINAL column order, packed exactly as
        without actorder; scale/zero point are [out, in/group_size] indexed by group.
    Old compressors (quantize(g_idx=...), <= 0.18) did: perm=argsort(g_idx), quantize
    the permuted weight group-wise, un-permute, pack. Verified byte-identical with
    compressed-tensors 0.12.2 and 0.18.0 (crosscheck_old_versions.py).
    """
    args = sch.weights
    assert args.symmetric, "only the symmetric actorder case is modelled here"
    gs = args.group_size
    out_f, in_f = w.shape
    g = torch.Generator().manual_seed(SEED + 1000 * case_idx + 2)
    hdiag = torch.rand(in_f, generator=g)          # stand-in for diag(H) of GPTQ
    perm = torch.argsort(hdiag, descending=True)
    invperm = torch.argsort(perm)
    g_idx = (torch.arange(in_f, dtype=torch.int32) // gs)[invperm].contiguous()

    w_perm = w[:, perm]
    scale, zp = qparams(w_perm, args)
    scale = scale.to(WEIGHT_DTYPE)
    q_perm = quantize(x=w_perm, scale=scale, zero_point=None, args=args, dtype=torch.int8)
    q = q_perm[:, invperm].contiguous()
    sd = {
        "weight_packed": pack_to_int32(q, args.num_bits),
        "weight_scale": scale,
        "weight_shape": torch.tensor(w.shape),  # what the compressor writes (int64)
        "weight_g_idx": g_idx,
    }
    # library-style dequantization: old library permuted by argsort(g_idx), dequantized
    # group-wise in bf16, then un-permuted. Equivalent with the current primitives:
    sort_idx = torch.argsort(g_idx, stable=True)
    unpacked = unpack_from_int32(sd["weight_packed"], args.num_bits, w.shape)
    lib = dequantize(x_q=unpacked[:, sort_idx], scale=scale, zero_point=None, args=args)
    lib = lib[:, torch.argsort(sort_idx)]
    return sd, lib


# --------------------------------------------------------------------------------------
# Independent float64 reference: codes (decoded by the library) - zp, times scale
# --------------------------------------------------------------------------------------

def codes_and_zp(sd: dict, args: QuantizationArgs, fmt: str, shape):
    """Integer / fp8 codes as float64 [out,in] and zero point expanded per scale entry."""
    if fmt == "pack-quantized":
        codes = unpack_from_int32(sd["weight_packed"], args.num_bits, shape).to(torch.float64)
    else:
        codes = sd["weight"].to(torch.float64)  # fp8 e4m3fn or int8, converted exactly
    scale = sd["weight_scale"]
    zp = sd.get("weight_zero_point")
    if zp is None:
        zp = torch.zeros(scale.shape, dtype=torch.float64)
    elif fmt == "pack-quantized" and zp.dtype == torch.int32:
        # packed along dim 0 (output rows): shape [ceil(out*bits/32), n_groups]
        zp = unpack_from_int32(zp, args.num_bits, (shape[0], scale.shape[-1]), packed_dim=0)
    return codes, zp.to(torch.float64), scale.to(torch.float64)


def expand_to_weight(p: torch.Tensor, args: QuantizationArgs, shape, g_idx=None):
    """Broadcast a per-tensor/channel/group/block parameter to the full [out,in] grid."""
    out_f, in_f = shape
    s = args.strategy
    if s == "tensor":
        return p.reshape(1, 1).expand(out_f, in_f)
    if s == "channel":
        return p.reshape(out_f, 1).expand(out_f, in_f)
    if s == "group":
        col_group = (g_idx.long() if g_idx is not None
                     else torch.arange(in_f) // args.group_size)
        return p[:, col_group]
    if s == "block":
        bh, bw = args.block_structure
        return p[torch.arange(out_f) // bh][:, torch.arange(in_f) // bw]
    raise ValueError(s)


def reference_dequant(sd, args, fmt, shape):
    codes, zp, scale = codes_and_zp(sd, args, fmt, shape)
    g_idx = sd.get("weight_g_idx")
    w64 = (codes - expand_to_weight(zp, args, shape, g_idx)) * expand_to_weight(
        scale, args, shape, g_idx)
    return w64.to(torch.float32)


# --------------------------------------------------------------------------------------
# Manifest text
# --------------------------------------------------------------------------------------

def dtype_name(t: torch.Tensor) -> str:
    return {
        torch.float8_e4m3fn: "F8_E4M3", torch.bfloat16: "BF16", torch.float16: "F16",
        torch.float32: "F32", torch.float64: "F64", torch.int8: "I8", torch.int32: "I32",
        torch.int64: "I64", torch.uint8: "U8",
    }[t.dtype]


def formula_for(args: QuantizationArgs, fmt: str, has_zp: bool, has_gidx: bool) -> str:
    s = args.strategy
    idx = {
        "tensor": "scale[0]",
        "channel": "scale[r, 0]",
        "group": ("scale[r, g_idx[c]]" if has_gidx else f"scale[r, c // {args.group_size}]"),
        "block": (f"scale[r // {args.block_structure[0]}, c // {args.block_structure[1]}]"
                  if s == "block" else ""),
    }[s]
    zidx = idx.replace("scale", "zp")
    if fmt == "pack-quantized":
        code = (f"q[r, c] = ((weight_packed[r, c // {32 // args.num_bits}] >> "
                f"({args.num_bits} * (c % {32 // args.num_bits}))) & {(1 << args.num_bits) - 1})"
                f" - {1 << (args.num_bits - 1)}")
    elif args.type == "float":
        code = "q[r, c] = float(fp8_e4m3fn(weight[r, c]))"
    else:
        code = "q[r, c] = int8(weight[r, c])"
    z = f" - {zidx}" if has_zp else ""
    return f"{code};  W[r, c] = (q[r, c]{z}) * float({idx})"


CONVENTIONS = {
    "expected": ("<case>.expected = float32( (codes - zero_point) * scale ) computed in "
                 "float64, codes decoded by the library (stored fp8/int8 tensor or "
                 "unpack_from_int32). For every case here the product is EXACT in float32 "
                 "(|q - zp| <= 255 has <= 8 significant bits, fp8 codes have 4, bf16 "
                 "scales have 8), so a float32 decoder computing float(q - zp) * "
                 "float(scale) reproduces it bit for bit (including -0.0 from fp8 code 0x80)."),
    "library": ("<case>.library = library decompress() output, stored as BF16 (its native "
                "dtype; widening to float32 is exact). The library "
                "dequantizes in the SCALE dtype (bf16): codes.to(bf16) - zp.to(bf16), then "
                "* scale in bf16, so library == bf16_round_nearest_even(expected) "
                "(verified per case: checks.library_equals_bf16_of_expected)."),
    "scale_dtype": ("weight_scale (and input_scale) are created with the dtype of the "
                    "module weight (bf16 for Pixtral), NOT float32 (initialize_qparams: "
                    "scale_dtype = observed weight dtype if it is f16/bf16/f32/f64)."),
    "zero_point": ("Symmetric schemes: no weight_zero_point tensor is written "
                   "(_remove_symmetric_zp; compressed-tensors 0.7.x also dropped all-zero "
                   "zero points). Asymmetric: int8 for naive/int/float-quantized; for "
                   "pack-quantized (group/channel) it is packed into int32 along dim 0 "
                   "(output rows) with the same bit layout as weights: stored shape "
                   "[ceil(out*bits/32), n_groups], element (r, g) in word [r // (32/bits), g] "
                   "at bits bits*(r % (32/bits)), stored as zp + 2^(bits-1). NOTE: "
                   "compressed-tensors <= 0.9.3 (incl. the late-2024 releases) did NOT pack "
                   "the zero point for pack-quantized; it stored it as int8 [out, n_groups]. "
                   "A loader should accept both (dtype I32 => packed, I8 => raw). An "
                   "all-zero group gives scale = eps and zp = 0 (NaN cast to int8)."),
    "pack_layout": ("pack-quantized (num_bits in {4, 8}): weight_packed is int32 "
                    "[out, ceil(in*bits/32)] (little-endian int32 words). Element c of row "
                    "r lives in word c // (32/bits) at bit offset bits*(c % (32/bits)) "
                    "(element 0 in the least significant bits), stored unsigned with offset "
                    "2^(bits-1): q = ((word >> off) & (2^bits - 1)) - 2^(bits-1). Signed "
                    "range for 4 bit: [-8, 7] (-8 IS produced by symmetric quantization since "
                    "scale = absmax / 7.5). Last word zero padded if in*bits % 32 != 0. The "
                    "0.20.1 'dense cross-element' packer coincides with the older per-word "
                    "packer for 4 and 8 bits (verified back to 0.7.1)."),
    "fp8": ("float-quantized weights are float8_e4m3fn (safetensors F8_E4M3): sign bit 7, "
            "exponent bits 6..3 (bias 7), mantissa bits 2..0; exp == 0 -> subnormal "
            "(m/8) * 2^-6; 0x7F / 0xFF are NaN (never produced: codes clamp to +-448 = "
            "0x7E / 0xFE); no infinities. Code 0x80 (-0.0) does occur."),
    "weight_shape": ("weight_shape = torch.tensor(weight.shape) -> int64 [2] = [out, in] "
                     "(older compression_param_info advertised int32, but the tensor written "
                     "is int64)."),
    "symmetric_scale": ("symmetric: scale = max(|min|, |max|) / ((qmax - qmin) / 2) with "
                        "min <= 0 <= max forced; int8 -> absmax/127.5, int4 -> absmax/7.5, "
                        "fp8 -> absmax/448. Codes clamp to [qmin, qmax]. Asymmetric: scale = "
                        "(max - min)/(qmax - qmin), zp = round(clamp(qmin - min/scale)). A "
                        "zero scale is replaced by eps of the scale dtype (bf16: 2^-7)."),
    "g_idx": ("weight_g_idx (int32 [in]) maps each input column to its group: "
              "W[r, c] = (q[r, c] - zp[r, g_idx[c]]) * scale[r, g_idx[c]]; q is stored in "
              "original column order. Only produced by actorder='group' (GPTQ) with "
              "compressed-tensors <= 0.18; an all -1 g_idx means 'not used' and was not "
              "saved. compressed-tensors >= 0.19 can no longer create or load it "
              "(QuantizationArgs rejects actorder='group'/'dynamic'/True)."),
    "history": ("Verified with crosscheck_old_versions.py: compressed-tensors 0.7.1, 0.9.0, "
                "0.9.4, 0.12.2 and 0.18.0 write byte-identical weight / weight_packed / "
                "weight_shape (int64) / weight_g_idx for the same weight + qparams, and "
                "their decompress output equals <case>.library wherever they can decompress. "
                "Differences: asymmetric pack-quantized zero points are int8 [out, n_groups] "
                "(unpacked) up to 0.9.3 and int32 packed along dim 0 from 0.9.4 on; "
                "list-style block_structure / BLOCK strategy from 0.11 (0.12.2 required "
                "exact multiples of the block size, 0.20.1 zero-pads ragged weights); "
                "actorder='group' / weight_g_idx exists up to 0.18.x and was removed in "
                "0.19.0. "
                "Config JSON from <=0.12 lists every QuantizationArgs field (\"actorder\": null, "
                "\"block_structure\": null, \"observer\": \"minmax\", \"observer_kwargs\": {}); "
                "0.20.1 omits the None ones and writes observer only when explicitly set."),
    "block": ("block [bh, bw]: weight_scale shape [ceil(out/bh), ceil(in/bw)]; ragged "
              "weights are zero-padded for quantization, the stored fp8 weight has the "
              "original shape; W[r, c] uses scale[r // bh, c // bw]."),
}


# What public Hugging Face pages show (collected by hand, not produced by this script).
REAL_CHECKPOINT_FACTS = {
    "neuralmagic/pixtral-12b-FP8-dynamic": (
        "recipe.yaml: QuantizationModifier targets Linear, scheme FP8_DYNAMIC, ignore "
        "['re:.*lm_head', 're:multi_modal_projector.*', 're:vision_tower.*']. config.json "
        "(refs/pr/1): format 'float-quantized', weights {num_bits 8, type float, strategy "
        "channel, symmetric, dynamic false, observer 'minmax', actorder null, "
        "block_structure null}, input_activations {strategy token, dynamic true, observer "
        "'memoryless'}, global_compression_ratio 1.1688..., ignore = explicit module names "
        "(vision_tower.transformer.layers.N.{feed_forward,attention}.*, ...). "
        "transformers 4.45 LlavaForConditionalGeneration naming."),
    "nm-testing/pixtral-12b-W8A8": (
        "config.json: format 'int-quantized', weights int8 channel symmetric observer "
        "'minmax', input_activations int8 token dynamic."),
    "nm-testing/pixtral-12b-w4a16-actorder-weight": (
        "config.json: format 'pack-quantized', weights {num_bits 4, group 128, strategy "
        "group, symmetric, actorder 'weight'} -> no weight_g_idx (actorder 'weight' only "
        "changes calibration order)."),
    "nintwentydo/pixtral-12b-2409-W4A16-G128": (
        "model card: made with llm-compressor (kylesayrs/gptq-partition branch), "
        "vision_tower not quantized; safetensors tensor types I64, I32, BF16 "
        "(= weight_shape, weight_packed, bf16 scales + unquantized weights)."),
}


# --------------------------------------------------------------------------------------
# quantization_config examples, produced by the library's own serialization
# --------------------------------------------------------------------------------------

class _Attn(nn.Module):
    def __init__(self, d, names):
        super().__init__()
        for n in names:
            setattr(self, n, nn.Linear(d, d, bias=False, dtype=WEIGHT_DTYPE))


class _Layer(nn.Module):
    def __init__(self, d, attn_name, mlp_name, attn_proj, mlp_proj):
        super().__init__()
        setattr(self, attn_name, _Attn(d, attn_proj))
        setattr(self, mlp_name, _Attn(d, mlp_proj))


class _Stack(nn.Module):
    def __init__(self, n, **kw):
        super().__init__()
        self.layers = nn.ModuleList([_Layer(**kw) for _ in range(n)])


class TinyPixtral(nn.Module):
    """Module tree with the LlavaForConditionalGeneration (transformers 4.45) names
    used by the Pixtral-12B HF checkpoints; 2 layers per tower, d=256."""

    def __init__(self, d=256, n=2):
        super().__init__()
        lm = nn.Module()
        lm.model = _Stack(n, d=d, attn_name="self_attn", mlp_name="mlp",
                          attn_proj=["q_proj", "k_proj", "v_proj", "o_proj"],
                          mlp_proj=["gate_proj", "up_proj", "down_proj"])
        lm.lm_head = nn.Linear(d, d, bias=False, dtype=WEIGHT_DTYPE)
        self.language_model = lm
        vt = nn.Module()
        vt.transformer = _Stack(n, d=d, attn_name="attention", mlp_name="feed_forward",
                                attn_proj=["q_proj", "k_proj", "v_proj", "o_proj"],
                                mlp_proj=["gate_proj", "up_proj", "down_proj"])
        self.vision_tower = vt
        mmp = nn.Module()
        mmp.linear_1 = nn.Linear(d, d, bias=True, dtype=WEIGHT_DTYPE)
        mmp.linear_2 = nn.Linear(d, d, bias=True, dtype=WEIGHT_DTYPE)
        self.multi_modal_projector = mmp


def example_quantization_config(preset: str) -> dict:
    """Mimic llm-compressor's oneshot(QuantizationModifier(targets="Linear", scheme=preset,
    ignore=[...])) + save_pretrained: apply config, calibrate weights, compress, and let
    ModelCompressor.update_config write config.json."""
    torch.manual_seed(SEED)
    model = TinyPixtral()
    ignore = ["re:.*lm_head", "re:multi_modal_projector.*", "re:vision_tower.*"]
    cfg = QuantizationConfig(config_groups={"group_0": preset_name_to_scheme(preset, ["Linear"])},
                             ignore=ignore)
    apply_quantization_config(model, cfg, show_progress=False)
    for _, m in model.named_modules():
        if getattr(m, "quantization_scheme", None) is not None:
            s, z = qparams(m.weight.data, m.quantization_scheme.weights)
            m.weight_scale.data.copy_(s)
            if hasattr(m, "weight_zero_point"):
                m.weight_zero_point.data.copy_(z)
            m.quantization_status = QuantizationStatus.FROZEN
    mc = ModelCompressor.from_pretrained_model(model)
    mc.compress_model(model)
    keys = sorted(k for k in model.state_dict().keys() if k.startswith("language_model.model.layers.0.self_attn.q_proj"))
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"architectures": ["LlavaForConditionalGeneration"]}, f)
        mc.update_config(d)
        with open(os.path.join(d, "config.json")) as f:
            qc = json.load(f)["quantization_config"]
    return {"recipe_ignore": ignore, "scheme": preset,
            "q_proj_checkpoint_keys": keys, "quantization_config": qc}


# --------------------------------------------------------------------------------------

def main(out_dir: str):
    torch.manual_seed(SEED)
    os.makedirs(out_dir, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    manifest = {
        "generator": "gen_compressed_goldens.py",
        "compressed_tensors_version": compressed_tensors.__version__,
        "torch_version": torch.__version__,
        "seed": SEED,
        "weight_dtype": "BF16",
        "conventions": CONVENTIONS,
        "cases": {},
    }

    for idx, (name, out_f, in_f, sch, opts) in enumerate(CASES):
        w = make_weight(out_f, in_f, idx, opts)
        act = make_activation(in_f, idx)
        shape = (out_f, in_f)
        if opts.get("actorder_group"):
            sd, lib = build_actorder_case(w, sch, idx)
            fmt = "pack-quantized"
            cfg_fmt = fmt
            args = sch.weights
            note = ("actorder='group' emulated (removed in compressed-tensors 0.19); "
                    "checkpoint JSON for such models has \"actorder\": \"group\" in the "
                    "weights args. Cross-checked against compressed-tensors 0.12.2 and 0.18.0.")
        else:
            sd, fmt, attached, cfg_fmt = compress_with_library(w, sch, act)
            fmt = fmt.value if hasattr(fmt, "value") else str(fmt)
            args = attached.weights
            lib = decompress_with_library(sd, fmt, attached)
            note = None

        exp = reference_dequant(sd, args, fmt, shape)
        lib32 = lib.to(torch.float32)

        # relation checks
        assert lib.dtype == sd["weight_scale"].dtype, (lib.dtype, sd["weight_scale"].dtype)
        lib_eq_bf16 = torch.equal(exp.to(torch.bfloat16).to(torch.float32), lib32)
        exact_in_f32 = torch.equal(exp.to(torch.float64),
                                   reference_dequant_f64(sd, args, fmt, shape))
        assert lib_eq_bf16, name
        assert exact_in_f32, name
        err = (exp - w.float()).abs()

        for k, v in sd.items():
            tensors[f"{name}.{k}"] = v.contiguous()
        tensors[f"{name}.expected"] = exp.contiguous()
        # the library's output dtype is the scale dtype (bf16); storing it as bf16 is
        # lossless and keeps the file small (widen to f32 when comparing)
        tensors[f"{name}.library"] = lib.contiguous()

        wa = args.model_dump()
        entry = {
            "format": fmt,
            "format_in_config": str(getattr(cfg_fmt, "value", cfg_fmt)),
            "weight_shape": list(shape),
            "scheme": {
                "num_bits": args.num_bits,
                "type": str(args.type),
                "strategy": str(args.strategy),
                "group_size": args.group_size,
                "block_structure": args.block_structure,
                "symmetric": args.symmetric,
                "actorder": "group" if opts.get("actorder_group") else args.actorder,
                "dynamic": args.dynamic,
            },
            "weights_args_json": wa if not opts.get("actorder_group") else {**wa, "actorder": "group"},
            "input_activations_args_json": (sch.input_activations.model_dump()
                                            if sch.input_activations else None),
            "tensors": {
                k: {"key": f"{name}.{k}", "dtype": dtype_name(v), "shape": list(v.shape)}
                for k, v in list(sd.items())
                + [("expected", exp), ("library", lib)]
            },
            "dequant": formula_for(args, fmt, "weight_zero_point" in sd,
                                   "weight_g_idx" in sd),
            "checks": {
                "library_equals_bf16_of_expected": lib_eq_bf16,
                "expected_exact_in_f32": exact_in_f32,
                "max_abs_err_vs_original": float(err.max()),
                "mean_abs_err_vs_original": float(err.mean()),
            },
        }
        if "weight_zero_point" in sd and fmt == "pack-quantized":
            entry["zero_point_packing"] = (
                f"int32 [{math.ceil(out_f * args.num_bits / 32)}, n_groups]: packed along dim 0 "
                f"(rows); zp[r, g] = ((wzp[r // {32 // args.num_bits}, g] >> "
                f"({args.num_bits} * (r % {32 // args.num_bits}))) & "
                f"{(1 << args.num_bits) - 1}) - {1 << (args.num_bits - 1)}")
        if opts:
            entry["data_options"] = {k: v for k, v in opts.items() if k != "actorder_group"}
        if note:
            entry["note"] = note
        manifest["cases"][name] = entry

    manifest["observed_in_real_checkpoints"] = REAL_CHECKPOINT_FACTS
    manifest["quantization_config_examples"] = {
        "fp8_dynamic": example_quantization_config("FP8_DYNAMIC"),
        "w4a16_g128": example_quantization_config("W4A16"),
        "w8a8_int": example_quantization_config("W8A8"),
    }

    save_file(tensors, os.path.join(out_dir, "cases.safetensors"),
              # one metadata key only: safetensors serializes metadata from a hash map,
              # so several keys come out in random order and break byte-reproducibility
              metadata={"generator": f"gen_compressed_goldens.py compressed-tensors="
                                     f"{compressed_tensors.__version__} seed={SEED}"})
    os.chmod(os.path.join(out_dir, "cases.safetensors"), 0o644)  # save_file creates 0600
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, default=str)
        f.write("\n")
    print(f"wrote {len(tensors)} tensors for {len(manifest['cases'])} cases to {out_dir}")


def reference_dequant_f64(sd, args, fmt, shape):
    """Same as reference_dequant but without the final float32 cast (exactness check)."""
    codes, zp, scale = codes_and_zp(sd, args, fmt, shape)
    g_idx = sd.get("weight_g_idx")
    return (codes - expand_to_weight(zp, args, shape, g_idx)) * expand_to_weight(
        scale, args, shape, g_idx)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR")
    main(sys.argv[1])
