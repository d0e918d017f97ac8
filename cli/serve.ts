/**
 * `pixtral serve`: the HTTP server. It listens at once (answering /health with 503 while the model loads), loads
 * the model onto the GPU, then serves the OpenAI- and Mistral-compatible API.
 */
import { createApp } from "../functions/app.ts";
import { MAX_BODY_BYTES } from "../functions/middleware/body.ts";
import { originCheck } from "../functions/middleware/cors.ts";
import { isLoopback } from "../functions/middleware/host_guard.ts";
import { inProcess } from "../functions/routes/sse.ts";
import { AddressAllowList } from "../functions/images/address.ts";
import { DEFAULT_IMAGE_FETCH } from "../functions/images/fetch.ts";
import { MAX_CHOICES } from "../functions/schema/chat.ts";
import type { Service } from "../functions/service.ts";
import { type ImageSettings, localService } from "./service.ts";
import { WorkerEngine, type WorkerLocalOptions } from "../runtime/engine/worker.ts";
import { findChatTemplate } from "../runtime/prompt/hf_template.ts";
import { ImagePool } from "../runtime/images/pool.ts";
import { DEFAULT_MAX_PIXELS } from "../runtime/images/preprocess.ts";
import { log } from "../runtime/log.ts";
import { closeModelFiles, type ModelOptions, openModelFiles, withLocalModel } from "../runtime/model/boot.ts";
import { parseSize } from "../runtime/model/offer.ts";
import { choice, parseFlags, parsePort, positiveInt, UsageError } from "./args.ts";
import { MODEL_FLAGS, modelOptions, modelUsage } from "./model_flags.ts";

export const usage = `pixtral serve [flags]

Serves Pixtral over HTTP: POST /v1/chat/completions (OpenAI and Mistral clients, images, streaming),
POST /v1/completions, POST /v1/responses, GET /v1/models, POST /tokenize, POST /detokenize, GET /health,
GET /metrics.

  --port N                  port (default $PORT or 8080; 0 picks a free one)
  --host ADDR               address to bind (default $HOST or 127.0.0.1; 0.0.0.0 for every interface)
  --allowed-host NAME       on loopback, answer to this name in Host besides addresses and localhost, as behind
                            a proxy that keeps it (repeatable; * for any): others are refused against DNS
                            rebinding
${modelUsage(28)}
  --lora-module NAME=PATH   a LoRA adapter applied per request: a request whose model is NAME runs with it, the
                            others without (repeatable; PATH as --lora's, whole-tensor, embedding and DoRA
                            adapters excepted; without NAME=, named after its folder)
  --served-model-name NAME  the model id clients use (default: the model folder's name)
  --api-key KEY             require this key (repeatable; also $PIXTRAL_API_KEY, comma-separated)
  --api-key-file FILE       require the keys in FILE, one per line
  --cors ORIGIN             allow browser requests from ORIGIN besides local pages' (repeatable; also
                            $PIXTRAL_CORS, comma-separated; * for any,
                            or in a host or port: https://*.example.com, chrome-extension://*; none: not
                            even local pages)
  --max-body SIZE           largest request body (default 256MiB)
  --body-timeout SECONDS    longest wait for the next part of a request body before a 408 (default 60)
  --max-images N            images per request (default 64)
  --max-image-bytes SIZE    size of one image (default 20MiB)
  --max-image-pixels N      pixels an image header may declare (default 50000000)
  --allow-image-host HOST   let image URLs reach this private host, address or CIDR range (repeatable)
  --no-image-urls           accept data: URLs only
  --image-resize MODE       mistral (default: OpenCV bicubic, as mistral_common and vLLM) or hf (Pillow)
  --image-orientation HOW   exif (default: turned as the photo's EXIF tag says, as viewers show it) or
                            ignore (as stored, as mistral_common reads it)
  --chat-template T         mistral (default: Mistral's instruct rules, as mistral_common), hf (the model
                            folder's Hugging Face chat template), or a .jinja file
  --temperature T           default temperature when a request gives none (default 0.7)
  --max-tokens N            a chat answer's most tokens when its request gives none (default: what the context
                            leaves, as OpenAI and vLLM; 512 for the built-in demo model)
  --max-queue N             sequences waiting beyond the free running places (a request's n choices count n)
                            before 429 (default 256, at least 16)
  --max-running N           sequences generated at once (default 64)
  --prefill-chunk N         prompt tokens per prefill step (default 512; 64 on a CPU adapter)
  --decode-steps N          decode steps run on the GPU between token readbacks (default 8; 1 streams every
                            token as soon as it exists, at a lower speed)
  --grammar-threads N       threads compiling and following structured outputs' grammars (default 2): a
                            compile holds the streams of its own thread only
  --image-threads N         threads decoding images (default 2), each image in at most 30 s: a large one
                            holds neither the server's event loop nor the images of more than its thread
  --no-prefix-cache         compute every prompt in full instead of reusing the KV cache of earlier prompts
                            that begin the same way (reuse starts at multiples of the prefill chunk)
  --grace SECONDS           on SIGINT/SIGTERM, time running requests get to finish (default 10)
  --internal-secret SECRET  serve the internal routes that edge gateways call (/internal/v1/*), to requests
                            carrying this secret (also $PIXTRAL_INTERNAL_SECRET; at least 16 characters)`;

