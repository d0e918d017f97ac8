/**
 * Streams and requests over HTTP: a client that disconnects frees its KV cache at once, a full queue answers
 * 429, a repeated prompt reuses its cached prefix, an event stream skips updates that have nothing to send.
 */
import assert from "node:assert/strict";
import type { ChoiceResult, ChoiceUpdate } from "../functions/chat/completion.ts";
import { patientJson } from "../functions/routes/patient.ts";
import { eventStream, inProcess } from "../functions/routes/sse.ts";
import { EngineClosedError } from "../runtime/engine/engine.ts";
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

Deno.test("a stream's usage: on the last finish when include_usage is unset, its own chunk when true, none when false", async () => {
  await withServer({}, async ({ url, service }) => {
    const chunks = async (options: Record<string, unknown>) => {
      const body = { ...JSON.parse(stream(service.model.id, 3)), n: 2, temperature: 1, seed: 3, ...options };
      const response = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        body: JSON.stringify(body),
      });
      // The charset named: a client that decodes lines itself would take ISO-8859-1 otherwise.
      assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
      const text = await response.text();
      return text.split("\n\n").filter((e) => e.startsWith("data: {")).map((e) => JSON.parse(e.slice(6)));
    };
    const usageOf = (list: { usage?: unknown; choices: { finish_reason: string | null }[] }[]) =>
      list.flatMap((c, i) => c.usage ? [{ at: i, usage: c.usage, finishes: c.choices.length }] : []);
    const unset = usageOf(await chunks({}));
    assert.equal(unset.length, 1);
    const own = usageOf(await chunks({ stream_options: { include_usage: true } }));
    assert.deepEqual(own.map((u) => u.finishes), [0]); // a chunk of its own, no choices
    assert.deepEqual(unset[0].usage, own[0].usage);
    assert.deepEqual(usageOf(await chunks({ stream_options: { include_usage: false } })), []);
  });
});

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

