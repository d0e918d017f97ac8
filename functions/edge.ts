/**
 * Edge entry (Deno Deploy, Cloudflare Workers), bundled by `deno task build`. The gateway that forwards prepared
 * requests to GPU hosts is not built yet: until it is, every route answers 503 in OpenAI's error shape.
 */
import { Hono } from "hono";
import { apiError } from "./errors.ts";

const app = new Hono().all(
  "*",
  (c) =>
    apiError(
      c,
      503,
      "this edge gateway has no GPU hosts to forward to yet",
      "service_unavailable",
      "no_gpu_hosts",
    ),
);

export default { fetch: app.fetch };