export const SERVE_FLAGS = {
  ...MODEL_FLAGS,
  port: { type: "string" },
  host: { type: "string" },
  "allowed-host": { type: "string", multiple: true },
  "lora-module": { type: "string", multiple: true },
  "served-model-name": { type: "string" },
  "api-key": { type: "string", multiple: true },
  "api-key-file": { type: "string" },
  cors: { type: "string", multiple: true },
  "max-body": { type: "string" },
  "body-timeout": { type: "string" },
  "max-images": { type: "string" },
  "max-image-bytes": { type: "string" },
  "max-image-pixels": { type: "string" },
  "allow-image-host": { type: "string", multiple: true },
  "no-image-urls": { type: "boolean" },
  "no-prefix-cache": { type: "boolean" },
  "image-resize": { type: "string" },
  "image-orientation": { type: "string" },
  "chat-template": { type: "string" },
  temperature: { type: "string" },
  "max-tokens": { type: "string" },
  "max-queue": { type: "string" },
  "max-running": { type: "string" },
  "prefill-chunk": { type: "string" },
  "decode-steps": { type: "string" },
  "grammar-threads": { type: "string" },
  "image-threads": { type: "string" },
  grace: { type: "string" },
  "internal-secret": { type: "string" },
} as const;

/** A positive number of seconds, in milliseconds. */
function seconds(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!(value > 0 && value <= 86_400)) {
    throw new UsageError(`${flag} must be a number of seconds, got "${text}"`);
  }
  return value * 1000;
}

function size(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const bytes = parseSize(text);
  if (!bytes) throw new UsageError(`${flag} must be a size such as 10MB, got "${text}"`);
  return bytes;
}

/**
 * The API keys from --api-key, $PIXTRAL_API_KEY (comma-separated) and --api-key-file (a key per line; blank lines
 * and lines beginning with # skipped). A source given that holds no key is an error, an empty PIXTRAL_API_KEY too
 * (a compose file's `${KEY}` with KEY unset): the server would run without authentication where its operator
 * asked for it.
 */
export async function apiKeys(
  flags: { "api-key"?: string[]; "api-key-file"?: string },
  env = Deno.env.get("PIXTRAL_API_KEY"),
): Promise<string[]> {
  const clean = (list: string[]) => list.map((k) => k.trim()).filter(Boolean);
  const sources: [string, string[]][] = [];
  if (flags["api-key"]) sources.push(["--api-key", clean(flags["api-key"])]);
  if (env !== undefined) sources.push(["PIXTRAL_API_KEY", clean(env.split(","))]);
  const file = flags["api-key-file"];
  if (file !== undefined) {
    try {
      const lines = (await Deno.readTextFile(file)).split(/\r?\n/);
      sources.push([`--api-key-file ${file}`, clean(lines).filter((k) => !k.startsWith("#"))]);
    } catch (err) {
      throw new UsageError(`--api-key-file: ${(err as Error).message}`);
    }
  }
  const empty = sources.find(([, keys]) => keys.length === 0);
  if (empty) {
    throw new UsageError(`${empty[0]} holds no API key: the server would accept requests without one`);
  }
  return sources.flatMap(([, keys]) => keys);
}

