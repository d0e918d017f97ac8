/** The flags that choose and load a model, shared by serve, generate and logits. */
import type { ModelOptions } from "../runtime/model/boot.ts";
import { parseSize } from "../runtime/model/offer.ts";
import { DECODER_FORMATS, VISION_FORMATS } from "../runtime/model/plan.ts";
import { choice, positiveInt, UsageError } from "./args.ts";

export const MODEL_FLAGS = {
  model: { type: "string" },
  mmproj: { type: "string" },
  lora: { type: "string", multiple: true },
  quant: { type: "string" },
  "vision-quant": { type: "string" },
  kv: { type: "string" },
  ctx: { type: "string" },
  activations: { type: "string" },
  "gpu-memory": { type: "string" },
  adapter: { type: "string" },
} as const;

/**
 * The model flags' help, each description starting at `column` (to line up with a command's own flags); `exact`:
 * the command defaults to the weights as stored and f32 compute (`pixtral logits`).
 */
export function modelUsage(column = 24, exact = false): string {
  const byDefault = (usual: string) => exact ? "f32 here" : usual;
  const lines: [string, string][] = [
    [
      "--model PATH",
      "a Mistral or Hugging Face model folder, a GGUF text file, or hf:ORG/REPO[:QUANT][@REV]",
    ],
    ["", "(pulled into the hub cache when missing; :QUANT picks a GGUF repository's file, default Q4_K_M;"],
    ["", "HF_HUB_OFFLINE=1: the cache only); default: the built-in random-weight demo model"],
    ["--mmproj FILE", "the GGUF's vision file (default: the mmproj GGUF beside it; of several, the one"],
    ["", "of the text model's quantization, else the most precise)"],
    ["--lora PATH", "a LoRA adapter merged into the weights as they load: a PEFT adapter folder,"],
    ["", "mistral-finetune's lora.safetensors, a LoRA GGUF, or hf:ORG/REPO (repeat for several)"],
    [
      "--quant FORMAT",
      `decoder weights: q4, q4k, q4km, q5k, q5km, q6k, q8, f16 or f32 (default ${
        byDefault("q4")
      }; GGUF blocks`,
    ],
    ["", "stay as stored, other quantized weights keep their own size unless this flag is given; q4k, q5k,"],
    ["", "q6k: llama.cpp's Q4_K (as small as q4, more precise, slower to quantize), Q5_K, Q6_K; q4km, q5km:"],
    ["", "its Q4_K_M and Q5_K_M recipes, with Q6_K for the output head and half the layers' wv and w2)"],
    [
      "--vision-quant FORMAT",
      `vision encoder and adapter: f16, f32, q8, q6k, q5k, q4k or q4 (default ${byDefault("f16")})`,
    ],
    ["--kv FORMAT", `KV cache: f16, q8 or f32 (default ${byDefault("f16")})`],
    ["--ctx N", "KV cache tokens shared by all requests (default: the largest that fits)"],
    ["--activations TYPE", `f16 or f32 (default ${byDefault("f16 where the GPU has shader-f16")})`],
    ["--gpu-memory SIZE", "GPU memory for the plan, e.g. 24GiB (default $PIXTRAL_GPU_MEMORY)"],
    ["--adapter NAME", "require the WebGPU adapter whose name contains NAME (default $PIXTRAL_GPU_ADAPTER)"],
  ];
  const small = exact
    ? ""
    : "\n  (models under 1B decoder parameters, such as the demo and test models, default to f32 weights, " +
      "activations\n  and KV cache: quantizing them saves little and would move their outputs)";
  return lines.map(([flag, text]) => `  ${flag.padEnd(column - 3)} ${text}`).join("\n") + small;
}

type Flags = { [K in Exclude<keyof typeof MODEL_FLAGS, "lora">]?: string } & { lora?: string[] };

export function modelOptions(flags: Flags): ModelOptions {
  const memoryText = flags["gpu-memory"] ?? Deno.env.get("PIXTRAL_GPU_MEMORY");
  const gpuMemory = memoryText === undefined ? undefined : parseSize(memoryText);
  if (gpuMemory === null || gpuMemory === 0) {
    throw new UsageError(`--gpu-memory must be a size such as 24GiB, got "${memoryText}"`);
  }
  return {
    model: flags.model,
    mmproj: flags.mmproj,
    lora: flags.lora,
    quant: choice("--quant", flags.quant, DECODER_FORMATS),
    visionQuant: choice("--vision-quant", flags["vision-quant"], VISION_FORMATS),
    kv: choice("--kv", flags.kv, ["f16", "q8", "f32"] as const),
    ctx: positiveInt("--ctx", flags.ctx),
    activations: choice("--activations", flags.activations, ["f16", "f32"] as const),
    gpuMemory,
    adapter: flags.adapter,
  };
}
