/**
 * Random weights for any config, generated on the CPU from a seed instead of read from files: the built-in demo
 * model and tests that need a model of some shape. Each row of each tensor has its own generator (seeded from
 * the seed, the tensor's name and the row), so any piece can be produced alone and always comes out the same.
 *
 * Scales follow the tiny-pixtral fixture's recipe (standard deviations: linear and conv weights 0.08, the output
 * head 0.25, embeddings 0.5, norms 1 ± 0.1, biases 0.02), drawn uniformly rather than normally, which is several
 * times faster and makes no difference to a random model; values are stored as bf16.
 */
import type { ModelConfig } from "../config.ts";
import { expectedTensors, type TensorRole, type TensorSpec } from "../tensors.ts";
import type { TensorInfo, WeightSource } from "./source.ts";
import { WeightFileError } from "./errors.ts";

const DEFAULT_CHUNK = 64 << 20;

function hash(text: string, seed: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** mulberry32: small, fast, and good enough for weights that only need to look like a trained model's. */
function uniform(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
}

/** Mean and standard deviation of the random values of a tensor. */
export function syntheticScale(spec: TensorSpec): { mean: number; std: number } {
  const byRole: Record<TensorRole, { mean: number; std: number }> = {
    embedding: { mean: 0, std: 0.5 },
    linear: { mean: 0, std: 0.08 },
    conv: { mean: 0, std: 0.08 },
    norm: { mean: 1, std: 0.1 },
    bias: { mean: 0, std: 0.02 },
  };
  return spec.name === "output.weight" ? { mean: 0, std: 0.25 } : byRole[spec.role];
}

/** Rows [first, first + count) of a tensor as bf16 bytes. */
function generateRows(
  spec: TensorSpec,
  seed: number,
  first: number,
  count: number,
  rowElems: number,
): Uint8Array<ArrayBuffer> {
  const { mean, std } = syntheticScale(spec);
  const values = new Float32Array(count * rowElems);
  const base = hash(spec.name, seed);
  const width = 2 * Math.sqrt(3) * std; // a uniform variable of this width has standard deviation `std`
  for (let r = 0; r < count; r++) {
    const next = uniform(base ^ Math.imul(first + r + 1, 0x9e3779b1));
    const row = r * rowElems;
    for (let c = 0; c < rowElems; c++) values[row + c] = mean + width * (next() - 0.5);
  }
  const u32 = new Uint32Array(values.buffer);
  const bits = new Uint16Array(values.length);
  for (let i = 0; i < u32.length; i++) {
    const x = u32[i];
    bits[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16; // round to nearest even
  }
  return new Uint8Array(bits.buffer);
}

export function syntheticWeights(config: ModelConfig, seed = 0): WeightSource {
  const specs = new Map(expectedTensors(config).map((s) => [s.name, s]));
  const infos = [...specs.values()].map((spec): TensorInfo => ({
    name: spec.name,
    dtype: "BF16",
    shape: spec.shape,
    byteLength: spec.shape.reduce((n, d) => n * d, 1) * 2,
    component: spec.component,
    role: spec.role,
    file: `synthetic:${seed}`,
    storedName: spec.name,
    permuted: false,
  }));
  const spec = (name: string) => {
    const found = specs.get(name);
    if (!found) throw new WeightFileError("missing", `synthetic:${seed}`, "not a tensor of this model", name);
    return found;
  };
  const rowElemsOf = (s: TensorSpec) => s.shape.at(-1)!;
  const rowsOf = (s: TensorSpec) => s.shape.slice(0, -1).reduce((n, d) => n * d, 1);

  return {
    layout: "mistral",
    files: [`synthetic:${seed}`],
    unused: [],
    tensors: () => [...infos],
    info: (name) => infos.find((i) => i.name === spec(name).name)!,
    read: (name) => {
      const s = spec(name);
      return Promise.resolve(generateRows(s, seed, 0, rowsOf(s), rowElemsOf(s)));
    },
    async *chunks(name, maxBytes = DEFAULT_CHUNK) {
      const s = spec(name);
      const rowBytes = rowElemsOf(s) * 2;
      const step = Math.max(1, Math.floor(maxBytes / rowBytes));
      for (let row = 0; row < rowsOf(s); row += step) {
        const count = Math.min(step, rowsOf(s) - row);
        yield {
          byteOffset: row * rowBytes,
          bytes: generateRows(s, seed, row, count, rowElemsOf(s)),
        };
      }
    },
    scales: (name) => Promise.reject(new TypeError(`synthetic tensor "${spec(name).name}" has no scales`)),
    close() {},
  };
}
