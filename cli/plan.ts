/** `pixtral plan`: the memory plan for a model, from its files or from a params.json alone. */
import { localAdapters, namedModule, withLocalModel } from "../runtime/model/boot.ts";
import { checkServable, loraModuleBytes } from "../runtime/model/lora_modules.ts";
import { locateModel } from "../runtime/model/locate.ts";
import { adapterOffer, parseSize } from "../runtime/model/offer.ts";
import { loadConfig, openModel } from "../runtime/model/open.ts";
import {
  type AdapterOffer,
  checkPlan,
  DECODER_FORMATS,
  gib,
  type KvFormat,
  type MemoryPlan,
  planMemory,
  type PlanOptions,
  precision,
  VISION_FORMATS,
} from "../runtime/model/plan.ts";
import { storedFromConfig } from "../runtime/model/weights/quantization_config.ts";
import type { ModelConfig } from "../runtime/model/config.ts";
import type { DType } from "../runtime/model/weights/dtype.ts";
import { openLora } from "../runtime/model/weights/lora.ts";
import { choice, parseFlags, positiveInt, UsageError } from "./args.ts";

export const usage = `pixtral plan --model PATH [--quant q4|q4k|q4km|q5k|q5km|q6k|q8|f16] [--ctx N] [flags]

Prints the GPU memory a model needs before loading it: weights per component after quantization, the KV cache
for the context, and the activation peak, compared with what the WebGPU adapter offers.

  --model PATH          a Mistral or Hugging Face model folder, a params.json or config.json alone, a GGUF text
                        file, or hf:ORG/REPO[:QUANT][@REVISION] (only its config is fetched; for a GGUF
                        repository the file of the quantization, Q4_K_M unless :QUANT says)
  --mmproj FILE         the GGUF's vision file (default: the one mmproj GGUF beside it)
  --lora PATH           a LoRA adapter to merge, or hf:ORG/REPO (repeatable): GGUF blocks it updates are
                        quantized again
  --lora-module NAME=PATH
                        a LoRA adapter served per request (repeatable): its own GPU memory
  --quant FORMAT        decoder weights: q4 (default), q4k, q4km, q5k, q5km, q6k, q8, f16 or f32 (q4km and q5km:
                        llama.cpp's Q4_K_M and Q5_K_M recipes)
  --vision-quant FORMAT vision encoder and adapter weights: f16 (default), q8, q6k, q5k, q4k, q4 or f32
  --kv FORMAT           KV cache: f16 (default), q8 or f32
                        (models under 1B decoder parameters default to f32 everywhere)
  --ctx N               KV cache tokens (default: the largest that fits, up to the model's context)
  --prefill-chunk N     tokens per prefill step (default 512)
  --gpu-memory SIZE     memory the GPU offers, e.g. 24GiB or 80GB (default: $PIXTRAL_GPU_MEMORY; system memory
                        for a CPU adapter; WebGPU does not report it for real GPUs)
  --no-gpu              do not ask WebGPU for an adapter
  --json                print the plan as JSON`;

async function findOffer(memoryText: string | undefined, askGpu: boolean): Promise<AdapterOffer | undefined> {
  let memory: number | undefined;
  if (memoryText !== undefined) {
    const parsed = parseSize(memoryText);
    if (parsed === null || parsed <= 0) {
      throw new UsageError(`--gpu-memory must be a size such as 24GiB, got "${memoryText}"`);
    }
    memory = parsed;
  }
  const adapter = askGpu && "gpu" in navigator
    ? await navigator.gpu.requestAdapter().catch(() => null)
    : null;
  if (adapter) return adapterOffer(adapter, memory);
  if (memory === undefined) return undefined;
  return {
    name: "--gpu-memory",
    memoryBytes: memory,
    maxBufferSize: null,
    maxStorageBufferBindingSize: null,
  };
}

