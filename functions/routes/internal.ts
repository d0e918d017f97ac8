/**
 * The GPU host's internal routes, which edge gateways call (runtime/engine/remote.ts); mounted only when a shared
 * secret is configured, and answering only requests that carry it (`Authorization: Bearer <secret>`).
 *
 * - GET  /internal/v1/status     load (queue, running, KV cache), readiness and the model's facts (HostStatus)
 * - GET  /internal/v1/tokenizer  the tokenizer in its compact binary form, for gateways to load
 * - POST /internal/v1/generate   a prepared request (wire.ts) in, its image files decoded here, NDJSON token
 *                                frames out, unbuffered
 *
 * Errors leave as `{"error": message, "kind": ...}` (an error frame) with an HTTP status, so a gateway knows
 * whether another host may take the request.
 */
import { Hono, type MiddlewareHandler } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { timingSafeEqual } from "hono/utils/buffer";
import {
  type EncodedImage,
  EngineBusyError,
  EngineClosedError,
  type GenerateRequest,
  type RequestImage,
  RequestTooLongError,
  type TokenEvent,
} from "../../runtime/engine/engine.ts";
import { ImageError, ImageTooLargeError } from "../../runtime/images/errors.ts";
import { decodeImage } from "../../runtime/images/preprocess.ts";
import type { ImageInput } from "../../runtime/model/vision.ts";
import {
  BINARY,
  decodeRequest,
  encodeFrame,
  type ErrorKind,
  type Frame,
  type HostStatus,
  KEEP_ALIVE_MS,
  NDJSON,
  WEDGED_MS,
  WIRE_MAGIC,
  WireError,
} from "../../runtime/engine/wire.ts";
import { log } from "../../runtime/log.ts";
import type { Service } from "../service.ts";
import { allOrNone, imageOptions } from "../images/together.ts";
import { SharedWork } from "../images/shared.ts";
import { BODY_IDLE_MS, bodyBytes, BodyTimeoutError, BodyTooLargeError } from "../middleware/body.ts";

const encoder = new TextEncoder();
const NEWLINE = encoder.encode("\n");

function secretAuth(secret: string): MiddlewareHandler {
  return async (c, next) => {
    const match = /^Bearer\s+(.+)$/i.exec(c.req.header("authorization")?.trim() ?? "");
    if (match && await timingSafeEqual(match[1], secret)) return await next();
    return failure(c.req.path, 401, "unavailable", "the internal routes need the shared secret");
  };
}

function failure(
  path: string,
  status: ContentfulStatusCode,
  kind: ErrorKind,
  message: string,
  retryAfter?: number,
  image?: number,
): Response {
  if (kind === "internal") log.error("internal route failed", { path, error: message });
  const frame: Frame = {
    error: message,
    kind,
    ...(retryAfter ? { retryAfter } : {}),
    ...(image === undefined ? {} : { image }),
  };
  return new Response(encodeFrame(frame), { status, headers: { "content-type": NDJSON } });
}

/** How a failure of the engine travels: its kind and HTTP status. */
function classify(err: unknown): { kind: ErrorKind; status: ContentfulStatusCode; retryAfter?: number } {
  if (err instanceof ImageTooLargeError) return { kind: "bad_request", status: 413 };
  if (err instanceof WireError || err instanceof RangeError || err instanceof ImageError) {
    return { kind: "bad_request", status: 400 };
  }
  if (err instanceof RequestTooLongError) return { kind: "too_long", status: 400 };
  if (err instanceof EngineBusyError) return { kind: "busy", status: 429, retryAfter: err.retryAfterSeconds };
  if (err instanceof EngineClosedError) return { kind: "unavailable", status: 503 };
  return { kind: "internal", status: 500 };
}

/** The tokenizer's binary form and its hash, computed once per service. */
const tokenizers = new WeakMap<Service, Promise<{ bytes: Uint8Array<ArrayBuffer>; sha256: string }>>();
function tokenizerBlob(service: Service) {
  let blob = tokenizers.get(service);
  if (!blob) {
    blob = (async () => {
      const bytes = new Uint8Array(service.tokenizer.toCache());
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
      return { bytes, sha256: [...digest].map((b) => b.toString(16).padStart(2, "0")).join("") };
    })();
    tokenizers.set(service, blob);
  }
  return blob;
}

