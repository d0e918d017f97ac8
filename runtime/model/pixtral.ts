/**
 * Pixtral on the GPU: the weights, the KV cache pool, and the two passes the engine calls: `encodeImages` (vision
 * encoder + adapter) and `step` (the decoder over any mix of prefill chunks and decode tokens).
 */
import type { GpuContext } from "../gpu/context.ts";
import type { FloatType } from "../gpu/dtype.ts";
import type { KvType } from "../gpu/ops/attention.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { Progress } from "../progress.ts";
import type { ModelConfig } from "./config.ts";
import { decoderStep, type SequenceStep, type StepOutput } from "./decoder.ts";
import { KvPool } from "./kv_pool.ts";
import {
  loadLoraBank,
  type LoraBank,
  type LoraModule,
  randomLoraBank,
  releaseLoraBank,
} from "./lora_modules.ts";
import { type LoadedWeights, loadWeights, randomWeights } from "./load.ts";
import { type Explicit, KV_BLOCK_TOKENS, type WeightFormat } from "./plan.ts";
import { type ImageInput, VisionPass } from "./vision.ts";
import type { LoraAdapter } from "./weights/lora.ts";
import type { WeightSource } from "./weights/source.ts";

export interface PixtralOptions {
  /** Decoder weights (default q4). */
  quant?: WeightFormat;
  /** Vision encoder and adapter weights (default f16). */
  visionQuant?: WeightFormat;
  /** Which of the two a flag gave: those apply to codes stored quantized too (plan.ts decodedFormat). */
  explicit?: Explicit;
  /** Activations: f16 where the GPU has shader-f16 (default), f32 for exactness. */
  activations?: FloatType;
  /** KV cache entries (default f16). */
  kv?: KvType;
  /** KV cache capacity in tokens, shared by all sequences. */
  kvTokens: number;
  progress?: Progress;
  /** LoRA adapters served per request under these names (lora_modules.ts); their files are closed. */
  loraModules?: readonly { name: string; adapter: LoraAdapter }[];
  /** Instead: adapters of random values (randomLoraBank), for benchmarks. */
  randomLoras?: { count: number; rank: number };
  /** Tests: the most bytes a piece of a tensor takes while loading (load.ts LoadOptions.pieceBytes). */
  pieceBytes?: number;
}

export class PixtralModel {
  readonly ctx: GpuContext;
  readonly config: ModelConfig;
  readonly act: FloatType;
  readonly pool: KvPool;
  /** LoRA adapters served per request, by the name requests give, and their updates. */
  readonly loras: ReadonlyMap<string, LoraModule>;
  readonly loraBank?: LoraBank;
  readonly #weights: LoadedWeights;

  private constructor(
    ctx: GpuContext,
    config: ModelConfig,
    weights: LoadedWeights,
    pool: KvPool,
    act: FloatType,
    loraBank?: LoraBank,
  ) {
    this.ctx = ctx;
    this.config = config;
    this.#weights = weights;
    this.pool = pool;
    this.act = act;
    this.loraBank = loraBank;
    this.loras = new Map(loraBank?.modules.map((m) => [m.name, m]));
  }

  /** `source` gives the weights; "random" makes seeded random ones on the GPU (real-size benchmarks). */
  static async load(
    ctx: GpuContext,
    config: ModelConfig,
    source: WeightSource | "random",
    options: PixtralOptions,
  ): Promise<PixtralModel> {
    const act = options.activations ?? (ctx.f16 ? "f16" : "f32");
    const modules = options.loraModules ?? [];
    if (act === "f16" && !ctx.f16) {
      modules.forEach(({ adapter }) => adapter.file.close());
      throw new Error("f16 activations need a GPU with shader-f16");
    }
    const loadOptions = {
      quant: options.quant ?? "q4",
      visionQuant: options.visionQuant ?? "f16",
      layers: config.decoder.nLayers,
      pieceBytes: options.pieceBytes,
      explicit: options.explicit,
      progress: options.progress,
    };
    let loaded: LoadedWeights | undefined;
    let bank: LoraBank | undefined;
    try {
      loaded = source === "random"
        ? await randomWeights(ctx, config, loadOptions)
        : await loadWeights(ctx, source, loadOptions);
    } catch (err) {
      modules.forEach(({ adapter }) => adapter.file.close());
      throw err;
    }
    try {
      // In the activations' type: their products are small next to the weights'.
      if (modules.length) bank = await loadLoraBank(ctx, config, modules, act);
      else if (options.randomLoras) {
        bank = randomLoraBank(ctx, config, options.randomLoras.count, options.randomLoras.rank, act);
      }
    } catch (err) {
      for (const t of loaded.owned) ctx.release(t);
      throw err;
    }
    const d = config.decoder;
    const pool = new KvPool(ctx, {
      layers: d.nLayers,
      blocks: Math.ceil(options.kvTokens / KV_BLOCK_TOKENS),
      blockSize: KV_BLOCK_TOKENS,
      headsKv: d.nKvHeads,
      headDim: d.headDim,
      dtype: options.kv ?? "f16",
    });
    return new PixtralModel(ctx, config, loaded, pool, act, bank);
  }

