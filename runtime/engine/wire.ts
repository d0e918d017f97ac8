/**
 * What crosses the wire between an edge gateway (RemoteEngine) and a GPU host's internal route: a prepared
 * GenerateRequest in a compact binary body, and the token stream back as NDJSON frames.
 *
 * Request body, little-endian:
 *
 *     "PXG8"                  magic and version
 *     u32 H                   length of the header
 *     H bytes                 header, JSON: sampling, maxTokens, minTokens, stopIds, topLogprobs, the output
 *                             format, its trigger and alternative, banned ids, the LoRA adapter, and per
 *                             image its patch grid, resize mode and file size (RequestHeader)
 *     0-3 bytes               padding to a multiple of 4
 *     u32 × header.ids        the prompt's token ids
 *     per image               its file as the client sent it (PNG, JPEG, ...), padded to a multiple of 4 bytes
 *
 * Images travel as files, which the host decodes on its image threads: the gateway reads only their headers to
 * lay out their tokens (a 1024×1024 image would be 12 MiB of f32 pixels, and decoding one can take seconds of
 * CPU that an edge isolate, with no threads and a CPU budget, does not have). The ids travel as a raw array; the
 * few settings as JSON, where a number keeps all of its 64 bits.
 *
 * Response: one JSON object per line, flushed as produced:
 *
 *     {"id":17}                                          a token
 *     {"id":17,"logprob":-0.25,"top":[[17,-0.25],...]}   a token with log-probabilities (when asked for)
 *     {"id":17,"cached":512}                             a first token, after prompt tokens the cache gave
 *     {"finish":"stop"}                                  the end ("stop" or "length"); nothing follows
 *     {"error":"...","kind":"internal"}                  a failure; nothing follows
 *     {"error":"...","kind":"bad_request","image":1}     a failure of the request's image 1 (from 0)
 *
 * A stream that ends without a finish or error frame was cut off (the host died): the gateway treats it as a
 * failure, never as a finished generation. An empty line is a keep-alive: the host sends one after each
 * KEEP_ALIVE_MS without a frame (a long prefill, a full queue) while its engine works (WEDGED_MS), so that a
 * gateway can tell a host that stopped answering, or whose engine hangs (STALL_MS without a byte), from one still
 * working.
 */
import { z } from "zod";
import { choiceFormat, grammarFormat, MAX_SCHEMA_BYTES, regexFormat } from "../grammar/format.ts";
import type {
  EncodedImage,
  EngineStats,
  FinishReason,
  GenerateRequest,
  Sampling,
  TokenEvent,
} from "./engine.ts";
import { MAX_BIASED, MAX_TOP_LOGPROBS } from "./validate.ts";

export const WIRE_MAGIC = "PXG8";
export const NDJSON = "application/x-ndjson";
export const BINARY = "application/octet-stream";

/** A body that is not a valid request; the message says what is wrong with it. */
export class WireError extends Error {
  override name = "WireError";
}

// Typed arrays use the platform's byte order, the wire's is little-endian: every platform this runs on.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error("the wire format needs a little-endian platform");
}

const samplingSchema = z.strictObject({
  temperature: z.number().min(0),
  topP: z.number().gt(0).max(1),
  topK: z.number().int().min(0),
  minP: z.number().min(0).max(1),
  presencePenalty: z.number(),
  frequencyPenalty: z.number(),
  repetitionPenalty: z.number().gt(0),
  seed: z.number().int().min(0).max(0xffff_ffff).optional(),
  bias: z.strictObject({
    ids: z.array(z.number().int().min(0).max(0xffff_ffff)).max(MAX_BIASED),
    values: z.array(z.number()).max(MAX_BIASED),
  }).optional(),
});

const u32 = z.number().int().min(0).max(0xffff_ffff);
/** Banned ids a request may carry (the server bans a few control tokens; this only bounds the header). */
const MAX_BANNED = 1024;

const outputFormat = z.strictObject({
  schema: z.string().max(MAX_SCHEMA_BYTES),
  strict: z.boolean(),
  kind: z.enum(["choice", "regex", "grammar"]).optional(),
}).refine(
  (format) => {
    // A choice, a regex or a grammar is checked as the HTTP layer checks it: the grammar engine takes it as it comes.
    try {
      if (format.kind === "choice") choiceFormat(JSON.parse(format.schema));
      if (format.kind === "regex") regexFormat(format.schema);
      if (format.kind === "grammar") grammarFormat(format.schema);
      return true;
    } catch {
      return false;
    }
  },
  "a format's schema must be what its kind says and what this server takes: a list of choices, a pattern, a " +
    "grammar",
);

