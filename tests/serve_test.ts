import assert from "node:assert/strict";
import { lines, pixtral } from "./helpers.ts";

Deno.test("pixtral serve (the README's command): listens, loads the demo model, serves, exits 0 on SIGTERM", async () => {
  const child = pixtral(["serve", "--port", "0"]).spawn();
  const log = lines(child.stdout);
  const until = async (msg: string) => {
    for (let next = await log.next(); !next.done; next = await log.next()) {
      const entry = JSON.parse(next.value);
      if (entry.msg === msg) return entry;
    }
    throw new Error(`the server exited before logging "${msg}"`);
  };
  const { url } = await until("listening");
  const early = await fetch(`${url}/health`);
  assert.ok(early.status === 503 || early.status === 200);
  await early.body?.cancel();
  const ready = await until("ready");
  // Mesa's lavapipe (CI) gets short prefill chunks, so that a long prompt does not stop the server answering.
  assert.equal(ready.prefillChunk, /llvmpipe/.test(ready.adapter) ? 64 : 512);
  const health = await fetch(`${url}/health`);
  assert.equal(health.status, 200);
  assert.equal((await health.json()).model, "pixtral-demo-random");
  const models = await (await fetch(`${url}/v1/models`)).json();
  assert.equal(models.data[0].demo, true);
  assert.match(models.data[0].description, /RANDOM weights/);
  const chat = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    body: JSON.stringify({ messages: [{ role: "user", content: "Hello" }], max_tokens: 2 }),
  });
  assert.equal(chat.status, 200);
  assert.equal((await chat.json()).usage.completion_tokens, 2);

  child.kill("SIGTERM");
  await until("shutting down");
  for (let next = await log.next(); !next.done; next = await log.next());
  await child.stderr.cancel();
  assert.equal((await child.status).code, 0);
});
