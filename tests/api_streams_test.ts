/** Streams over HTTP: a client that disconnects frees its KV cache at once; a full queue answers 429. */
import assert from "node:assert/strict";
import { serverConfig, withServer } from "./api_helpers.ts";

const stream = (model: string, maxTokens: number) =>
  JSON.stringify({
    model,
    messages: [{ role: "user", content: "Tell me a long story" }],
    max_tokens: maxTokens,
    stream: true,
  });

async function until(check: () => boolean, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("a client that disconnects mid-stream frees its sequence and KV blocks", async () => {
  await withServer({}, async ({ url, service }) => {
    const engine = service.engine!;
    const controller = new AbortController();
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      body: stream(service.model.id, 500),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    assert.equal(engine.stats().running, 1);
    assert.ok(engine.stats().kvBlocksUsed > 0);
    controller.abort();
    await until(() => engine.stats().running === 0 && engine.stats().kvBlocksUsed === 0);
  });
});

Deno.test("a full queue answers 429 with Retry-After, and the server recovers", async () => {
  const config = serverConfig({ engine: { prefillChunk: 64, maxQueue: 1, maxRunning: 1 } });
  await withServer(config, async ({ url, service }) => {
    const send = () =>
      fetch(`${url}/v1/chat/completions`, { method: "POST", body: stream(service.model.id, 20) });
    // A stream's status line waits for its first token, so the first two are not awaited before the third.
    const first = send(); // running
    await until(() => service.engine!.stats().running === 1);
    const second = send(); // waiting
    await until(() => service.engine!.stats().waiting === 1);
    const third = await send();
    assert.equal(third.status, 429);
    assert.ok(Number(third.headers.get("retry-after")) >= 1);
    assert.equal((await third.json()).error.type, "rate_limit_error");
    for (const res of await Promise.all([first, second])) {
      assert.equal(res.status, 200);
      assert.match(await res.text(), /data: \[DONE\]\n\n$/);
    }
    const again = await send();
    assert.equal(again.status, 200);
    await again.text();
  });
});