const headerSchema = z.strictObject({
  ids: u32,
  stopIds: z.array(u32),
  maxTokens: z.number().int().min(1),
  topLogprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).optional(),
  format: outputFormat.optional(),
  orElse: outputFormat.optional(),
  banned: z.array(u32).max(MAX_BANNED).optional(),
  trigger: u32.optional(),
  minTokens: z.number().int().min(0).optional(),
  promptLogprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).optional(),
  lora: z.string().min(1).max(256).optional(),
  sampling: samplingSchema,
  images: z.array(z.strictObject({
    rows: z.number().int().min(1),
    cols: z.number().int().min(1),
    resize: z.enum(["mistral", "hf"]),
    maxImageSize: z.number().int().min(1).optional(),
    bytes: z.number().int().min(1),
  })),
});

type RequestHeader = z.infer<typeof headerSchema>;

const pad4 = (n: number) => (n + 3) & ~3;

/**
 * The request as the parts of a body for the internal route, in order: its header and ids, then each image's file
 * (the request's own bytes, not a copy: the `n` choices of a request, each a request of its own, send one copy of
 * the images between them) padded to 4 bytes.
 */
export function requestParts(request: GenerateRequest<EncodedImage>): Uint8Array[] {
  const sampling: Sampling = { ...request.sampling };
  if (sampling.seed === undefined) delete sampling.seed;
  if (!sampling.bias?.ids.length) delete sampling.bias;
  const header: RequestHeader = {
    ids: request.ids.length,
    stopIds: [...request.stopIds],
    maxTokens: request.maxTokens,
    ...(request.topLogprobs === undefined ? {} : { topLogprobs: request.topLogprobs }),
    ...(request.format === undefined ? {} : { format: request.format }),
    ...(request.banned?.length ? { banned: [...request.banned] } : {}),
    ...(request.trigger === undefined ? {} : { trigger: request.trigger }),
    ...(request.orElse === undefined ? {} : { orElse: request.orElse }),
    ...(request.minTokens ? { minTokens: request.minTokens } : {}),
    ...(request.promptLogprobs === undefined ? {} : { promptLogprobs: request.promptLogprobs }),
    ...(request.lora === undefined ? {} : { lora: request.lora }),
    sampling,
    images: request.images.map((i) => ({
      rows: i.rows,
      cols: i.cols,
      resize: i.resize,
      ...i.maxImageSize ? { maxImageSize: i.maxImageSize } : {},
      bytes: i.bytes.length,
    })),
  };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const idsAt = pad4(8 + json.length);
  const head = new Uint8Array(idsAt + 4 * request.ids.length);
  head.set(new TextEncoder().encode(WIRE_MAGIC));
  new DataView(head.buffer).setUint32(4, json.length, true);
  head.set(json, 8);
  new Uint32Array(head.buffer, idsAt, request.ids.length).set(request.ids);
  return [
    head,
    ...request.images.flatMap(({ bytes }) => {
      const pad = pad4(bytes.length) - bytes.length;
      return pad ? [bytes, new Uint8Array(pad)] : [bytes];
    }),
  ];
}

/**
 * A request from its body. Checks the body's own consistency (sizes, types, ranges); whether the ids and images
 * fit the model is the engine's and the route's to check. Image files are views into `body`, not copies.
 */