export async function plan(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, {
    model: { type: "string" },
    mmproj: { type: "string" },
    lora: { type: "string", multiple: true },
    "lora-module": { type: "string", multiple: true },
    quant: { type: "string" },
    "vision-quant": { type: "string" },
    kv: { type: "string" },
    ctx: { type: "string" },
    "prefill-chunk": { type: "string" },
    "gpu-memory": { type: "string" },
    "no-gpu": { type: "boolean" },
    json: { type: "boolean" },
  });
  if (flags.model === undefined) throw new UsageError("--model is required");
  // Flags are checked before any file is touched, so that a typo is reported as such.
  const options: PlanOptions = {
    quant: choice("--quant", flags.quant, DECODER_FORMATS),
    visionQuant: choice("--vision-quant", flags["vision-quant"], VISION_FORMATS),
    kv: choice<KvFormat>("--kv", flags.kv, ["f16", "q8", "f32"]),
    ctx: positiveInt("--ctx", flags.ctx),
    prefillChunk: positiveInt("--prefill-chunk", flags["prefill-chunk"]),
  };
  const offer = await findOffer(flags["gpu-memory"] ?? Deno.env.get("PIXTRAL_GPU_MEMORY"), !flags["no-gpu"]);

  // A hub model's plan needs its config only (a GGUF's is its header: the file).
  const local = await withLocalModel({ model: flags.model, mmproj: flags.mmproj }, { configOnly: true });
  const location = await locateModel(local.model!, { mmproj: local.mmproj });
  let config;
  if (location.layout === "gguf" || (location.layout === "hf" && location.weightFiles.length)) {
    // Tensors may already be quantized (GGUF blocks, scaled codes): the plan counts them as stored.
    const opened = await openModel(location);
    opened.weights.close();
    config = opened.config;
    options.stored = new Map<string, DType>(opened.weights.tensors().map((t) => [t.name, t.dtype]));
  } else {
    config = await loadConfig(location);
    // A hub model's config alone (its weights not fetched) says how a compressed-tensors or bitsandbytes checkpoint stores them.
    if (location.layout === "hf") {
      const json = JSON.parse(await Deno.readTextFile(location.configFile));
      options.stored = storedFromConfig(config, json.quantization_config);
    }
  }
  if (flags.lora?.length) await planAdapters((await localAdapters(flags.lora))!, config, options);
  const { quant, visionQuant, kv, explicit, activations } = precision(config, options);
  Object.assign(options, { quant, visionQuant, kv, explicit });
  if (flags["lora-module"]?.length) {
    options.loraModules = await planModules(flags["lora-module"], config, activations === "f32" ? 4 : 2);
  }
  const result = planMemory(config, options, offer);
  let refusal: Error | undefined;
  if (offer) {
    try {
      checkPlan(config, result, offer, options);
    } catch (err) {
      refusal = err as Error;
    }
  }
  if (flags.json) {
    console.log(
      JSON.stringify(
        {
          model: location.configFile,
          config,
          plan: result,
          adapter: offer ?? null,
          fits: offer ? !refusal : null,
        },
        null,
        2,
      ),
    );
  } else {
    console.log(describe(location.configFile, result, offer, refusal === undefined));
  }
  if (refusal) throw refusal;
}

/**
 * What LoRA adapters change in the plan (their headers read and checked against the config): the tensors they
 * update, and the dtypes of those they replace whole.
 */
async function planAdapters(paths: string[], config: ModelConfig, options: PlanOptions): Promise<void> {
  const merged = new Set<string>();
  const stored = options.stored && new Map(options.stored);
  for (const path of paths) {
    const adapter = await openLora(path, config);
    adapter.file.close();
    for (const name of adapter.updates.keys()) merged.add(name);
    for (const [name, w] of adapter.whole) stored?.set(name, w.stored.dtype);
  }
  Object.assign(options, { merged, stored });
}

/** The GPU bytes of LoRA adapters served per request (their headers read and checked). */
async function planModules(specs: string[], config: ModelConfig, elementBytes: number): Promise<number> {
  let bytes = 0;
  for (const spec of specs) {
    const { path } = namedModule(spec);
    const adapter = await openLora((await localAdapters([path]))![0], config);
    adapter.file.close();
    checkServable(adapter);
    bytes += loraModuleBytes(adapter, elementBytes);
  }
  return bytes;
}

function count(n: number): string {
  return n >= 1e9
    ? `${(n / 1e9).toFixed(2)}B`
    : n >= 1e6
    ? `${(n / 1e6).toFixed(1)}M`
    : n > 0
    ? `${(n / 1e3).toFixed(1)}K`
    : "-";
}

function describe(source: string, p: MemoryPlan, offer: AdapterOffer | undefined, fits: boolean): string {
  const row = (label: string, detail: string, bytes: number) =>
    `${label.padEnd(12)}${gib(bytes).padStart(10)}  ${detail}`;
  const lines = [`memory plan for ${source}`, ""];
  for (const c of ["decoder", "vision", "adapter"] as const) {
    const w = p.weights[c];
    if (w.parameters > 0) {
      lines.push(row(c, `${count(w.parameters).padStart(7)} parameters, ${w.format}`, w.bytes));
    }
  }
  lines.push(
    row("weights", `largest tensor ${p.largestTensor.name} (${gib(p.largestTensor.bytes)})`, p.weights.total),
  );
  if (p.loraModules) lines.push(row("LoRA", "adapters served per request", p.loraModules));
  const kv = p.kvCache;
  const why = {
    flag: "--ctx",
    fits: "largest that fits",
    model: "model maximum",
    "memory-unknown": "memory unknown: set --gpu-memory",
  }[p.context.chosen];
  lines.push(row(
    "KV cache",
    `${kv.tokens} tokens (${why}), ${kv.format}, ${
      (kv.bytesPerToken / 1024).toFixed(1)
    } KiB/token, ${kv.blocks} x ${kv.blockTokens}`,
    kv.bytes,
  ));
  const a = p.activations;
  lines.push(row(
    "activations",
    `peak: prefill ${a.prefillChunk} tok ${gib(a.prefill)}${
      a.vision ? `, image ${gib(a.vision)}` : ""
    }, decode ${gib(a.decode)}`,
    a.peak,
  ));
  lines.push(row("staging", "largest upload piece held in host memory", p.stagingBytes));
  lines.push(row("total", "", p.total).trimEnd());
  if (offer) {
    const memory = offer.memoryBytes === null
      ? "memory unknown (set --gpu-memory)"
      : `${gib(offer.memoryBytes)} available`;
    lines.push(
      "",
      `adapter     ${offer.name}: ${memory}${
        offer.memoryBytes === null ? "" : fits ? ": fits" : ": does NOT fit"
      }`,
    );
  } else {
    lines.push(
      "",
      "adapter     none asked (no WebGPU adapter, or --no-gpu): set --gpu-memory to check the fit",
    );
  }
  return lines.join("\n");
}
