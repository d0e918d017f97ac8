/**
 * The edge gateway (Cloudflare Workers and workerd, Deno Deploy, `deno serve`), bundled by `deno task build`:
 * the same Hono app as a GPU host, whose engine is a RemoteEngine over a pool of GPU hosts. Requests are
 * validated, authenticated, their images fetched and measured (their headers give their token layout) and their
 * messages tokenized here, with the WASM module; the ids and the image files travel on to a GPU host, which
 * decodes the images on its threads: decoding can take seconds of CPU, which an isolate has neither the threads
 * nor the budget for.
 *
 * Configuration comes from environment bindings (wrangler.toml `[vars]` and secrets, or the process
 * environment under Deno):
 *
 * | variable                   | meaning                                                                  |
 * | -------------------------- | ------------------------------------------------------------------------ |
 * | `PIXTRAL_GPU_HOSTS`        | GPU host base URLs, comma- or space-separated (required)                 |
 * | `PIXTRAL_INTERNAL_SECRET`  | the hosts' `--internal-secret` (required)                                |
 * | `PIXTRAL_API_KEY`          | API keys clients must send, comma-separated (none: no authentication)    |
 * | `PIXTRAL_CORS`             | origins allowed by CORS, comma-separated (`*` for any, or in a host/port) |
 * | `PIXTRAL_MAX_BODY`         | largest request body (default 64MiB: an isolate has 128 MB of memory)   |
 * | `PIXTRAL_ALLOW_IMAGE_HOST` | private hosts, addresses or CIDR ranges image URLs may reach             |
 * | `PIXTRAL_DOH_URL`          | DNS-over-HTTPS resolver where the runtime has no DNS API (workerd)       |
 *
 * Everything about the model (its id, context, image settings, sampling defaults) and the tokenizer come from
 * the GPU hosts at the isolate's first request: the tokenizer in its compact binary form (~3.5 MB for Tekken,
 * loaded in milliseconds), so the bundle stays small and can never disagree with the hosts' model.
 */
import type { Hono } from "hono";
import { EngineUnavailableError } from "../runtime/engine/engine.ts";
import { RemoteEngine, SecretRefusedError } from "../runtime/engine/remote.ts";
import { log } from "../runtime/log.ts";
import { parseSize } from "../runtime/model/offer.ts";
import { Tokenizer } from "../runtime/tokenizer/tokenizer.ts";
import { encodedImage } from "../runtime/images/preprocess.ts";
import { loadWasm } from "../runtime/wasm.ts";
import { createApp } from "./app.ts";
import { type ApiErrorBody, isAnthropicPath, isOllamaPath } from "./errors.ts";
import { AddressAllowList } from "./images/address.ts";
import { DEFAULT_IMAGE_FETCH } from "./images/fetch.ts";
import { dohResolver } from "./images/resolve.ts";
import { createMetrics } from "./metrics.ts";
import type { Service } from "./service.ts";

export type EdgeEnv = Record<string, string | undefined>;

const DEFAULT_DOH = "https://cloudflare-dns.com/dns-query";
/** 64 MiB, below the GPU hosts' 256: an isolate has 128 MB of memory. */
const EDGE_MAX_BODY_BYTES = 64 * 1024 * 1024;

/** A misconfigured gateway: the message names the variable to fix. */
class ConfigError extends Error {
  override name = "ConfigError";
}

const list = (text: string | undefined) => (text ?? "").split(/[\s,]+/).filter(Boolean);

function required(env: EdgeEnv, name: string): string {
  const value = env[name]?.trim();
  if (!value) throw new ConfigError(`the gateway is not configured: set ${name}`);
  return value;
}

