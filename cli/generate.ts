/** `pixtral generate`: one prompt (with images) through the engine, the answer streamed to stdout. */
import { encodeChat } from "../functions/chat/prepare.ts";
import { AddressAllowList } from "../functions/images/address.ts";
import { GREEDY } from "../runtime/engine/engine.ts";
import { LocalEngine } from "../runtime/engine/local.ts";
import { DEFAULT_MAX_PIXELS } from "../runtime/images/preprocess.ts";
import { loadModel, openModelFiles, withLocalModel } from "../runtime/model/boot.ts";
import { parseFlags, positiveInt, UsageError } from "./args.ts";
import { MODEL_FLAGS, modelOptions, modelUsage } from "./model_flags.ts";
import { localService } from "./service.ts";

export const usage = `pixtral generate --prompt TEXT [--image FILE ...] [flags]

Prints the model's answer to one user message (Mistral's instruct format), as it is generated.

  --prompt TEXT         the user message
  --image FILE          an image to send before the text (repeatable)
  --system TEXT         a system prompt
  --max-tokens N        tokens to generate at most (default 256)
  --temperature T       0 (default) is greedy
  --top-p P             nucleus sampling (default 1)
  --seed S              the random stream for sampling
${modelUsage()}`;

const encoder = new TextEncoder();

export async function generate(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, {
    ...MODEL_FLAGS,
    prompt: { type: "string" },
    image: { type: "string", multiple: true },
    system: { type: "string" },
    "max-tokens": { type: "string" },
    temperature: { type: "string" },
    "top-p": { type: "string" },
    seed: { type: "string" },
  });
  if (flags.prompt === undefined) throw new UsageError("--prompt TEXT is required");
  const number = (flag: string, text: string | undefined, fallback: number) => {
    const value = text === undefined ? fallback : Number(text);
    if (!Number.isFinite(value) || value < 0) {
      throw new UsageError(`${flag} must be a number >= 0, got "${text}"`);
    }
    return value;
  };
  const options = modelOptions(flags);
  const sampling = {
    ...GREEDY,
    temperature: number("--temperature", flags.temperature, 0),
    topP: number("--top-p", flags["top-p"], 1),
    seed: flags.seed === undefined ? undefined : number("--seed", flags.seed, 0),
  };
  if (sampling.topP === 0 || sampling.topP > 1) throw new UsageError("--top-p must be in (0, 1]");
  if (sampling.seed !== undefined && !Number.isSafeInteger(sampling.seed)) {
    throw new UsageError(`--seed must be an integer, got "${flags.seed}"`);
  }
  const maxTokens = positiveInt("--max-tokens", flags["max-tokens"]) ?? 256;
  const files = await openModelFiles(await withLocalModel(options));
  const images = await Promise.all((flags.image ?? []).map(async (path) => {
    const bytes = await Deno.readFile(path);
    return { type: "image_url" as const, image_url: `data:image/png;base64,${bytes.toBase64()}` };
  }));
  const { tokenizer } = files;
  // The same preparation as the HTTP API, on a service without an engine yet.
  const service = localService(files, {
    images: {
      maxImages: Infinity,
      maxBytes: Infinity,
      maxPixels: DEFAULT_MAX_PIXELS,
      allow: new AddressAllowList(),
      fetchUrls: false,
      resize: "mistral",
      // As `serve` turns them: a phone's photo is seen as its owner sees it.
      orientation: "exif",
    },
    temperature: 0,
  });
  const messages = [
    ...(flags.system ? [{ role: "system" as const, content: flags.system }] : []),
    { role: "user" as const, content: [...images, { type: "text" as const, text: flags.prompt }] },
  ];
  const prompt = await encodeChat(messages, service);
  options.ctx ??= Math.ceil((prompt.ids.length + maxTokens) / 16) * 16;
  const { model } = await loadModel(files, options);
  const engine = new LocalEngine(model);
  try {
    const decoder = tokenizer.decoder();
    const stream = engine.generate({
      ids: prompt.ids,
      images: prompt.images,
      sampling,
      maxTokens,
      stopIds: [tokenizer.special("</s>")],
    });
    for await (const token of stream) await Deno.stdout.write(encoder.encode(decoder.push(token.id)));
    await Deno.stdout.write(encoder.encode(decoder.flush() + "\n"));
  } finally {
    await engine.close();
  }
}
