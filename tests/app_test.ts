import assert from "node:assert/strict";
import { createApp } from "../functions/app.ts";

const app = createApp();

Deno.test("GET /health answers 200 with JSON", async () => {
  const res = await app.request("/health");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
  assert.deepEqual(await res.json(), { status: "ok", model: null });
});

Deno.test("model routes answer 503 in OpenAI's error shape until a model runtime exists", async () => {
  for (
    const [method, path] of [["POST", "/v1/chat/completions"], ["GET", "/v1/models"], ["POST", "/tokenize"]]
  ) {
    const res = await app.request(path, { method });
    assert.equal(res.status, 503, path);
    const body = await res.json();
    assert.equal(body.error.code, "model_not_loaded");
    assert.equal(body.error.type, "service_unavailable");
    assert.equal(typeof body.error.message, "string");
    assert.equal(body.error.param, null);
  }
});

Deno.test("unknown routes answer 404 JSON naming the route", async () => {
  const res = await app.request("/v2/nothing", { method: "DELETE" });
  assert.equal(res.status, 404);
  const body = await res.json();
  assert.equal(body.error.code, "not_found");
  assert.match(body.error.message, /DELETE \/v2\/nothing/);
});
