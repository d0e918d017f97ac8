/** `pixtral pull hf:ORG/REPO[@revision]`: download a model from the Hugging Face hub into the local cache. */
import { cacheRoot } from "../runtime/hub/cache.ts";
import { pull as pullRepo } from "../runtime/hub/pull.ts";
import { offlineFromEnv, resolveHubModel } from "../runtime/hub/model.ts";
import { UsageError } from "./args.ts";
import { parseArgs } from "node:util";

export const usage = `pixtral pull hf:ORG/REPO[:QUANT][@REVISION] [--include GLOB]... [--lora] [--cache DIR]

Downloads a model from the Hugging Face hub into the local cache (the layout huggingface_hub uses, so either
tool finds what the other fetched), resuming interrupted downloads and checking every file's size and hash.
Then use it with --model hf:ORG/REPO[:QUANT][@REVISION] (which also pulls what the cache lacks).

  :QUANT          for a GGUF repository, the quantization to fetch (default Q4_K_M): the text GGUF named
                  ...-QUANT.gguf and an mmproj (of the same quantization, else f16, bf16, f32, q8_0)
  --include GLOB  files to fetch instead (repeatable; * within a folder, ** across). Default: the model's files
                  (params.json, consolidated*.safetensors, tekken.json; or the Hugging Face JSON and
                  safetensors files; or a GGUF quantization, above)
  --lora          the repository is a LoRA adapter's (for --lora): its PEFT files, or one LoRA GGUF (the
                  only one, or the one :TAG names)
  --cache DIR     cache folder (default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub)

  HF_ENDPOINT     hub address (default https://huggingface.co), e.g. a mirror
  HF_HUB_OFFLINE  1: fetch nothing, only check that the cache holds the model (as huggingface-cli does)
  HF_TOKEN        access token for gated or private repositories (else the token file of huggingface-cli login)`;

export async function pull(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        include: { type: "string", multiple: true },
        lora: { type: "boolean" },
        cache: { type: "string" },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const [spec, ...extra] = parsed.positionals;
  if (spec === undefined || extra.length) {
    throw new UsageError("give one model: pixtral pull hf:ORG/REPO[:QUANT][@REVISION]");
  }
  if (!spec.startsWith("hf:")) throw new UsageError(`"${spec}" is not a hub reference: write hf:ORG/REPO`);
  const cache = parsed.values.cache ?? cacheRoot();
  if (offlineFromEnv()) {
    if (parsed.values.include) throw new UsageError("--include needs the hub, and HF_HUB_OFFLINE is set");
    const { path } = await resolveHubModel(spec, { cache, offline: true, adapter: parsed.values.lora });
    console.log(JSON.stringify({ model: spec, path, offline: true }));
    return;
  }
  const result = await pullRepo(spec, {
    include: parsed.values.include,
    adapter: parsed.values.lora,
    cache,
  });
  console.log(
    JSON.stringify({
      model: spec,
      commit: result.commit,
      path: result.dir,
      files: result.files,
      fetched: result.fetched,
    }),
  );
}