async function status(service: Service): Promise<HostStatus> {
  const { engine, images } = service;
  return {
    wire: WIRE_MAGIC,
    ready: engine !== undefined,
    ...(service.failure ? { failure: service.failure } : {}),
    model: { ...service.model },
    contextLength: engine?.contextLength ?? null,
    stats: engine?.stats() ?? null,
    vocabSize: service.tokenizer.vocabSize,
    images: {
      enabled: images.enabled,
      maxImages: images.maxImages,
      maxBytes: images.fetch.maxBytes,
      maxPixels: images.maxPixels,
      fetchUrls: images.fetch.fetchUrls,
      timeoutMs: images.fetch.timeoutMs,
      maxRedirects: images.fetch.maxRedirects,
      resize: images.resize,
      orientation: images.orientation,
      maxImageSize: images.maxImageSize,
      patchSize: images.patchSize,
      tokens: { ...images.tokens },
    },
    defaults: { ...service.defaults },
    tokenizer: (await tokenizerBlob(service)).sha256,
  };
}

/**
 * The request with its image files decoded (on the image threads, as the public routes decode), each checked to
 * have the grid the gateway laid its tokens out for; the engine takes images on trust. The first image that fails
 * ends the others' decoding.
 */
async function decodeImages(
  request: GenerateRequest<EncodedImage>,
  service: Service,
  decodes: SharedWork<RequestImage>,
  signal: AbortSignal,
): Promise<GenerateRequest<ImageInput>> {
  const { images } = request;
  const policy = service.images;
  if (images.length && !policy.enabled) {
    throw new WireError("this model has no vision encoder: the request has images");
  }
  if (images.length > policy.maxImages) {
    throw new WireError(`${images.length} images; this host takes at most ${policy.maxImages}`);
  }
  const patches = images.reduce((n, image) => n + image.rows * image.cols, 0);
  const slots = request.ids.reduce((n, id) => n + (id === policy.tokens.img ? 1 : 0), 0);
  if (slots !== patches) {
    throw new WireError(`the prompt has ${slots} image tokens for images of ${patches} patches`);
  }
  const decoded = await allOrNone(images, signal, async (image, i, each) => {
    try {
      if (image.bytes.length > policy.fetch.maxBytes) {
        throw new WireError(
          `image ${i + 1} has ${image.bytes.length} bytes; the limit is ${policy.fetch.maxBytes}`,
        );
      }
      const options = imageOptions(policy, image.resize, image.maxImageSize);
      const input = await decodes.run(
        image.bytes,
        options,
        each,
        (signal) => (policy.prepare ?? decodeImage)(image.bytes, options, signal),
      );
      if (!("pixels" in input)) throw new Error("this host's images are not decoded");
      if (input.rows !== image.rows || input.cols !== image.cols) {
        throw new WireError(
          `image ${
            i + 1
          } decodes to ${input.cols}x${input.rows} patches, not the gateway's ${image.cols}x${image.rows}`,
        );
      }
      return input;
    } catch (err) {
      // Which image: the gateway names its place in the client's request.
      if (err instanceof ImageError) Object.assign(err, { image: i });
      throw err;
    }
  });
  return { ...request, images: decoded };
}

/** The largest body a request for this model can need: a full context of ids and the most images. */
function maxBodyBytes(service: Service): number {
  const { maxImages, fetch } = service.images;
  const context = service.engine?.contextLength ?? 0;
  return 64 * 1024 + 4 * context + maxImages * (fetch.maxBytes + 4);
}

