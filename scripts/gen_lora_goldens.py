#!/usr/bin/env python3
"""Generate LoRA adapters of the tiny Pixtral fixture and their reference logits.

Two adapters are made with the REAL library (PEFT's get_peft_model on transformers'
LlavaForConditionalGeneration of shared/fixtures/tiny-pixtral/hf, in float32), their
A/B matrices set to seeded random values (PEFT starts B at zero, a no-op), and saved
with PEFT's own `save_pretrained`:

  peft/     r=4, lora_alpha=8 on every linear layer of the decoder, the vision tower
            and the projector, plus the token embedding (lora_embedding_A/B);
            rank_pattern {"q_proj": 2} and alpha_pattern {"down_proj": 3} (per-module
            rank and alpha, vision q_proj included); the decoder's final norm and the
            vision ln_pre in modules_to_save (whole replacement weights, perturbed).
            PEFT also saves the embedding's base weight (`embed_tokens.base_layer.weight`)
            since the embedding is a target. Stored in bfloat16 (as bf16 training saves
            adapters); its logits come from the saved folder loaded back with
            PeftModel.from_pretrained, so they are those of exactly the stored values.
  plain/    r=8, lora_alpha=16 (scale 2.0) on every linear layer of the decoder and
            the vision tower.
  mistral/  the plain adapter as mistral-finetune writes one: `lora.safetensors` with
            the model's own names (layers.N.attention.wq.lora_A.weight, ...), the q/k
            rows of lora_B put back in Mistral's interleaved order, and `params.json`
            with {"lora": {"rank": 8, "scaling": 2.0}}.

  dora/     r=4, lora_alpha=8, use_dora=True on every linear layer of the decoder and the
            vision tower (DoRA: lora_magnitude_vector, perturbed from its start at the rows'
            lengths).
  embed/    r=4, lora_alpha=8 on the token embedding and o_proj, the final norm in
            modules_to_save, the embedding's base weight not saved.
  plain.gguf, embed.gguf, plain-q8_0.gguf  those adapters converted by llama.cpp's own
            convert_lora_to_gguf.py (text layers only, as it converts; f32, and lora_a in
            Q8_0 with lora_b in f16 for --outtype q8_0), when LLAMA_CPP
            names a llama.cpp checkout (the llama-cpp-python sdist's vendor/llama.cpp is one).

For each adapter the logits of the PEFT model's own forward (adapters unmerged, float32)
are written for two sequences of the fixture's goldens: text_six (6 tokens) and
mm_gradient_64x48 (27 tokens with one image): <adapter>.<case>.logits.f32.bin.
The logits of the model without adapters are compared with the float64 goldens as a
check of the setup (printed, and kept in manifest.json).

Usage:  [LLAMA_CPP=.../llama.cpp] python3 scripts/gen_lora_goldens.py SHARED_DIR OUT_DIR
Needs:  torch, transformers (written against 5.24), peft (0.21.2), safetensors.
"""

import json
import os
import subprocess
import sys

import numpy as np
import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import LlavaForConditionalGeneration

shared, out = sys.argv[1], sys.argv[2]
fixture = os.path.join(shared, "fixtures/tiny-pixtral")
golden = os.path.join(fixture, "golden")
os.makedirs(out, exist_ok=True)
manifest_in = json.load(open(os.path.join(golden, "model/manifest.json")))
text = next(c for c in manifest_in["text"] if c["name"] == "text_six")
mm = next(c for c in manifest_in["multimodal"] if c["name"] == "mm_gradient_64x48")
pixels = np.fromfile(os.path.join(golden, "preprocess/gradient_64x48.pixels.f32.bin"), "<f4").reshape(3, 48, 64)
CASES = {
    "text_six": {"ids": text["ids"]},
    "mm_gradient_64x48": {"ids": mm["ids"], "pixels": pixels},
}


def write_json(path, value):
    """As `deno fmt` leaves JSON, so that a regenerated fixture is the committed one byte for byte."""
    with open(path, "w") as f:
        f.write(json.dumps(value, indent=2) + "\n")


def base_model():
    return LlavaForConditionalGeneration.from_pretrained(os.path.join(fixture, "hf"), dtype=torch.float32).eval()


def logits_of(model, case):
    ids = torch.tensor([case["ids"]])
    kwargs = {}
    if "pixels" in case:
        kwargs = {
            "pixel_values": torch.from_numpy(case["pixels"]).unsqueeze(0),
            "image_sizes": torch.tensor([[48, 64]]),
        }
    with torch.no_grad():
        return model(input_ids=ids, **kwargs).logits[0].float().numpy()


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if "lora_magnitude_vector" in name:
            p.data = p.data * (1 + torch.randn(p.shape, generator=g) * 0.1)
        elif "lora_" in name:
            p.data = torch.randn(p.shape, generator=g) * (0.3 if "lora_A" in name or "embedding_A" in name else 0.1)
        elif "modules_to_save" in name:
            p.data = p.data + torch.randn(p.shape, generator=g) * 0.2