export interface ServerConfig {
  port: number;
  hostname: string;
  /** Names besides addresses and localhost that requests may give in Host when listening on loopback. */
  allowedHosts?: string[];
  model: ModelOptions;
  servedName?: string;
  apiKeys: string[];
  corsOrigins?: string[];
  maxBodyBytes: number;
  /** Longest wait for the next part of a request body, in milliseconds. */
  bodyIdleMs?: number;
  images: ImageSettings;
  /** Threads decoding images (default 2). */
  imageThreads?: number;
  temperature: number;
  /** A chat answer's most tokens when its request gives none. */
  maxTokens?: number;
  /** "mistral" (default), "hf" (the model folder's template), or the path of a Jinja template. */
  chatTemplate?: string;
  engine: WorkerLocalOptions;
  graceSeconds: number;
  /** Shared secret of the internal routes for edge gateways; none: not served. */
  internalSecret?: string;
}

async function chatTemplate(
  choice: string | undefined,
  dir: string | undefined,
): Promise<string | undefined> {
  if (choice === undefined || choice === "mistral") return undefined;
  if (choice === "hf") {
    const template = dir ? await findChatTemplate(dir) : undefined;
    if (!template) {
      throw new UsageError(`--chat-template hf: the model folder ${dir ?? "(none)"} has no chat template`);
    }
    return template;
  }
  try {
    return await Deno.readTextFile(choice);
  } catch (err) {
    throw new UsageError(`--chat-template ${choice}: ${(err as Error).message}`);
  }
}

export interface RunningServer {
  /** Where it listens; "" when started without listening (startServer's `listen`). */
  url: string;
  service: Service;
  /** Answers a request in this process, as the server answers it over HTTP. */
  fetch(request: Request): Promise<Response>;
  /** Settles once the model serves (or failed to load: then `service.failure` says why). */
  ready: Promise<void>;
  /** Lets running requests finish (up to the grace period), then stops. */
  shutdown(): Promise<void>;
  /**
   * Resolves with why, if the server stops for good after it served: its engine (its GPU device was lost, its
   * worker died), or its listener (out of file descriptors).
   */
  failed: Promise<string>;
}

/**
 * Starts listening at once, then loads the model; /health answers 503 until it serves. `listen: false` (`pixtral
 * batch`): no port, requests come through `fetch`.
 */
