import assert from "node:assert/strict";
import { createApp } from "../functions/app.ts";
import { loadTokenizer } from "../runtime/tokenizer/load.ts";
import { fixture } from "./helpers.ts";
import { engineLessService } from "./service_helpers.ts";

/** A service whose model is still loading (or failed): no engine yet. */
async function loadingService() {
  return engineLessService(await loadTokenizer(fixture("mistral/tekken.json").pathname));
}

Deno.test("while the model loads: /health and chat answer 503, tokenize works", async () => {
  const service = await loadingService();
  const app = createApp(service);
  const health = await app.request("/health");
  assert.equal(health.status, 503);
  assert.deepEqual(await health.json(), { status: "loading", model: "tiny" });
  const chat = await app.request("/v1/chat/completions", {
    method: "POST",
    body: JSON.stringify({ messages: [{ role: "user", content: "hi" }] }),
  });
  assert.equal(chat.status, 503);
  const body = await chat.json();
  assert.equal(body.error.code, "model_not_ready");
  assert.match(body.error.message, /loading/);
  const tokens = await app.request("/tokenize", {
    method: "POST",
    body: JSON.stringify({ prompt: "Hello" }),
  });
  assert.equal(tokens.status, 200);
  const counted = await tokens.json();
  assert.deepEqual(counted.tokens, [1, ...service.tokenizer.encode("Hello")]);
  assert.equal(counted.max_model_len, null, "the context is sized when the model loads");
  // One of prompt and messages, not both (the prompt alone was read).
  for (
    const body of [{ prompt: "a", messages: null }, {
      prompt: null,
      messages: [{ role: "user", content: "a" }],
    }]
  ) {
    const nulled = await app.request("/tokenize", { method: "POST", body: JSON.stringify(body) });
    assert.equal(nulled.status, 200, "a null field is one not given");
  }
  for (const [body, message] of [[{ prompt: "a", messages: [] }, /not both/], [{}, /give prompt/]] as const) {
    const res = await app.request("/tokenize", { method: "POST", body: JSON.stringify(body) });
    assert.equal(res.status, 400);
    assert.match((await res.json()).error.message, message);
  }

  service.failure = "out of memory";
  const failed = await app.request("/health");
  assert.equal(failed.status, 503);
  assert.equal((await failed.json()).status, "failed");
});

Deno.test("CORS headers for allowed origins only", async () => {
  const app = createApp(await loadingService(), { corsOrigins: ["https://app.example"] });
  const allowed = await app.request("/v1/models", { headers: { origin: "https://app.example" } });
  assert.equal(allowed.headers.get("access-control-allow-origin"), "https://app.example");
  const other = await app.request("/v1/models", { headers: { origin: "https://evil.example" } });
  assert.equal(other.headers.get("access-control-allow-origin"), null);
  const preflight = await app.request("/v1/chat/completions", {
    method: "OPTIONS",
    headers: { origin: "https://app.example", "access-control-request-method": "POST" },
  });
  assert.equal(preflight.status, 204);
});
