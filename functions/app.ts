/**
 * The HTTP API as one Hono app on web-standard Request/Response, shared by the GPU host (`pixtral serve`) and the
 * edge build. Every error leaves with its status, mapped in one place (`toApiError`), in OpenAI's error shape
 * (Anthropic's on the Messages routes, functions/errors.ts).
 */
import { Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { requestId } from "hono/request-id";
import { matchedRoutes } from "hono/route";
import {
  EngineBusyError,
  EngineClosedError,
  EngineUnavailableError,
  InvalidRequestError,
  RequestTooLongError,
} from "../runtime/engine/engine.ts";
import { ImageError, ImageTooLargeError } from "../runtime/images/errors.ts";
import { log } from "../runtime/log.ts";
import { PromptError } from "../runtime/prompt/instruct.ts";
import { apiError, isAnthropicPath } from "./errors.ts";
import { ImageSourceError } from "./images/fetch.ts";
import { apiKeyAuth } from "./middleware/auth.ts";
import { corsFor, LOCAL_ORIGINS, NO_ORIGINS, originCheck } from "./middleware/cors.ts";
import { crossSiteGuard } from "./middleware/cross_site.ts";
import { hostGuard } from "./middleware/host_guard.ts";
import {
  BODY_IDLE_MS,
  BodyEncodingError,
  bodyLimits,
  BodyTimeoutError,
  BodyTooLargeError,
  MAX_BODY_BYTES,
} from "./middleware/body.ts";
import { chatRoutes } from "./routes/chat.ts";
import { completionRoutes } from "./routes/completions.ts";
import { ClientClosedError, UnknownModelError } from "./routes/common.ts";
import { healthRoutes } from "./routes/health.ts";
import { internalRoutes } from "./routes/internal.ts";
import { metricsRoutes } from "./routes/metrics.ts";
import { responseRoutes } from "./routes/responses.ts";
import { ollamaRoutes } from "./routes/ollama.ts";
import { messageRoutes } from "./routes/messages.ts";
import { modelRoutes } from "./routes/models.ts";
import { tokenizeRoutes } from "./routes/tokenize.ts";
import { RequestError } from "./schema/chat.ts";
import type { Service } from "./service.ts";

export interface AppOptions {
  /** Accepted API keys; none: no authentication. */
  apiKeys?: string[];
  /** Origins allowed by CORS (patterns: "*" for any, `*` in a host or port; "none": not even local pages). */
  corsOrigins?: string[];
  /** Whether local pages and apps' web views may call without being listed (default true; not at the edge). */
  localOrigins?: boolean;
  /** Largest request body in bytes (default MAX_BODY_BYTES, 256 MiB). */
  maxBodyBytes?: number;
  /** Shared secret of the internal routes that edge gateways call; none: the routes are not mounted. */
  internalSecret?: string;
  /** Longest wait for the next part of a request body before a 408 (default BODY_IDLE_MS, 60 s). */
  bodyIdleMs?: number;
  /**
   * Given when the server listens on loopback only: the names besides addresses and localhost that requests may
   * give in Host ("*": any), against DNS rebinding; none: any name.
   */
  allowedHosts?: string[];
  /**
   * Told when this thread's WASM module trapped (the tokenizer lives in it): its memory is then in no known state,
   * so that the server can stop and a supervisor start it again rather than answer 500 to every request.
   */
  onFatal?: (reason: string) => void;
}

/** A trap of this thread's WASM module (a Rust panic or abort), possibly wrapped. */
function isTrap(err: unknown): boolean {
  return err instanceof WebAssembly.RuntimeError || (err as Error)?.cause instanceof WebAssembly.RuntimeError;
}

type Mapped = {
  status: 400 | 401 | 404 | 408 | 413 | 415 | 429 | 500 | 503;
  type: string;
  code: string | null;
  param?: string;
};

function toApiError(err: unknown): Mapped {
  const param = (err as { param?: string }).param;
  if (err instanceof RequestError) {
    return { status: 400, type: "invalid_request_error", code: err.code, param };
  }
  if (err instanceof PromptError) {
    const param = err.index === undefined ? "messages" : `messages[${err.index}]${err.at}`;
    return { status: 400, type: "invalid_request_error", code: "invalid_messages", param };
  }
  if (err instanceof ImageSourceError) {
    // Too many bytes is the image's size, as too many pixels is: one code for both.
    const code = err.status === 413 ? "image_too_large" : "invalid_image_url";
    return { status: err.status, type: "invalid_request_error", code, param };
  }
  if (err instanceof ImageTooLargeError) {
    return { status: 413, type: "invalid_request_error", code: "image_too_large", param };
  }
  if (err instanceof ImageError) {
    return { status: 400, type: "invalid_request_error", code: "invalid_image", param };
  }
  if (err instanceof InvalidRequestError) {
    return { status: 400, type: "invalid_request_error", code: "invalid_request" };
  }
  if (err instanceof RequestTooLongError) {
    return { status: 400, type: "invalid_request_error", code: "context_length_exceeded" };
  }
  if (err instanceof BodyTooLargeError) {
    return { status: 413, type: "invalid_request_error", code: "request_too_large" };
  }
  if (err instanceof BodyTimeoutError) {
    return { status: 408, type: "invalid_request_error", code: "request_timeout" };
  }
  if (err instanceof BodyEncodingError) {
    const code = err.status === 415 ? "unsupported_content_encoding" : "invalid_request_body";
    return { status: err.status, type: "invalid_request_error", code };
  }
  if (err instanceof UnknownModelError) {
    return { status: 404, type: "invalid_request_error", code: "model_not_found" };
  }
  if (err instanceof EngineBusyError) return { status: 429, type: "rate_limit_error", code: "server_busy" };
  if (err instanceof EngineUnavailableError) {
    return { status: 503, type: "service_unavailable", code: "engine_unavailable" };
  }
  if (err instanceof EngineClosedError) {
    return { status: 503, type: "service_unavailable", code: "model_not_ready" };
  }
  return { status: 500, type: "server_error", code: "internal_error" };
}

/** A request whose body has not been touched. */
function unread(request: Request): boolean {
  const declared = Number(request.headers.get("content-length") ?? 0);
  return (declared > 0 || request.headers.has("transfer-encoding")) && !request.bodyUsed;
}

export function createApp(service: Service, options: AppOptions = {}): Hono {
  const app = new Hono();
  app.use(requestId());
  app.use(async (c, next) => {
    const started = performance.now();
    await next();
    // Answers made as Responses of their own (JSON held open, event streams) carry the id too.
    if (!c.res.headers.has("X-Request-Id")) {
      c.res = new Response(c.res.body, c.res);
      c.res.headers.set("X-Request-Id", c.get("requestId"));
    }
    // Anthropic's clients read it as `request-id` (their `requestID`).
    if (isAnthropicPath(c.req.path)) c.res.headers.set("request-id", c.get("requestId"));
    // Answered before its body was read (a 401, a 404, a 413 from its Content-Length) or while it was (a 408, a
    // 413): the client is asked to close the connection, which waits for the rest of the body (Deno itself keeps
    // it open until the client closes it; a proxy's idle limits are what free it from a client that never does).
    if (unread(c.req.raw) || c.get("bodyFailed")) c.res.headers.set("Connection", "close");
    // By the route the request went to (middleware, registered for ALL, may have answered it), so that scrapes
    // and health checks can be told from the API's requests.
    const route = matchedRoutes(c).find((r) => r.method !== "ALL")?.path ?? "unmatched";
    service.metrics.requests.inc({ route, status: String(c.res.status) });
    // Gateways poll the status every few seconds: those lines only at debug level.
    log[c.req.path === "/internal/v1/status" ? "debug" : "info"]("request", {
      id: c.get("requestId"),
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      ms: Math.round(performance.now() - started),
      // Why it was refused, where it was: a 4xx line alone says nothing an operator can act on.
      ...c.get("refusal") === undefined ? {} : { error: c.get("refusal") },
    });
  });
  // Before CORS, API keys and the body limit: the internal routes have their own secret and limit.
  if (options.internalSecret) {
    app.route("/", internalRoutes(service, options.internalSecret, { bodyIdleMs: options.bodyIdleMs }));
  }
  if (options.allowedHosts) app.use(hostGuard(options.allowedHosts));
  const origins = options.corsOrigins ?? [];
  const local = options.localOrigins !== false && !origins.includes(NO_ORIGINS);
  const allowed = originCheck([...local ? LOCAL_ORIGINS : [], ...origins]);
  app.use(corsFor(allowed, origins.includes("*")));
  app.use(crossSiteGuard(allowed));
  app.use(apiKeyAuth(options.apiKeys ?? []));
  app.use(bodyLimits({
    maxBytes: options.maxBodyBytes ?? MAX_BODY_BYTES,
    idleMs: options.bodyIdleMs ?? BODY_IDLE_MS,
  }));
  for (
    const routes of [
      healthRoutes,
      metricsRoutes,
      modelRoutes,
      tokenizeRoutes,
      chatRoutes,
      completionRoutes,
      responseRoutes,
      messageRoutes,
      ollamaRoutes,
    ]
  ) {
    app.route("/", routes(service));
  }
  const methods = methodsByPath(app);
  app.notFound((c) => {
    // A known path asked with another method is a 405 naming the methods it takes, as other servers answer.
    const allowed = methods(c.req.path);
    if (allowed.length) {
      c.header("Allow", allowed.join(", "));
      return apiError(
        c,
        405,
        `${c.req.path} takes ${allowed.join(" or ")}, not ${c.req.method}`,
        "invalid_request_error",
        "method_not_allowed",
      );
    }
    return apiError(c, 404, `no route for ${c.req.method} ${c.req.path}`, "not_found_error", "not_found");
  });
  app.onError((err, c) => {
    // The client went away (the request's signal was aborted): nobody reads the answer; not a server error.
    // Unless the server is shutting down: then the shutdown cut the request off, and a client still there gets a
    // 503 to retry elsewhere (a stalled upload got a 499, a status for logs, not clients).
    const cut = (err.name === "AbortError" && c.req.raw.signal.aborted) || err instanceof ClientClosedError;
    if (cut && !service.stopping) {
      log.debug("request cancelled by the client", { path: c.req.path });
      return c.body(null, 499 as ContentfulStatusCode);
    }
    if (cut) err = new EngineClosedError("the server shut down before the request was read");
    if (
      err instanceof BodyTimeoutError || err instanceof BodyTooLargeError || err instanceof BodyEncodingError
    ) {
      c.set("bodyFailed", true);
    }
    const mapped = toApiError(err);
    if (mapped.status === 500) {
      log.error("unhandled error", { path: c.req.path, error: String(err?.stack ?? err) });
    }
    if (isTrap(err) && mapped.status === 500) {
      service.failure =
        `the WASM module trapped (${err.message}); the tokenizer in it cannot be trusted after`;
      options.onFatal?.(service.failure);
    }
    if (err instanceof EngineBusyError || err instanceof EngineUnavailableError) {
      c.header("Retry-After", String(err.retryAfterSeconds));
    }
    // Loading, or shutting down (another instance may take it): worth a retry; a failed load is not.
    if (err instanceof EngineClosedError && !service.failure) c.header("Retry-After", "5");
    const message = mapped.status === 500 ? "internal server error" : err.message;
    return apiError(c, mapped.status, message, mapped.type, mapped.code, mapped.param ?? null);
  });
  return app;
}

/** The methods the app's routes take at a path (middleware, registered for every method, is left out). */
function methodsByPath(app: Hono): (path: string) => string[] {
  const routes = app.routes.filter((r) => r.method !== "ALL").map((r) => ({
    method: r.method,
    // Hono's patterns: `:name{regex}` and `:name` parameters, `*` wildcards.
    pattern: new RegExp(
      "^" +
        r.path.replace(
          /:\w+\{([^}]+)\}|:\w+|\*|[.+?^$()[\]|\\]/g,
          (m, re) => re ? `(?:${re})` : m === "*" ? ".*" : m.startsWith(":") ? "[^/]+" : `\\${m}`,
        ) + "$",
    ),
  }));
  return (path) => {
    const methods = new Set(routes.filter((r) => r.pattern.test(path)).map((r) => r.method));
    if (methods.has("GET")) methods.add("HEAD"); // Hono answers HEAD with the GET route
    return [...methods];
  };
}