function generate(
  service: Service,
  request: GenerateRequest<ImageInput>,
  signal: AbortSignal,
  wedgedMs = WEDGED_MS,
): Response {
  const engine = service.engine!;
  const stream = engine.generate(request, signal);
  if (request.lora !== undefined) service.metrics.loraRequests.inc({ adapter: request.lora });
  const began = performance.now();
  let last: number | undefined;
  const observe = () => {
    const now = performance.now();
    if (last === undefined) service.metrics.timeToFirstToken.observe((now - began) / 1000);
    else service.metrics.interTokenLatency.observe((now - last) / 1000);
    last = now;
  };
  // Counted as they come, so that a request cut short counts what it computed.
  let prompted = false;
  const count = () => {
    service.metrics.generationTokens.inc({}, 1);
    if (!prompted) service.metrics.promptTokens.inc({}, request.ids.length);
    prompted = true;
  };
  // A keep-alive line after each KEEP_ALIVE_MS without a frame while the engine submits GPU work, so that the
  // gateway can tell this host from one that stopped answering or whose engine hangs (wire.ts).
  let wrote = performance.now(), keepAlive: ReturnType<typeof setInterval> | undefined;
  let submits = engine.stats().gpuSubmits, moved = performance.now();
  const stopKeepAlive = () => clearInterval(keepAlive);
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      keepAlive = setInterval(() => {
        const now = performance.now(), seen = engine.stats().gpuSubmits;
        if (seen !== submits) [submits, moved] = [seen, now];
        if (now - wrote < KEEP_ALIVE_MS || now - moved > wedgedMs) return;
        try {
          controller.enqueue(NEWLINE);
          wrote = performance.now();
        } catch {
          stopKeepAlive(); // the stream is closed
        }
      }, KEEP_ALIVE_MS / 2);
    },
    async pull(controller) {
      let frame: Frame;
      try {
        const next = await stream.next();
        if (next.done) {
          if (next.value === "stop") count();
          frame = { finish: next.value };
        } else {
          if (!next.value.stop) count(); // a stop token's frame carries only the prompt's scores
          observe();
          frame = { token: next.value as TokenEvent };
        }
      } catch (err) {
        if (signal.aborted) {
          stopKeepAlive();
          return controller.close();
        }
        const { kind, retryAfter } = classify(err);
        if (kind === "internal") {
          log.error("generation failed", { error: String((err as Error)?.stack ?? err) });
        }
        frame = { error: (err as Error).message ?? String(err), kind, ...(retryAfter ? { retryAfter } : {}) };
      }
      controller.enqueue(encoder.encode(encodeFrame(frame)));
      wrote = performance.now();
      if (!("token" in frame)) {
        stopKeepAlive();
        controller.close();
      }
    },
    async cancel() {
      stopKeepAlive();
      // The gateway went away: returning the generator cancels the sequence and frees its KV blocks.
      await stream.return("stop");
    },
  });
  return new Response(body, { headers: { "content-type": NDJSON, "cache-control": "no-store" } });
}

/** `wedgedMs`: see WEDGED_MS (tests shorten it). */
export function internalRoutes(
  service: Service,
  secret: string,
  options: { wedgedMs?: number; bodyIdleMs?: number } = {},
): Hono {
  // A request's n choices come as n requests with the same images: each decoded once.
  const decodes = new SharedWork<RequestImage>();
  return new Hono()
    .use("/internal/*", secretAuth(secret))
    .get("/internal/v1/status", async (c) => c.json(await status(service)))
    .get("/internal/v1/tokenizer", async () => {
      const { bytes, sha256 } = await tokenizerBlob(service);
      return new Response(bytes, { headers: { "content-type": BINARY, "x-tokenizer-sha256": sha256 } });
    })
    .post(
      "/internal/v1/generate",
      async (c) => {
        const path = c.req.path, signal = c.req.raw.signal;
        if (!service.engine) {
          return failure(path, 503, "unavailable", service.failure ?? "the model is loading");
        }
        try {
          const idleMs = options.bodyIdleMs ?? BODY_IDLE_MS;
          const body = await bodyBytes(c.req.raw, { maxBytes: maxBodyBytes(service), idleMs });
          const wired = decodeRequest(body.buffer as ArrayBuffer);
          // A full queue refuses at once, before the images take the host's CPU (the engine checks again).
          const { waiting, maxWaiting } = service.engine.stats();
          if (wired.images.length && maxWaiting !== undefined && waiting >= maxWaiting) {
            return failure(path, 429, "busy", `${waiting} sequences are already waiting`, 1);
          }
          const request = await decodeImages(wired, service, decodes, signal);
          return generate(service, request, signal, options.wedgedMs);
        } catch (err) {
          if (err instanceof BodyTooLargeError) {
            return failure(path, 413, "bad_request", "the body is larger than this model's largest request");
          }
          if (err instanceof BodyTimeoutError) return failure(path, 408, "bad_request", err.message);
          if (signal.aborted) return failure(path, 503, "unavailable", "the gateway left");
          const { kind, status, retryAfter } = classify(err);
          const image = (err as { image?: number }).image;
          return failure(path, status, kind, (err as Error).message ?? String(err), retryAfter, image);
        }
      },
    );
}
