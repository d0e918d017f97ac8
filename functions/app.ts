/**
 * The HTTP API as one Hono app on web-standard Request/Response, shared by the GPU host (`pixtral serve`) and the
 * edge build (functions/edge.ts).
 */
import { Hono } from "hono";
import { apiError } from "./errors.ts";
import { health } from "./routes/health.ts";
import { log } from "../runtime/log.ts";

/** Routes of the API whose model runtime is not built yet: they answer 503 rather than a misleading 404. */
const MODEL_ROUTES = [
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/models",
  "/tokenize",
  "/detokenize",
  "/metrics",
];

export function createApp(): Hono {
  const app = new Hono();
  app.route("/", health);
  for (const path of MODEL_ROUTES) {
    app.all(
      path,
      (c) =>
        apiError(
          c,
          503,
          "no model is loaded: this build of the server answers /health only",
          "service_unavailable",
          "model_not_loaded",
        ),
    );
  }
  app.notFound((c) =>
    apiError(c, 404, `no route for ${c.req.method} ${c.req.path}`, "not_found_error", "not_found")
  );
  app.onError((err, c) => {
    log.error("unhandled error", { path: c.req.path, error: String(err?.stack ?? err) });
    return apiError(c, 500, "internal server error", "server_error", "internal_error");
  });
  return app;
}
