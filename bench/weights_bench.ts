/**
 * Weight loading throughput on the tiny fixture: every tensor read through a WeightSource (per layout), against
 * reading the same file whole in one call, in the same process. The ratio is the loader's overhead (positional
 * reads, HF q/k row permutation); absolute numbers depend on the page cache.
 */
import { locateModel } from "../runtime/model/locate.ts";
import { openModel } from "../runtime/model/open.ts";

const TINY =
  new URL(Deno.env.get("PIXTRAL_FIXTURES") ?? "../../shared/fixtures/tiny-pixtral/", import.meta.url)
    .pathname;

async function readAll(model: string, mmproj?: string): Promise<number> {
  const opened = await openModel(await locateModel(model, { mmproj }));
  let bytes = 0;
  try {
    for (const t of opened.weights.tensors()) bytes += (await opened.weights.read(t.name)).length;
  } finally {
    opened.weights.close();
  }
  return bytes;
}

Deno.bench(
  "Deno.readFile of consolidated.safetensors (9 MB)",
  { group: "read every tensor", baseline: true },
  async () => {
    await Deno.readFile(`${TINY}mistral/consolidated.safetensors`);
  },
);
Deno.bench("Mistral layout (BF16)", { group: "read every tensor" }, async () => {
  await readAll(`${TINY}mistral`);
});
Deno.bench("Hugging Face layout (BF16, q/k permuted)", { group: "read every tensor" }, async () => {
  await readAll(`${TINY}hf`);
});
Deno.bench("GGUF F32 text + mmproj (18 MB)", { group: "read every tensor" }, async () => {
  await readAll(`${TINY}gguf/tiny-pixtral-text-f32.gguf`, `${TINY}gguf/tiny-pixtral-mmproj-f32.gguf`);
});
Deno.bench("GGUF Q4_K_M text (raw blocks)", { group: "read every tensor" }, async () => {
  await readAll(`${TINY}gguf/tiny-pixtral-text-Q4_K_M.gguf`);
});