  readonly weight = (name: string): Tensor => {
    const tensor = this.#weights.tensors.get(name);
    if (!tensor) throw new Error(`the model has no tensor ${name}`);
    return tensor;
  };

  /** Image embeddings [patches, dim] after the adapter, in a pooled tensor the caller releases. */
  async encodeImages(images: readonly ImageInput[], lora?: LoraModule): Promise<Tensor> {
    const pass = this.visionPass(images, lora);
    try {
      const rec = this.ctx.record("vision");
      try {
        pass.record(rec);
      } catch (err) {
        rec.discard();
        throw err;
      }
      await rec.submit();
      return pass.take();
    } finally {
      pass.release();
    }
  }

  /** A vision pass over `images` to record in stages (see VisionPass); the caller releases it. */
  visionPass(images: readonly ImageInput[], lora?: LoraModule): VisionPass {
    const adapter = lora && this.loraBank && { bank: this.loraBank, module: lora };
    return new VisionPass(this.ctx, this.config, this.weight, images, this.act, adapter);
  }

  /** Records one decoder step into `rec` (sampling or reading logits is added by the caller). */
  step(rec: Recorder, steps: readonly SequenceStep[]): StepOutput {
    return decoderStep(rec, this.config, this.weight, this.pool, steps, this.act, this.loraBank);
  }

  /**
   * Logits at every position of one sequence ([ids.length, vocab], row-major), prefilled in chunks of `chunk`
   * tokens, with `images` (in prompt order) at its [IMG] tokens, and with a LoRA adapter served per request. Uses
   * and returns KV cache blocks of its own.
   */
  async sequenceLogits(
    ids: readonly number[],
    images: readonly ImageInput[] = [],
    { chunk = 512, lora }: { chunk?: number; lora?: LoraModule } = {},
  ): Promise<Float32Array> {
    const vocab = this.config.decoder.vocabSize;
    const imageTokens = ids.filter((id) => id === this.config.imageTokens.img).length;
    const embeddings = images.length ? await this.encodeImages(images, lora) : undefined;
    if ((embeddings?.rows ?? 0) !== imageTokens) {
      embeddings && this.ctx.release(embeddings);
      throw new RangeError(
        `${imageTokens} [IMG] tokens but the images have ${embeddings?.rows ?? 0} patches`,
      );
    }
    const blocks: number[] = [];
    const out = new Float32Array(ids.length * vocab);
    try {
      if (!this.pool.reserve(blocks, ids.length)) {
        throw new RangeError(`${ids.length} tokens do not fit the KV cache (${this.pool.capacity} tokens)`);
      }
      let imageAt = 0;
      for (let at = 0; at < ids.length; at += chunk) {
        const part = ids.slice(at, at + chunk);
        const count = part.filter((id) => id === this.config.imageTokens.img).length;
        const rec = this.ctx.record("prefill");
        const { logits } = this.step(rec, [{
          ids: part,
          past: at,
          blocks,
          images: count ? embeddings!.sliceRows(imageAt, count) : undefined,
          logits: "all",
          lora,
        }]);
        const bytes = rec.read(logits!);
        await rec.submit();
        out.set(new Float32Array((await bytes).buffer), at * vocab);
        imageAt += count;
      }
      return out;
    } finally {
      this.pool.release(blocks);
      if (embeddings) this.ctx.release(embeddings);
    }
  }

  /** Frees the GPU memory. */
  release(): void {
    this.pool.destroy(this.ctx);
    for (const t of this.#weights.owned) this.ctx.release(t);
    if (this.loraBank) releaseLoraBank(this.ctx, this.loraBank);
    this.#weights.tensors.clear();
    this.#weights.owned = [];
  }
}