export async function startServer(config: ServerConfig, listen = true): Promise<RunningServer> {
  // A hub model is pulled here, before listening, as vLLM does; the worker gets the local paths.
  const model = await withLocalModel(config.model);
  const files = await openModelFiles(model);
  const images = new ImagePool({ threads: config.imageThreads });
  let service: Service;
  try {
    service = localService(files, {
      servedName: config.servedName,
      images: { ...config.images, pool: images },
      temperature: config.temperature,
      maxTokens: config.maxTokens,
      chatTemplate: await chatTemplate(config.chatTemplate, files.location?.dir),
      quant: config.model.quant,
    });
  } catch (err) {
    images.close();
    throw err;
  } finally {
    closeModelFiles(files); // the worker opens its own
  }
  const id = service.model.id;
  if (files.demo) {
    log.warn(
      "no --model given: serving the built-in demo model, whose weights are RANDOM (its output is noise)",
      {
        model: id,
        hint: "deno task serve --model /path/to/Pixtral-12B-2409 (or hf:mistralai/Pixtral-12B-2409)",
      },
    );
  }

  // In process (a batch), requests come from no network: the guard against rebound names has nothing to guard.
  const guarded = listen && isLoopback(config.hostname);
  if (config.allowedHosts?.length && listen && !guarded) {
    log.warn("--allowed-host has no effect: listening beyond loopback, the server answers to any Host name", {
      host: config.hostname,
    });
  }
  const failed = Promise.withResolvers<string>();
  const app = createApp(service, {
    apiKeys: config.apiKeys,
    corsOrigins: config.corsOrigins,
    maxBodyBytes: config.maxBodyBytes,
    bodyIdleMs: config.bodyIdleMs,
    internalSecret: config.internalSecret,
    allowedHosts: guarded ? config.allowedHosts ?? [] : undefined,
    onFatal: (reason) => {
      log.error("stopping: a request left the server unable to answer", { error: reason });
      failed.resolve(reason);
    },
  });
  const listening = Promise.withResolvers<string>();
  let server: Deno.HttpServer | undefined;
  if (!listen) listening.resolve("");
  else {try {
      server = Deno.serve({
        port: config.port,
        hostname: config.hostname,
        onListen: (addr) => {
          const url = `http://${addr.hostname}:${addr.port}`;
          const keys = config.apiKeys.length;
          log.info("listening", { url, model: id, apiKeys: keys || "none: no authentication" });
          listening.resolve(url);
        },
      }, app.fetch);
    } catch (err) {
      images.close();
      const host = config.hostname.includes(":") ? `[${config.hostname}]` : config.hostname;
      throw new Error(
        `cannot listen on ${host}:${config.port} (--host, --port; $HOST, $PORT): ${(err as Error).message}`,
      );
    }}

  let stopping: Promise<void> | undefined;
  const stopLoading = new AbortController();
  // Deno's server stops accepting when an accept fails (no file descriptor left: Deno.serve closes no idle
  // connection and has no header timeout, so clients that hold connections open can use them all up). Its
  // rejection went unhandled and killed the process mid-answer; now the server shuts down in order and exits 1.
  server?.finished.catch((err) => {
    if (stopping) return;
    const reason = `the server stopped accepting connections: ${(err as Error).message}`;
    log.error(reason, {
      open: openFiles(),
      hint:
        "raise the open-file limit (ulimit -n), or serve behind a reverse proxy that closes idle connections",
    });
    failed.resolve(reason);
  });
  // The model runs in a worker thread, so that this one keeps serving /health, metrics and the streams while
  // the GPU works (see runtime/engine/worker.ts).
  const ready = WorkerEngine.start({
    model,
    engine: config.engine,
    signal: stopLoading.signal,
    onFailure: (reason) => {
      service.engine = undefined;
      service.failure = reason;
      log.error("the engine stopped; /health answers 503", { error: reason });
      failed.resolve(reason);
    },
  }).then((engine) => {
    if (stopping) return engine.close();
    service.engine = engine;
    service.model.loaded = engine.ready.weights;
    log.info("ready", {
      model: id,
      context: engine.contextLength,
      kvTokens: engine.ready.kvTokens,
      adapter: engine.ready.adapter,
      prefillChunk: engine.ready.prefillChunk,
    });
  }, (err) => {
    if (stopping) return;
    service.failure = (err as Error).message;
    log.error("the model failed to load; /health answers 503", { error: service.failure });
  });
  const shutdown = () =>
    stopping ??= (async () => {
      log.info("shutting down", { graceSeconds: config.graceSeconds });
      service.stopping = true;
      // Running streams get the grace period; then the engine cancels them and the server closes. A model still
      // loading is stopped.
      stopLoading.abort();
      const closing = service.engine?.close(config.graceSeconds * 1000);
      // Images still decoding end now: their requests would hold the server's shutdown past the grace period.
      images.close();
      // A listener that failed has nothing more to shut down.
      const closed = server?.shutdown().catch(() => {});
      await closing;
      // The answers the engine ended have a second to write their last words. Deno waits for every open request,
      // and one whose client stopped sending its body (it had its 408) until that client goes: not past that.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<void>((resolve) => timer = setTimeout(resolve, 1000));
      await Promise.race([closed, late]).finally(() => clearTimeout(timer));
    })();
  return {
    url: await listening.promise,
    service,
    fetch: async (request) => await app.fetch(inProcess(request)),
    ready,
    shutdown,
    failed: failed.promise,
  };
}

/** The process's open file descriptors, where /proc tells them. */
function openFiles(): number | undefined {
  try {
    return [...Deno.readDirSync("/proc/self/fd")].length;
  } catch {
    return undefined;
  }
}

/** How long a server whose engine failed waits for the engine's thread to end before it exits. */
const EXIT_GRACE_MS = 500;
/**
 * Images a request may hold: chat apps send a conversation's images again with every turn, and Pixtral takes any
 * number (the context bounds them: some 30 of 1024x1024), so this only guards the decoding work.
 */
const DEFAULT_MAX_IMAGES = 64;

/**
 * The origins of --cors and of $PIXTRAL_CORS (comma-separated, as Ollama's OLLAMA_ORIGINS and the edge gateway's),
 * checked here so that a wrong one is a usage error.
 */
export function corsOrigins(
  given: string[] | undefined,
  env = Deno.env.get("PIXTRAL_CORS"),
): string[] | undefined {
  const origins = [...given ?? [], ...(env ?? "").split(",").map((o) => o.trim()).filter(Boolean)];
  try {
    originCheck(origins);
  } catch (err) {
    throw new UsageError(`--cors${env ? " (or PIXTRAL_CORS)" : ""}: ${(err as Error).message}`);
  }
  return origins.length ? origins : undefined;
}