export function decodeRequest(body: ArrayBuffer): GenerateRequest<EncodedImage> {
  const bytes = new Uint8Array(body);
  if (bytes.length < 8 || new TextDecoder().decode(bytes.subarray(0, 4)) !== WIRE_MAGIC) {
    throw new WireError(`the body is not a generate request (it must start with "${WIRE_MAGIC}")`);
  }
  const length = new DataView(body).getUint32(4, true);
  if (8 + length > bytes.length) throw new WireError("the body ends inside its header");
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + length)));
  } catch (err) {
    throw new WireError(`the request header is not JSON: ${(err as Error).message}`);
  }
  const checked = headerSchema.safeParse(parsed);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    throw new WireError(
      `the request header is invalid at ${issue.path.join(".") || "the top"}: ${issue.message}`,
    );
  }
  const header = checked.data;
  let at = pad4(8 + length);
  const take = (bytes: number, what: string) => {
    if (at + bytes > body.byteLength) throw new WireError(`the body ends inside ${what}`);
    const start = at;
    at = pad4(at + bytes);
    return start;
  };
  const ids = new Uint32Array(body, take(4 * header.ids, "the token ids"), header.ids);
  const images = header.images.map(({ rows, cols, resize, maxImageSize, bytes }, i): EncodedImage => {
    const start = take(bytes, `image ${i}`);
    return {
      rows,
      cols,
      resize,
      ...maxImageSize ? { maxImageSize } : {},
      bytes: new Uint8Array(body, start, bytes),
    };
  });
  if (at !== body.byteLength) {
    throw new WireError(`the body has ${body.byteLength - at} bytes after its last image`);
  }
  return {
    ids: [...ids],
    images,
    sampling: header.sampling,
    maxTokens: header.maxTokens,
    stopIds: header.stopIds,
    topLogprobs: header.topLogprobs,
    ...(header.format === undefined ? {} : { format: header.format }),
    ...(header.banned === undefined ? {} : { banned: header.banned }),
    ...(header.trigger === undefined ? {} : { trigger: header.trigger }),
    ...(header.orElse === undefined ? {} : { orElse: header.orElse }),
    ...(header.minTokens === undefined ? {} : { minTokens: header.minTokens }),
    ...(header.promptLogprobs === undefined ? {} : { promptLogprobs: header.promptLogprobs }),
    ...(header.lora === undefined ? {} : { lora: header.lora }),
  };
}

/** Why a host failed a request: whether another host may take it, and which HTTP error it becomes. */
export type ErrorKind =
  /** The request itself is wrong (no host would take it). */
  | "bad_request"
  /** Prompt plus max tokens exceed the host's context. */
  | "too_long"
  /** The host's queue is full. */
  | "busy"
  /** The host is loading, closing, or has no model. */
  | "unavailable"
  /** Anything else on the host. */
  | "internal";

export type Frame =
  | { token: TokenEvent }
  | { finish: FinishReason }
  | { error: string; kind: ErrorKind; retryAfter?: number; image?: number };

/** One frame as a line of NDJSON. */
export function encodeFrame(frame: Frame): string {
  if ("token" in frame) {
    const { id, logprob, top, prompt, cached, stop } = frame.token;
    if (logprob === undefined && !prompt && !cached) return `{"id":${id}}\n`;
    const pairs = (list: { id: number; logprob: number }[]) => list.map((t) => [t.id, t.logprob]);
    return JSON.stringify({
      id,
      ...(logprob === undefined ? {} : { logprob }),
      ...(top ? { top: pairs(top) } : {}),
      ...(prompt ? { prompt: prompt.map((p) => p.top ? [p.logprob, pairs(p.top)] : [p.logprob]) } : {}),
      ...(cached ? { cached } : {}),
      ...(stop ? { stop } : {}),
    }) + "\n";
  }
  return JSON.stringify(frame) + "\n";
}

const frameSchema = z.union([
  z.strictObject({
    id: u32,
    logprob: z.number().optional(),
    top: z.array(z.tuple([u32, z.number()])).optional(),
    prompt: z.array(
      z.union([z.tuple([z.number()]), z.tuple([z.number(), z.array(z.tuple([u32, z.number()]))])]),
    )
      .optional(),
    cached: u32.optional(),
    stop: z.literal(true).optional(),
  }),
  z.strictObject({ finish: z.enum(["stop", "length"]) }),
  z.strictObject({
    error: z.string(),
    kind: z.enum(["bad_request", "too_long", "busy", "unavailable", "internal"]),
    retryAfter: z.number().optional(),
    image: u32.optional(),
  }),
]);

export function decodeFrame(line: string): Frame {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    throw new WireError(`a stream frame is not JSON: ${line.slice(0, 80)}`);
  }
  const checked = frameSchema.safeParse(parsed);
  if (!checked.success) throw new WireError(`not a stream frame: ${line.slice(0, 80)}`);
  const frame = checked.data;
  if ("finish" in frame || "error" in frame) return frame;
  const token: TokenEvent = { id: frame.id };
  if (frame.logprob !== undefined) token.logprob = frame.logprob;
  if (frame.top) token.top = frame.top.map(([id, logprob]) => ({ id, logprob }));
  if (frame.prompt) {
    token.prompt = frame.prompt.map(([logprob, top]) =>
      top ? { logprob, top: top.map(([id, lp]) => ({ id, logprob: lp })) } : { logprob }
    );
  }
  if (frame.cached) token.cached = frame.cached;
  if (frame.stop) token.stop = true;
  return { token };
}

