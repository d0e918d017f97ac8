#!/usr/bin/env python3
"""Cross-check the goldens against OLDER compressed-tensors releases.

Real Pixtral checkpoints were written in late 2024 (compressed-tensors ~0.6/0.7);
GPTQ actorder="group" (weight_g_idx) only exists up to ~0.12. This re-compresses the
same original weights + qparams with an old release and compares the tensors it writes
(and its decompressed output) with cases.safetensors.

  python3 crosscheck_old_versions.py GOLDEN_DIR OLD_SITE_DIR [OLD_SITE_DIR ...]

OLD_SITE_DIR is a `pip install --no-deps --target DIR compressed-tensors==X` tree.
Runs the old library in a subprocess (PYTHONPATH=OLD_SITE_DIR).
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file


def driver(golden_dir, old_dirs):
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    import gen_compressed_goldens as gen  # current library, regenerates originals

    gold = load_file(os.path.join(golden_dir, "cases.safetensors"))
    man = json.load(open(os.path.join(golden_dir, "manifest.json")))
    inputs, meta = {}, {}
    for idx, (name, out_f, in_f, sch, opts) in enumerate(gen.CASES):
        c = man["cases"][name]
        args = c["weights_args_json"]
        w = gen.make_weight(out_f, in_f, idx, opts)
        inputs[f"{name}.w"] = w
        inputs[f"{name}.scale"] = gold[f"{name}.weight_scale"]
        if f"{name}.weight_zero_point" in gold:
            zp = gold[f"{name}.weight_zero_point"]
            if zp.dtype == torch.int32:  # packed (pack-quantized) -> unpack for the old API
                from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
                zp = unpack_from_int32(zp, args["num_bits"], (out_f, gold[f"{name}.weight_scale"].shape[-1]), packed_dim=0)
            inputs[f"{name}.zp"] = zp
        if f"{name}.weight_g_idx" in gold:
            inputs[f"{name}.g_idx"] = gold[f"{name}.weight_g_idx"]
        meta[name] = {"format": c["format"], "args": args}

    report = {}
    with tempfile.TemporaryDirectory() as td:
        inp = os.path.join(td, "in.safetensors")
        save_file({k: v.contiguous() for k, v in inputs.items()}, inp)
        json.dump(meta, open(os.path.join(td, "meta.json"), "w"))
        for od in old_dirs:
            outp = os.path.join(td, "out.safetensors")
            env = dict(os.environ, PYTHONPATH=od)
            r = subprocess.run([sys.executable, __file__, "--old", td], env=env,
                               capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stderr[-3000:])
                raise SystemExit(f"old run failed for {od}")
            info = json.load(open(os.path.join(td, "old_info.json")))
            out = load_file(outp)
            ver = info["version"]
            rep = {}
            for name in meta:
                if name in info["skipped"]:
                    rep[name] = "skipped: " + info["skipped"][name]
                    continue
                res = {}
                for k, v in out.items():
                    if not k.startswith(name + ".") or k.endswith(".decompressed"):
                        continue
                    p = k[len(name) + 1:]
                    g = gold.get(f"{name}.{p}")
                    if g is None:
                        res[p] = f"only in old ({v.dtype}, {list(v.shape)})"
                    elif g.dtype != v.dtype or g.shape != v.shape:
                        res[p] = f"DIFFERENT dtype/shape old {v.dtype}{list(v.shape)} new {g.dtype}{list(g.shape)}"
                        if g.shape == v.shape:
                            res[p] += " values equal" if torch.equal(g.to(torch.float64), v.to(torch.float64)) else " values differ"
                    else:
                        same = torch.equal(g.view(torch.uint8) if g.dtype == torch.float8_e4m3fn else g,
                                           v.view(torch.uint8) if v.dtype == torch.float8_e4m3fn else v)
                        res[p] = "identical" if same else "VALUES DIFFER"
                for p in ("weight", "weight_packed", "weight_zero_point", "weight_shape", "weight_g_idx"):
                    if f"{name}.{p}" in gold and f"{name}.{p}" not in out and p != "weight_scale":
                        res[p] = "not written by old compressor"
                d = out.get(f"{name}.decompressed")
                if d is not None:
                    lib = gold[f"{name}.library"]
                    res["decompressed_vs_library"] = ("identical" if torch.equal(d.to(torch.float32), lib.to(torch.float32))
                                                      else f"max diff {float((d.float()-lib.float()).abs().max())}")
                elif name in info.get("decompress_errors", {}):
                    res["decompressed_vs_library"] = "old decompress failed: " + info["decompress_errors"][name]
                rep[name] = res
            report[ver] = rep
    print(json.dumps(report, indent=1))
    return report


def old_side(td):
    """Runs under PYTHONPATH=<old compressed-tensors>."""
    import compressed_tensors
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import QuantizationArgs

    ver = compressed_tensors.__version__
    inputs = load_file(os.path.join(td, "in.safetensors"))
    meta = json.load(open(os.path.join(td, "meta.json")))
    out, skipped, derr = {}, {}, {}
    fields = set(QuantizationArgs.model_fields)
    for name, m in meta.items():
        a = {k: v for k, v in m["args"].items() if k in fields}
        if a.get("strategy") == "block" and "block_structure" in a and isinstance(
                QuantizationArgs.model_fields["block_structure"].annotation, type):
            pass
        try:
            args = QuantizationArgs(**a)
        except Exception as e:  # e.g. block strategy unknown to 0.7
            skipped[name] = f"QuantizationArgs rejected: {type(e).__name__}: {str(e)[:120]}"
            continue
        if f"{name}.zp" not in inputs:
            # llm-compressor modules carry an all-zero zero point (dtype of the quantized
            # type) during compression even for symmetric schemes; quantize() adds it,
            # which turns -0.0 into +0.0 before the fp8 cast. Reproduce that.
            inputs[f"{name}.zp"] = torch.zeros(inputs[f"{name}.scale"].shape,
                                               dtype=args.pytorch_dtype())
        cls = BaseCompressor.get_value_from_registry(m["format"])
        if not hasattr(cls, "compress_weight"):
            # >= 0.18: stateless classmethod API compress(state_dict, scheme)
            from compressed_tensors.quantization import QuantizationScheme
            sch = QuantizationScheme(targets=["Linear"], weights=args)
            sd = {"weight": inputs[f"{name}.w"], "weight_scale": inputs[f"{name}.scale"]}
            sd["weight_zero_point"] = inputs[f"{name}.zp"]
            if f"{name}.g_idx" in inputs:
                sd["weight_g_idx"] = inputs[f"{name}.g_idx"]
            try:
                cd = cls.compress(dict(sd), sch)
            except Exception as e:
                skipped[name] = f"compress failed: {type(e).__name__}: {str(e)[:160]}"
                continue
            for k, v in cd.items():
                out[f"{name}.{k}"] = v.contiguous()
            try:
                out[f"{name}.decompressed"] = cls.decompress(dict(cd), sch)["weight"].contiguous()
            except Exception as e:
                derr[name] = f"{type(e).__name__}: {str(e)[:160]}"
            continue
        comp = BaseCompressor.load_from_registry(m["format"])
        kw = dict(weight=inputs[f"{name}.w"], scale=inputs[f"{name}.scale"],
                  zero_point=inputs.get(f"{name}.zp"), g_idx=inputs.get(f"{name}.g_idx"),
                  quantization_args=args, device="cpu")
        try:
            cd = comp.compress_weight(**kw)
        except Exception as e:
            skipped[name] = f"compress_weight failed: {type(e).__name__}: {str(e)[:160]}"
            continue
        for k, v in cd.items():
            out[f"{name}.{k}"] = v.contiguous()
        full = dict(cd)
        full["weight_scale"] = inputs[f"{name}.scale"]
        if f"{name}.g_idx" in inputs:
            full["weight_g_idx"] = inputs[f"{name}.g_idx"]
        if "weight_zero_point" not in full and f"{name}.zp" in inputs and not args.symmetric:
            full["weight_zero_point"] = inputs[f"{name}.zp"]
        try:
            out[f"{name}.decompressed"] = comp.decompress_weight(full, quantization_args=args).contiguous()
        except Exception as e:
            derr[name] = f"{type(e).__name__}: {str(e)[:160]}"
    save_file(out, os.path.join(td, "out.safetensors"))
    json.dump({"version": ver, "skipped": skipped, "decompress_errors": derr},
              open(os.path.join(td, "old_info.json"), "w"))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--old":
        old_side(sys.argv[2])
    elif len(sys.argv) >= 3:
        driver(sys.argv[1], sys.argv[2:])
    else:
        sys.exit(__doc__)