Deno.test("a client that leaves is no server error: the answer's body cancelled, its run's end logs no error", async () => {
  // Deno reports a client that leaves a large request only by cancelling the response's body; the request's
  // signal never aborts. The run then ends with the AbortError of its own cancellation.
  const lines: string[] = [];
  const print = console.log;
  console.log = (line: unknown) => void lines.push(String(line));
  try {
    for (const kind of ["stream", "json"]) {
      const cancelled = Promise.withResolvers<never>();
      cancelled.promise.catch(() => {}); // awaited by the run, if it got there
      const updates = async function* (): AsyncGenerator<ChoiceUpdate, ChoiceResult[]> {
        yield { index: 0, text: "a" };
        return await cancelled.promise;
      };
      const run = {
        updates: updates(),
        cancel: () => cancelled.reject(new DOMException("the request was cancelled", "AbortError")),
      };
      const request = new Request("http://x/v1/chat/completions", {
        method: "POST",
        headers: { "content-length": "4000" },
        body: "x".repeat(4000),
      });
      const res = kind === "stream"
        ? await eventStream(run, {
          id: kind,
          request,
          events: (u) => "text" in u ? [{ text: u.text }] : [],
          end: () => [],
        })
        : await patientJson(run, { id: kind, request, answer: () => ({}) });
      const reader = res.body!.getReader();
      if (kind === "stream") await reader.read();
      await reader.cancel();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    console.log = print;
  }
  assert.deepEqual(lines.filter((line) => line.includes('"level":"error"')), []);
});

Deno.test("a large request's non-streamed answer keeps its status for a while after it came", async () => {
  /** A run that writes a token, then fails after `failMs`. */
  const failing = (failMs: number) => {
    const updates = async function* (): AsyncGenerator<ChoiceUpdate, ChoiceResult[]> {
      yield { index: 0, text: "a" };
      await new Promise((resolve) => setTimeout(resolve, failMs));
      throw new EngineClosedError("the engine is closing");
    };
    return { updates: updates(), cancel: () => {} };
  };
  const request = () =>
    new Request("http://x/v1/chat/completions", {
      method: "POST",
      headers: { "content-length": "4000" },
      body: "x".repeat(4000),
    });
  const options = { id: "held", answer: () => ({}), holdMs: 400 };
  // Failing within the hold: the error itself (a 503 for the route), which clients raise on or retry.
  await assert.rejects(patientJson(failing(50), { ...options, request: request() }), EngineClosedError);
  // After it, the status line went: the error is the body, in the route's shape, and the body breaks off, so
  // that clients raise rather than take it for an answer.
  for (const failure of [undefined, (message: string) => ({ type: "error", error: { message } })]) {
    const late = await patientJson(failing(900), { ...options, request: request(), failure });
    assert.equal(late.status, 200);
    const reader = late.body!.pipeThrough(new TextDecoderStream()).getReader();
    let body = "";
    await assert.rejects(async () => {
      for (let part = await reader.read(); !part.done; part = await reader.read()) body += part.value;
    }, /engine is closing/);
    const shape = failure
      ? /^ *\{"type":"error","error":\{"message"/
      : /^ *\{"error":\{"message":"the engine/;
    assert.match(body, shape);
  }
  // An answer that ends within the hold is plain JSON.
  const quick = async function* (): AsyncGenerator<ChoiceUpdate, ChoiceResult[]> {
    yield { index: 0, text: "a" };
    return [];
  };
  const done = await patientJson({ updates: quick(), cancel: () => {} }, {
    ...options,
    request: request(),
    answer: () => ({ ok: true }),
  });
  assert.equal(await done.text(), '{"ok":true}');
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

Deno.test("a repeated conversation reuses its prompt's KV blocks: the same answer, counted in /metrics", async () => {
  await withServer({}, async ({ url, service }) => {
    const chat = {
      model: service.model.id,
      messages: [{ role: "user", content: "Describe the following list in detail. ".repeat(20) }],
      max_tokens: 4,
      temperature: 0,
    };
    const hits = async () => {
      const text = await (await fetch(`${url}/metrics`)).text();
      return Number(/^pixtral_prefix_cache_hit_tokens_total (\d+)$/m.exec(text)![1]);
    };
    const ask = async () =>
      (await fetch(`${url}/v1/chat/completions`, { method: "POST", body: JSON.stringify(chat) })).json();
    const first = await ask();
    assert.equal(await hits(), 0);
    const second = await ask();
    assert.equal(second.choices[0].message.content, first.choices[0].message.content);
    const prompt = first.usage.prompt_tokens;
    assert.ok(prompt > 64);
    // Whole 64-token prefill chunks, leaving at least the last token to compute.
    assert.equal(await hits(), Math.floor((prompt - 1) / 64) * 64);
  });
});

Deno.test("a request the shutdown cuts off (after the grace period) gets 503, not 500", async () => {
  await withServer({ graceSeconds: 0 }, async ({ url, service, shutdown }) => {
    const pending = fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      body: stream(service.model.id, 500),
    });
    const answer = fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({
        messages: [{ role: "user", content: "Tell me a long story" }],
        max_tokens: 500,
      }),
    });
    const streamed = await pending;
    await until(() => service.engine!.stats().running === 2);
    const closing = shutdown();
    const res = await answer;
    assert.equal(res.status, 503);
    assert.match((await res.json()).error.message, /shut down/);
    assert.match(await streamed.text(), /shut down before the request finished/);
    await closing;
  });
});

Deno.test("an event stream goes on past updates that have no events (text held back), and keeps alive", async () => {
  // Silent updates every 300 ms for 1.5 s: the keep-alive counts from the last write, not the last update.
  async function* updates(): AsyncGenerator<ChoiceUpdate, ChoiceResult[]> {
    for (const text of ["a", "", "", "", "", "", "b"]) {
      if (!text) await new Promise((resolve) => setTimeout(resolve, 300));
      yield { index: 0, text };
    }
    return [];
  }
  for (const named of [undefined, { failed: () => [] }]) {
    const run = { updates: updates(), cancel() {} };
    const res = await eventStream(run, {
      id: "test",
      request: new Request("http://x/v1/chat/completions"),
      events: (u) => "text" in u && u.text ? [{ type: "delta", text: u.text }] : [],
      end: () => [{ type: "end" }],
      named,
    });
    const body = await res.text();
    const data = body.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6));
    assert.deepEqual(data, [
      '{"type":"delta","text":"a"}',
      '{"type":"delta","text":"b"}',
      '{"type":"end"}',
      ...named ? [] : ["[DONE]"],
    ]);
    assert.equal(body.includes("event: delta\n"), Boolean(named));
    assert.ok(body.includes(": keep-alive\n\n"), body);
  }
});

Deno.test("a request's response begins while it is still queued, so that a client that leaves is seen", async () => {
  /** A run that never writes (queued behind others) until cancelled. */
  const queued = () => {
    const cancelled = Promise.withResolvers<void>();
    // deno-lint-ignore require-yield
    const updates = async function* (): AsyncGenerator<ChoiceUpdate, ChoiceResult[]> {
      await cancelled.promise;
      throw new Error("cancelled");
    };
    return { updates: updates(), cancel: () => cancelled.resolve(), cancelled: cancelled.promise };
  };
  // Deno reports a disconnect before the response begins only for a request of up to about 512 bytes that came
  // in one packet (httpx sends a body in a packet of its own): small requests begin early too.
  const large = () =>
    new Request("http://x/v1/chat/completions", {
      method: "POST",
      headers: { "content-length": "4000" },
      body: "x".repeat(4000),
    });
  const small = () => new Request("http://x/api/chat", { method: "POST", body: "{}" });
  const soon = <T>(promise: Promise<T>) =>
    Promise.race([
      promise,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("held")), 8000)),
    ]);
  // A request answered in this process (pixtral batch) has no client to leave: it keeps its status.
  const held = patientJson(queued(), {
    id: "q",
    request: inProcess(large()),
    answer: () => ({}),
    holdMs: 50,
  });
  assert.equal(
    await Promise.race([held.then(() => "began"), new Promise((r) => setTimeout(() => r("held"), 400))]),
    "held",
  );
  for (
    const [kind, request] of [["stream", large], ["json", large], ["json", small], ["stream", small]] as const
  ) {
    const run = queued();
    const res = await soon(
      kind === "stream"
        ? eventStream(run, { id: "q", request: request(), events: () => [], end: () => [] })
        : patientJson(run, { id: "q", request: request(), answer: () => ({}), holdMs: 300 }),
    );
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    // Keep-alives (comments, or spaces) go out, and the client leaving cancels the run.
    const { value } = await soon(reader.read());
    assert.match(new TextDecoder().decode(value), kind === "stream" ? /^: keep-alive/ : /^ $/);
    await reader.cancel();
    await soon(run.cancelled);
  }
});