/** Builds the gateway: asks the hosts for the model's facts and the tokenizer, then assembles the app. */
async function startGateway(
  wasm: WebAssembly.Module,
  env: EdgeEnv,
): Promise<{ app: Hono; engine: RemoteEngine }> {
  const started = performance.now();
  const hosts = list(required(env, "PIXTRAL_GPU_HOSTS"));
  const secret = required(env, "PIXTRAL_INTERNAL_SECRET");
  const maxBody = env.PIXTRAL_MAX_BODY ? parseSize(env.PIXTRAL_MAX_BODY) : EDGE_MAX_BODY_BYTES;
  if (!maxBody) throw new ConfigError(`PIXTRAL_MAX_BODY must be a size such as 64MiB`);
  let allow: AddressAllowList;
  try {
    allow = new AddressAllowList(list(env.PIXTRAL_ALLOW_IMAGE_HOST));
  } catch (err) {
    throw new ConfigError(`PIXTRAL_ALLOW_IMAGE_HOST: ${(err as Error).message}`);
  }
  let engine: RemoteEngine;
  try {
    engine = new RemoteEngine({ hosts, secret });
  } catch (err) {
    throw new ConfigError(`PIXTRAL_GPU_HOSTS: ${(err as Error).message}`);
  }

  const [, host] = await Promise.all([loadWasm(wasm), engine.start()]);
  const wasmReady = performance.now();
  const tokenizer = await Tokenizer.fromCache(await engine.tokenizer());
  const hasDns = typeof (globalThis as { Deno?: { resolveDns?: unknown } }).Deno?.resolveDns === "function";
  const service: Service = {
    model: host.model,
    engine,
    tokenizer,
    images: {
      enabled: host.images.enabled,
      maxImages: host.images.maxImages,
      fetch: {
        ...DEFAULT_IMAGE_FETCH,
        maxBytes: host.images.maxBytes,
        timeoutMs: host.images.timeoutMs,
        maxRedirects: host.images.maxRedirects,
        fetchUrls: host.images.fetchUrls,
        allow,
        resolve: hasDns ? undefined : dohResolver(env.PIXTRAL_DOH_URL ?? DEFAULT_DOH),
      },
      resize: host.images.resize,
      orientation: host.images.orientation,
      maxImageSize: host.images.maxImageSize,
      patchSize: host.images.patchSize,
      maxPixels: host.images.maxPixels,
      tokens: host.images.tokens,
      prepare: encodedImage,
    },
    defaults: host.defaults,
    metrics: createMetrics(() => engine),
  };
  service.metrics.registry.register(engine.retries);
  log.info("gateway ready", {
    model: host.model.id,
    hosts: engine.health(),
    context: engine.contextLength,
    hostsAndWasmMs: Math.round(wasmReady - started),
    tokenizerMs: Math.round(performance.now() - wasmReady),
  });
  const app = createApp(service, {
    apiKeys: list(env.PIXTRAL_API_KEY),
    corsOrigins: list(env.PIXTRAL_CORS),
    // Public: a page on a visitor's own machine is no nearer to it than any other site.
    localOrigins: false,
    maxBodyBytes: maxBody,
  });
  return { app, engine };
}

/** Bindings as workerd passes them (`fetch(request, env)`), else the process environment (Deno). */
function environment(env: unknown): EdgeEnv {
  const deno = (globalThis as { Deno?: { env: { toObject(): EdgeEnv } } }).Deno;
  if (env && typeof env === "object" && "PIXTRAL_GPU_HOSTS" in env) return env as EdgeEnv;
  try {
    return deno?.env.toObject() ?? {};
  } catch {
    return {}; // no permission to read the environment
  }
}

/** The gateway's own failure, in the shape of the API asked (Anthropic's on the Messages routes). */
function failure(request: Request, status: 500 | 503, message: string, code: string): Response {
  const headers: Record<string, string> = status === 503 ? { "retry-after": "1" } : {};
  const path = new URL(request.url).pathname;
  if (isOllamaPath(path)) return Response.json({ error: message }, { status, headers });
  if (isAnthropicPath(path)) {
    const type = status === 503 ? "overloaded_error" : "api_error";
    return Response.json({ type: "error", error: { type, message } }, { status, headers });
  }
  const type = status === 503 ? "service_unavailable" : "server_error";
  const body: ApiErrorBody = { error: { message, type, param: null, code } };
  return Response.json(body, { status, headers });
}

/** The gateway's fetch handler; the module compiled from wasm/pkg/pixtral_wasm_bg.wasm is passed in. */
export function edgeWorker(wasm: WebAssembly.Module) {
  let gateway: Promise<{ app: Hono; engine: RemoteEngine }> | undefined;
  return {
    async fetch(request: Request, env?: unknown, ctx?: unknown): Promise<Response> {
      gateway ??= startGateway(wasm, environment(env));
      let app: Hono;
      try {
        const current = gateway;
        let built = await current;
        if (built.engine.superseded) {
          // Every GPU host now serves another model (an upgrade): built again, with its tokenizer and name (once,
          // whichever request notices first).
          if (gateway === current) {
            log.warn("the GPU hosts serve another model; the gateway starts again");
            gateway = startGateway(wasm, environment(env));
          }
          built = await gateway;
        }
        app = built.app;
      } catch (err) {
        gateway = undefined; // the next request tries again
        if (err instanceof ConfigError || err instanceof SecretRefusedError) {
          log.error("the gateway is misconfigured", { error: err.message });
          return failure(request, 500, err.message, "gateway_misconfigured");
        }
        if (err instanceof EngineUnavailableError) {
          log.warn("the gateway cannot start yet", { error: err.message });
          return failure(request, 503, err.message, "engine_unavailable");
        }
        log.error("the gateway cannot start", { error: String((err as Error)?.stack ?? err) });
        // Its words may name the hosts (addresses, certificates): they stay in the log.
        return failure(request, 503, "the gateway cannot start (its log says why)", "engine_unavailable");
      }
      // deno-lint-ignore no-explicit-any
      return await app.fetch(request, env as any, ctx as any);
    },
  };
}