/** How often a host sends a keep-alive line while a request has no frame to send. */
export const KEEP_ALIVE_MS = 1000;
/** Time without a byte from a host after which its response is taken for dead. */
export const STALL_MS = 15_000;
/**
 * Time a host's engine may submit no GPU work while a request waits on it before the host stops sending that
 * request keep-alive lines (its engine hangs: the gateway then sees the silence). Far above any step, grammar
 * compile or image encode (lavapipe submits those in parts of ~50 ms).
 */
export const WEDGED_MS = 30_000;

/** The frames of a response body, as they arrive; a line cut off by the end of the body is an error. */
export async function* readFrames(body: AsyncIterable<Uint8Array>): AsyncGenerator<Frame> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const bytes of body) {
    buffered += decoder.decode(bytes, { stream: true });
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      if (line) yield decodeFrame(line);
    }
  }
  buffered += decoder.decode();
  if (buffered) throw new WireError("the stream ended inside a frame");
}

/** What a GPU host reports about itself (GET /internal/v1/status): the router's load signal and model facts. */
export interface HostStatus {
  /** The wire format the host speaks (WIRE_MAGIC). */
  wire: string;
  /** Whether the model is loaded and taking requests. */
  ready: boolean;
  /** Why loading failed, when it did. */
  failure?: string;
  model: {
    id: string;
    aliases: string[];
    created: number;
    demo: boolean;
    description: string;
    format?: string;
    quantization?: string;
    /** The weights in all, and once loaded their bytes on the GPU and format (see ModelInfo). */
    parameters?: number;
    loaded?: { bytes: number; format: string };
    /** The LoRA adapters served per request (see ModelInfo). */
    loras?: string[];
  };
  /** Null while loading. */
  contextLength: number | null;
  stats: EngineStats | null;
  vocabSize: number;
  images: {
    enabled: boolean;
    maxImages: number;
    maxBytes: number;
    maxPixels: number;
    fetchUrls: boolean;
    timeoutMs: number;
    maxRedirects: number;
    resize: "mistral" | "hf";
    orientation: "exif" | "ignore";
    maxImageSize: number;
    patchSize: number;
    tokens: { img: number; imgBreak: number; imgEnd: number };
  };
  defaults: { temperature: number; topP: number; maxTokens?: number };
  /** SHA-256 (hex) of the tokenizer that GET /internal/v1/tokenizer serves. */
  tokenizer: string;
}

const count = z.number().int().min(0);
const statusSchema = z.object({
  wire: z.string(),
  ready: z.boolean(),
  failure: z.string().optional(),
  model: z.object({
    id: z.string(),
    aliases: z.array(z.string()),
    created: z.number(),
    demo: z.boolean(),
    description: z.string(),
    format: z.string().optional(),
    quantization: z.string().optional(),
    parameters: z.number().optional(),
    loaded: z.object({ bytes: z.number(), format: z.string() }).optional(),
    loras: z.array(z.string()).optional(),
  }),
  contextLength: z.number().int().positive().nullable(),
  stats: z.object({
    waiting: count,
    maxWaiting: count.optional(),
    running: count,
    kvUsage: z.number().min(0).max(1),
    kvBlocks: count,
    kvBlocksUsed: count,
    prefixHitTokens: count.optional(),
    preemptions: count.optional(),
  }).nullable(),
  vocabSize: z.number().int().positive(),
  images: z.object({
    enabled: z.boolean(),
    maxImages: count,
    maxBytes: count,
    maxPixels: count,
    fetchUrls: z.boolean(),
    timeoutMs: count,
    maxRedirects: count,
    resize: z.enum(["mistral", "hf"]),
    orientation: z.enum(["exif", "ignore"]),
    maxImageSize: z.number().int().positive(),
    patchSize: z.number().int().positive(),
    tokens: z.object({ img: count, imgBreak: count, imgEnd: count }),
  }),
  defaults: z.object({ temperature: z.number(), topP: z.number(), maxTokens: count.optional() }),
  tokenizer: z.string(),
}).refine((s) => !s.ready || (s.contextLength !== null && s.stats !== null), {
  message: "a ready host reports its context and load",
});

/** A host's status as it sent it, checked: one that is malformed could not be routed to. */
export function decodeStatus(value: unknown): HostStatus {
  const checked = statusSchema.safeParse(value);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    throw new WireError(`its status is malformed: ${issue.path.join(".") || "status"}: ${issue.message}`);
  }
  return checked.data;
}