LINEAR = r".*(language_model|vision_tower).*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
ADAPTERS = {
    "peft": LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=LINEAR + r"|.*multi_modal_projector\.linear_[12]|.*language_model\.embed_tokens",
        rank_pattern={"q_proj": 2},
        alpha_pattern={"down_proj": 3},
        modules_to_save=["language_model.norm", "ln_pre"],
    ),
    "plain": LoraConfig(r=8, lora_alpha=16, target_modules=LINEAR),
    "embed": LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=r".*language_model\.(embed_tokens|layers\.\d+\.self_attn\.o_proj)",
        modules_to_save=["language_model.norm"],
    ),
    "dora": LoraConfig(r=4, lora_alpha=8, use_dora=True, target_modules=LINEAR),
}

manifest = {
    "what": "LoRA adapters of the tiny Pixtral model made and saved by PEFT, with the logits of PEFT's own forward",
    "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    "adapters": {},
}
base = base_model()
check = {}
for name, case in CASES.items():
    want = np.fromfile(
        os.path.join(golden, "model", (text if name == "text_six" else mm)["logits"]["file"]), "<f4"
    ).reshape(len(case["ids"]), -1)
    check[name] = float(np.abs(logits_of(base, case) - want).max())
manifest["base_vs_golden_max_abs"] = check
print("base model vs float64 goldens:", check)

for seed, (adapter, config) in enumerate(ADAPTERS.items()):
    model = get_peft_model(base_model(), config)
    randomize(model, 1000 + seed)
    model.eval()
    folder = os.path.join(out, adapter)
    model.save_pretrained(folder, save_embedding_layers=False if adapter == "embed" else "auto")
    os.remove(os.path.join(folder, "README.md"))  # PEFT's model card template
    config_file = os.path.join(folder, "adapter_config.json")
    write_json(config_file, json.load(open(config_file)))
    if adapter == "peft":
        file = os.path.join(folder, "adapter_model.safetensors")
        save_file({k: v.to(torch.bfloat16) for k, v in load_file(file).items()}, file, {"format": "pt"})
        model = PeftModel.from_pretrained(base_model(), folder).eval()
    entry = {"folder": adapter, "cases": {}}
    for name, case in CASES.items():
        logits = logits_of(model, case)
        file = f"{adapter}.{name}.logits.f32.bin"
        logits.astype("<f4").tofile(os.path.join(out, file))
        entry["cases"][name] = {"ids": case["ids"], "file": file, "shape": list(logits.shape),
                                "image": "gradient_64x48" if "pixels" in case else None,
                                "argmax": logits.argmax(-1).tolist()}
    entry["keys"] = sorted(load_file(os.path.join(folder, "adapter_model.safetensors")).keys())[:6]
    manifest["adapters"][adapter] = entry

# The plain adapter as mistral-finetune's lora.safetensors: the model's own names, q/k rows interleaved.
plain = load_file(os.path.join(out, "plain/adapter_model.safetensors"))
native = {}
TEXT = {"q_proj": "attention.wq", "k_proj": "attention.wk", "v_proj": "attention.wv", "o_proj": "attention.wo",
        "gate_proj": "feed_forward.w1", "down_proj": "feed_forward.w2", "up_proj": "feed_forward.w3"}
for key, value in plain.items():
    module, part = key.removeprefix("base_model.model.").rsplit(".lora_", 1)
    parts = module.split(".")
    layer, proj = parts[parts.index("layers") + 1], parts[-1]
    prefix = "vision_encoder.transformer." if "vision_tower" in module else ""
    name = f"{prefix}layers.{layer}.{TEXT[proj]}.lora_{part}"
    if part.startswith("B") and proj in ("q_proj", "k_proj"):
        head_dim = 64
        heads = value.shape[0] // head_dim
        v = value.reshape(heads, 2, head_dim // 2, -1).transpose(1, 2)  # HF row i, i+D/2 -> native 2i, 2i+1
        value = v.reshape(value.shape).contiguous()
    native[name] = value.contiguous()
os.makedirs(os.path.join(out, "mistral"), exist_ok=True)
save_file(native, os.path.join(out, "mistral/lora.safetensors"))
params = json.load(open(os.path.join(fixture, "mistral/params.json")))
params["lora"] = {"enable": True, "rank": 8, "dropout": 0.0, "scaling": 2.0}
write_json(os.path.join(out, "mistral/params.json"), params)
manifest["adapters"]["mistral"] = {"folder": "mistral", "same_function_as": "plain"}

llama_cpp = os.environ.get("LLAMA_CPP")
for adapter, outtype, file in [("plain", "f32", "plain.gguf"), ("embed", "f32", "embed.gguf"),
                                ("plain", "q8_0", "plain-q8_0.gguf")] if llama_cpp else []:
    subprocess.run(
        [sys.executable, os.path.join(llama_cpp, "convert_lora_to_gguf.py"), "--base", os.path.join(fixture, "hf"),
         "--outtype", outtype, "--outfile", os.path.join(out, file), os.path.join(out, adapter)],
        check=True, env={**os.environ, "PYTHONPATH": os.path.join(llama_cpp, "gguf-py") + os.pathsep + llama_cpp},
    )
    manifest["adapters"][file] = {"file": file, "same_function_as": f"{adapter} (text layers, {outtype})"}

write_json(os.path.join(out, "manifest.json"), manifest)
print(json.dumps(manifest["adapters"]["peft"]["keys"], indent=1))