/** The server's configuration from serve's flags (and the environment variables they stand for). */
export async function serverConfig(
  flags: ReturnType<typeof parseFlags<typeof SERVE_FLAGS>>,
): Promise<ServerConfig> {
  const temperature = flags.temperature === undefined ? 0.7 : Number(flags.temperature);
  if (!(temperature >= 0 && temperature <= 2)) throw new UsageError("--temperature must be between 0 and 2");
  let allow: AddressAllowList;
  try {
    allow = new AddressAllowList(flags["allow-image-host"] ?? []);
  } catch (err) {
    throw new UsageError(`--allow-image-host: ${(err as Error).message}`);
  }
  const internalSecret = flags["internal-secret"] ?? (Deno.env.get("PIXTRAL_INTERNAL_SECRET") || undefined);
  if (internalSecret !== undefined && internalSecret.length < 16) {
    throw new UsageError("--internal-secret (or PIXTRAL_INTERNAL_SECRET) must be at least 16 characters");
  }
  const grace = flags.grace === undefined ? 10 : Number(flags.grace);
  if (!(grace >= 0)) throw new UsageError("--grace must be a number of seconds");
  return {
    port: flags.port !== undefined
      ? parsePort(flags.port, "--port")
      : parsePort(Deno.env.get("PORT") ?? "8080", "PORT"),
    hostname: flags.host ?? Deno.env.get("HOST") ?? "127.0.0.1",
    allowedHosts: flags["allowed-host"],
    model: { ...modelOptions(flags), loraModules: flags["lora-module"] },
    servedName: flags["served-model-name"],
    apiKeys: await apiKeys(flags),
    corsOrigins: corsOrigins(flags.cors),
    maxBodyBytes: size("--max-body", flags["max-body"], MAX_BODY_BYTES),
    bodyIdleMs: seconds("--body-timeout", flags["body-timeout"]),
    images: {
      maxImages: positiveInt("--max-images", flags["max-images"]) ?? DEFAULT_MAX_IMAGES,
      maxBytes: size("--max-image-bytes", flags["max-image-bytes"], DEFAULT_IMAGE_FETCH.maxBytes),
      maxPixels: positiveInt("--max-image-pixels", flags["max-image-pixels"]) ?? DEFAULT_MAX_PIXELS,
      allow,
      fetchUrls: !flags["no-image-urls"],
      resize: choice("--image-resize", flags["image-resize"], ["mistral", "hf"] as const) ?? "mistral",
      orientation: choice("--image-orientation", flags["image-orientation"], ["exif", "ignore"] as const) ??
        "exif",
    },
    imageThreads: positiveInt("--image-threads", flags["image-threads"]),
    temperature,
    maxTokens: positiveInt("--max-tokens", flags["max-tokens"]),
    chatTemplate: flags["chat-template"],
    engine: {
      // At least one request's choices: a request asking for n = 16 must fit an empty queue.
      maxQueue: positiveInt("--max-queue", flags["max-queue"], MAX_CHOICES),
      maxRunning: positiveInt("--max-running", flags["max-running"]),
      prefillChunk: positiveInt("--prefill-chunk", flags["prefill-chunk"]),
      decodeSteps: positiveInt("--decode-steps", flags["decode-steps"]),
      grammarThreads: positiveInt("--grammar-threads", flags["grammar-threads"]),
      prefixCache: !flags["no-prefix-cache"],
    },
    graceSeconds: grace,
    internalSecret,
  };
}

export async function serve(argv: string[]): Promise<void> {
  const server = await startServer(await serverConfig(parseFlags(argv, SERVE_FLAGS)));
  const stopped = Promise.withResolvers<void>();
  const onSignal = () => server.shutdown().then(stopped.resolve);
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  // A server whose engine is gone, or whose model failed to load, answers nothing but 503: it exits (status 1),
  // so that a supervisor (systemd, a container's restart policy) sees it and starts it again, as vLLM's server
  // does when its engine dies.
  const loadFailed = server.ready.then(() =>
    server.service.failure === undefined || server.service.engine
      ? new Promise<never>(() => {})
      : `the model failed to load: ${server.service.failure}`
  );
  const failure = await Promise.race([stopped.promise, server.failed, loadFailed]);
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
  if (failure !== undefined) {
    await server.shutdown();
    // The engine thread, which held a GPU device, ends on its own: exiting while it does crashed in Mesa's
    // lavapipe now and then (measured after a failed load: 1 run in 20; with this wait, none in 20).
    await new Promise((resolve) => setTimeout(resolve, EXIT_GRACE_MS));
    throw new Error(`${failure}; exiting`);
  }
}
