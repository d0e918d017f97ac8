import assert from "node:assert/strict";
import { parseFlags, UsageError } from "../cli/args.ts";
import { corsOrigins, SERVE_FLAGS, serverConfig as cliConfig, startServer } from "../cli/serve.ts";
import { isLoopback } from "../functions/middleware/host_guard.ts";
import { createApp } from "../functions/app.ts";
import { answerRoom } from "../functions/chat/history.ts";
import { requireModel } from "../functions/routes/common.ts";
import type { Service } from "../functions/service.ts";
import { loadTokenizer } from "../runtime/tokenizer/load.ts";
import { fixture } from "./helpers.ts";
import { engineLessService, ScriptedEngine } from "./service_helpers.ts";
import { EngineBusyError, type FinishReason, type TokenEvent } from "../runtime/engine/engine.ts";
import { serverConfig } from "./api_helpers.ts";

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

Deno.test("a trap of this thread's WASM module (the tokenizer's) is fatal: told once, and /health says failed", async () => {
  const service = await loadingService();
  // A panic in the Rust code reaches JavaScript as a RuntimeError ("unreachable").
  service.tokenizer.encode = () => {
    throw new WebAssembly.RuntimeError("unreachable");
  };
  const told: string[] = [];
  const app = createApp(service, { onFatal: (reason) => told.push(reason) });
  const answer = await app.request("/tokenize", { method: "POST", body: JSON.stringify({ prompt: "hi" }) });
  assert.equal(answer.status, 500);
  await answer.body?.cancel();
  assert.equal(told.length, 1);
  assert.match(told[0], /WASM module trapped \(unreachable\)/);
  const health = await app.request("/health");
  assert.equal(health.status, 503);
  assert.equal((await health.json()).status, "failed");
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
  // Anthropic's browser clients send their key and a header of their own: both allowed; request-id readable.
  const anthropic = await app.request("/v1/messages", {
    method: "OPTIONS",
    headers: {
      origin: "https://app.example",
      "access-control-request-method": "POST",
      "access-control-request-headers":
        "x-api-key,anthropic-version,anthropic-dangerous-direct-browser-access",
    },
  });
  assert.equal(anthropic.status, 204);
  assert.match(anthropic.headers.get("access-control-allow-headers") ?? "", /x-api-key/);
  const listed = await app.request("/v1/models", { headers: { origin: "https://app.example" } });
  assert.match(listed.headers.get("access-control-expose-headers") ?? "", /request-id/i);
});

Deno.test("local pages and desktop apps' web views may call without --cors, as Ollama allows them; patterns take a * for a host or port", async () => {
  const service = await loadingService();
  const app = createApp(service, {});
  const preflight = (origin: string, extra: Record<string, string> = {}) =>
    app.request("/v1/chat/completions", {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "POST", ...extra },
    });
  // Another site's preflight is a 403 naming the flag (a bare answer without headers said nothing).
  const localPages = [
    "http://localhost:3000",
    "http://localhost",
    "https://127.0.0.1:8443",
    "http://[::1]:5173",
    "tauri://localhost",
    "vscode-webview://1a2b3c",
    "app://-",
  ];
  const other = [
    "https://evil.example",
    "http://localhost.evil.example",
    "http://127.0.0.1.evil.example:80",
    "http://localhost:1@evil.example",
  ];
  for (const origin of [...localPages, ...other]) {
    const answer = await preflight(origin);
    if (localPages.includes(origin)) {
      assert.equal(answer.status, 204, origin);
      assert.equal(answer.headers.get("access-control-allow-origin"), origin);
    } else {
      assert.equal(answer.status, 403, origin);
      assert.match(
        (await answer.json()).error.message,
        new RegExp(`--cors ${origin.replace(/[.]/g, "\\.")}`),
      );
    }
  }
  const plain = await app.request("/v1/models", { headers: { origin: "https://evil.example" } });
  assert.equal(plain.headers.get("access-control-allow-origin"), null);

  const patterned = createApp(await loadingService(), {
    corsOrigins: ["https://*.example.com", "chrome-extension://*", "http://lan-box:*"],
  });
  const check = async (origin: string) =>
    (await patterned.request("/v1/models", { headers: { origin } })).headers.get(
      "access-control-allow-origin",
    );
  for (
    const origin of [
      "https://chat.example.com",
      "https://a.b.example.com",
      "chrome-extension://abcdef",
      "http://lan-box:8080",
    ]
  ) {
    assert.equal(await check(origin), origin);
  }
  for (
    const origin of [
      "https://example.com",
      "https://example.com.evil.net",
      "http://chat.example.com",
      "http://lan-box",
      "https://x:1@a.example.com",
      "http://lan-box:80@evil.example",
    ]
  ) {
    assert.equal(await check(origin), null, origin);
  }
  // `none` leaves out the local pages too; an origin that is no scheme://host[:port] is refused at start-up.
  const closed = createApp(await loadingService(), { corsOrigins: ["none"] });
  const local = await closed.request("/v1/models", { headers: { origin: "http://localhost:3000" } });
  assert.equal(local.headers.get("access-control-allow-origin"), null);
  const edgeLike = createApp(await loadingService(), { localOrigins: false });
  const fromLocal = await edgeLike.request("/v1/models", { headers: { origin: "http://localhost:3000" } });
  assert.equal(fromLocal.headers.get("access-control-allow-origin"), null);
  for (const written of ["app.example", "https://app.example/chat", "*.example.com"]) {
    assert.throws(
      () => createApp(service, { corsOrigins: [written] }),
      new RegExp(`"${written.replace(/[.*]/g, "\\$&")}" is not scheme://host\\[:port\\]`),
    );
  }
  // A public page calling a private address (Chrome's Private Network Access) is let through for allowed origins.
  const privateNetwork = await preflight("http://localhost:3000", {
    "access-control-request-private-network": "true",
  });
  assert.equal(privateNetwork.headers.get("access-control-allow-private-network"), "true");
});

/** A body that sends `parts` one each `everyMs`, then ends, or stalls (never ends) when `stall` is set. */
function tricklingBody(parts: string[], everyMs: number, stall: boolean): ReadableStream<Uint8Array> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return new ReadableStream({
    start(controller) {
      const next = (i: number) => {
        if (i === parts.length) {
          if (!stall) controller.close();
          return;
        }
        controller.enqueue(new TextEncoder().encode(parts[i]));
        timer = setTimeout(() => next(i + 1), everyMs);
      };
      next(0);
    },
    cancel: () => clearTimeout(timer),
  });
}

Deno.test("a request body that stops arriving midway is a 408; a slow one that keeps coming is read", async () => {
  const service = await loadingService();
  const app = createApp(service, { bodyIdleMs: 300 });
  const post = (body: ReadableStream<Uint8Array>) =>
    app.request("/tokenize", { method: "POST", body, duplex: "half" } as RequestInit);
  const json = JSON.stringify({ prompt: "Hello there" });
  const halves = [json.slice(0, 10), json.slice(10)];

  const started = performance.now();
  const stalled = await post(tricklingBody(halves.slice(0, 1), 0, true));
  assert.equal(stalled.status, 408);
  const error = (await stalled.json()).error;
  assert.equal(error.code, "request_timeout");
  assert.match(error.message, /no more of the request body came for 0.3 s \(after 10 bytes\)/);
  assert.ok(performance.now() - started < 5000);
  // Nothing at all after the headers: the same.
  assert.equal((await post(tricklingBody([], 0, true))).status, 408);

  // Without a Content-Length, a body over the size is refused as it streams in.
  const small = createApp(service, { maxBodyBytes: 1000, bodyIdleMs: 300 });
  const big = await small.request("/tokenize", {
    method: "POST",
    body: tricklingBody(Array(20).fill(json + " ".repeat(100)), 1, true),
    duplex: "half",
  } as RequestInit);
  assert.equal(big.status, 413);
  assert.equal((await big.json()).error.code, "request_too_large");

  // Read as Request.text() reads it: a byte order mark dropped, bytes that are not UTF-8 as U+FFFD; an answer to
  // a body read whole keeps its connection.
  const bytes = new Uint8Array([
    0xef,
    0xbb,
    0xbf,
    ...new TextEncoder().encode('{"prompt": "a'),
    0xff,
    0x22,
    0x7d,
  ]);
  const odd = await app.request("/tokenize", { method: "POST", body: bytes });
  assert.equal(odd.status, 200);
  assert.deepEqual((await odd.json()).tokens, [1, ...service.tokenizer.encode("a\uFFFD")]);
  assert.equal(odd.headers.get("connection"), null);

  // Six parts 120 ms apart: 720 ms in all, longer than the wait for any one part.
  const size = Math.ceil(json.length / 6);
  const parts = Array.from({ length: 6 }, (_, i) => json.slice(i * size, (i + 1) * size));
  const slow = await post(tricklingBody(parts, 120, false));
  assert.equal(slow.status, 200);
  assert.equal((await slow.json()).count, 1 + service.tokenizer.encode("Hello there").length);
});

Deno.test("a stalled upload over a real connection gets its 408 and the connection is let go", async () => {
  const app = createApp(await loadingService(), { bodyIdleMs: 300 });
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.fetch);
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    const head =
      "POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    await conn.write(new TextEncoder().encode(head + '{"prompt": "a'));
    let answer = "";
    const buffer = new Uint8Array(4096);
    while (!answer.includes("request_timeout")) {
      const n = await conn.read(buffer);
      if (n === null) break;
      answer += new TextDecoder().decode(buffer.subarray(0, n));
    }
    conn.close();
    assert.match(answer, /^HTTP\/1.1 408 /);
    // The client is told to close the connection, which would wait for the rest of the body.
    assert.match(answer, /\r\nconnection: close\r\n/i);
  } finally {
    await server.shutdown();
  }
});

Deno.test("--body-timeout: seconds, positive", async () => {
  const config = (argv: string[]) => cliConfig(parseFlags(argv, SERVE_FLAGS));
  assert.equal((await config(["--body-timeout", "2.5"])).bodyIdleMs, 2500);
  assert.equal((await config([])).bodyIdleMs, undefined, "the app's default, 60 s");
  for (const bad of ["0", "-1", "soon"]) {
    await assert.rejects(config([`--body-timeout=${bad}`]), UsageError);
  }
});

Deno.test("--cors and PIXTRAL_CORS: origins from both, a wrong one a usage error", () => {
  assert.deepEqual(corsOrigins(["https://a.example"], " https://b.example, chrome-extension://* "), [
    "https://a.example",
    "https://b.example",
    "chrome-extension://*",
  ]);
  assert.equal(corsOrigins(undefined, ""), undefined);
  assert.throws(() => corsOrigins(["a.example"], undefined), UsageError);
  assert.throws(() => corsOrigins(undefined, "https://a.example/app"), /PIXTRAL_CORS.*not scheme:\/\/host/);
});

Deno.test("a shutdown does not wait past its grace for a client that stopped sending its body", async () => {
  const server = await startServer(serverConfig({ bodyIdleMs: 60_000 }));
  await server.ready;
  const port = Number(new URL(server.url).port);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const head =
    "POST /tokenize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
  await conn.write(new TextEncoder().encode(head + '{"prompt": "a'));
  await new Promise((resolve) => setTimeout(resolve, 200));
  const started = performance.now();
  await server.shutdown(); // grace 0: at most a second more
  assert.ok(performance.now() - started < 3000, `shutdown took ${performance.now() - started} ms`);
  conn.close();
});

Deno.test("a body cut off by its client is a 499 for the logs; cut off by a shutdown, a 503 to retry elsewhere", async () => {
  const tokenizer = await loadTokenizer(fixture("tekken-full.json"), { cache: false });
  const service = engineLessService(tokenizer);
  const app = createApp(service);
  // A connection that drops while its body comes (the error Deno raises then).
  const dropped = () =>
    new Request("http://x/v1/chat/completions", {
      method: "POST",
      body: new ReadableStream({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('{"messages": ['));
          controller.error(Object.assign(new Error("connection reset"), { name: "ConnectionReset" }));
        },
      }),
    });
  assert.equal((await app.request(dropped())).status, 499);
  service.stopping = true;
  const cut = await app.request(dropped());
  assert.equal(cut.status, 503);
  assert.equal(cut.headers.get("retry-after"), "5");
  assert.match((await cut.json()).error.message, /shut down/);
});

Deno.test("a request names the model by its id, an alias, or the id:latest Ollama's API lists", async () => {
  const tokenizer = await loadTokenizer(fixture("tekken-full.json"), { cache: false });
  for (
    const [id, names] of [["tiny", ["tiny", "tiny:latest", "mini", "mini:latest"]], ["tiny:latest", [
      "tiny:latest",
    ]]] as const
  ) {
    const service = engineLessService(tokenizer);
    service.model = { ...service.model, id, aliases: ["mini"] };
    for (const name of names) assert.doesNotThrow(() => requireModel(service, name), name);
    assert.throws(() => requireModel(service, "tiny:7b"), /does not exist/);
  }
});

Deno.test("a cut conversation leaves the answer what it asks up to half the context, a quarter for more", () => {
  const service = { engine: { contextLength: 4096 }, defaults: {} } as unknown as Service;
  assert.equal(answerRoom(service, 2000), 2000);
  assert.equal(answerRoom(service, 32000), 1024);
  assert.equal(answerRoom(service, undefined), 1024);
  assert.equal(answerRoom({ ...service, defaults: { maxTokens: 300 } } as Service, undefined), 300);
});

Deno.test("each generation ends with a log line under its request's id (tokens read and written, times, how it ended) and in the metrics", async () => {
  const full = await loadTokenizer(fixture("tekken-full.json"), { cache: false });
  const service = engineLessService(full);
  const answer = [...full.encode("Hello there")];
  const lines: string[] = [];
  const print = console.log;
  console.log = (line: unknown) => void lines.push(String(line));
  const send = (engine: ScriptedEngine, body: Record<string, unknown>, init: RequestInit = {}) =>
    createApp({ ...service, engine }).request("/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "Say hi" }], ...body }),
      ...init,
    });
  const generations = () => lines.map((line) => JSON.parse(line)).filter((line) => line.msg === "generation");
  try {
    const whole = await send(new ScriptedEngine(answer, "length"), { n: 2, max_tokens: answer.length });
    const { usage } = await whole.json();
    const [line] = generations();
    assert.equal(line.id, whole.headers.get("X-Request-Id"));
    assert.equal(line.prompt_tokens, usage.prompt_tokens);
    assert.equal(line.completion_tokens, usage.completion_tokens);
    assert.equal(line.completion_tokens, 2 * answer.length);
    assert.equal(line.choices, 2);
    assert.equal(line.finish, "length");
    assert.ok(line.ttft_ms <= line.ms);

    // A stream the client leaves: the line says it was cancelled.
    const leaving = new AbortController();
    const engine = new ScriptedEngine(answer, "stop", 20);
    const streamed = await send(engine, { stream: true }, { signal: leaving.signal });
    const reader = streamed.body!.getReader();
    await reader.read();
    leaving.abort();
    await reader.cancel().catch(() => {});
    for (let i = 0; i < 100 && generations().length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    const cancelled = generations()[1];
    assert.equal(cancelled?.id, streamed.headers.get("X-Request-Id"));
    assert.equal(cancelled.finish, "cancelled");
    assert.ok(engine.given < answer.length);
    assert.ok(cancelled.completion_tokens >= 1, JSON.stringify(cancelled));

    // An engine that fails after a token: the line says why; the metrics count the choice as an error.
    const failing = new class extends ScriptedEngine {
      override async *generate(): AsyncGenerator<TokenEvent, FinishReason> {
        yield { id: answer[0] };
        throw new Error("the GPU fell over");
      }
    }([]);
    const failed = await send(failing, {});
    assert.equal(failed.status, 500);
    await failed.body?.cancel();
    const error = generations().at(-1);
    assert.equal(error.id, failed.headers.get("X-Request-Id"));
    assert.match(error.error, /the GPU fell over/);
    assert.equal(error.completion_tokens, 1);

    // A full queue turns it away (429): load, told apart from faults.
    const busy = new class extends ScriptedEngine {
      // deno-lint-ignore require-yield
      override async *generate(): AsyncGenerator<TokenEvent, FinishReason> {
        throw new EngineBusyError("16 sequences are already waiting", 1);
      }
    }([]);
    const turned = await send(busy, {});
    assert.equal(turned.status, 429);
    await turned.body?.cancel();
    assert.equal(generations().at(-1).finish, "rejected");

    const metrics = service.metrics.registry.render();
    assert.match(metrics, /^pixtral_choices_finished_total\{finish="rejected"\} 1$/m);
    assert.match(metrics, /^pixtral_choices_finished_total\{finish="length"\} 2$/m);
    assert.match(metrics, /^pixtral_choices_finished_total\{finish="cancelled"\} 1$/m);
    assert.match(metrics, /^pixtral_choices_finished_total\{finish="error"\} 1$/m);
    assert.match(metrics, /^pixtral_generation_duration_seconds_count 4$/m);
  } finally {
    console.log = print;
  }
});

Deno.test("a web page's form or text/plain POST from another site is refused; JSON, same-site, --cors sites and clients without an Origin pass", async () => {
  const app = createApp(await loadingService(), { corsOrigins: ["https://app.example"] });
  const body = JSON.stringify({ prompt: "hi" });
  const send = (headers: Record<string, string>) =>
    app.request("http://localhost:8080/tokenize", {
      method: "POST",
      headers: { host: "localhost:8080", ...headers },
      body,
    });
  for (
    const type of [
      "text/plain;charset=UTF-8",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
    ]
  ) {
    const refused = await send({ origin: "https://evil.example", "content-type": type });
    assert.equal(refused.status, 403, type);
    assert.match((await refused.json()).error.message, /--cors https:\/\/evil\.example/);
  }
  assert.equal((await send({ origin: "null", "content-type": "text/plain" })).status, 403);
  // Typed as JSON (a browser asks first), from a --cors site, from the server's own host, or from no browser.
  for (
    const headers of <Record<string, string>[]> [
      { origin: "https://evil.example", "content-type": "application/json" },
      { origin: "https://app.example", "content-type": "text/plain" },
      { origin: "http://localhost:8080", "content-type": "text/plain" },
      { "content-type": "application/x-www-form-urlencoded" },
    ]
  ) {
    assert.equal((await send(headers)).status, 200, JSON.stringify(headers));
  }
  // A --cors origin as a person writes it is the origin a browser sends.
  const written = createApp(await loadingService(), { corsOrigins: ["https://App.example/"] });
  const fromIt = await written.request("http://localhost:8080/tokenize", {
    method: "POST",
    headers: { host: "localhost:8080", origin: "https://app.example", "content-type": "text/plain" },
    body,
  });
  assert.equal(fromIt.status, 200);
});

Deno.test("on loopback, a request naming the server by a host of its own (DNS rebinding) is refused; addresses, localhost and --allowed-host names pass", async () => {
  const service = await loadingService();
  const get = (app: ReturnType<typeof createApp>, host: string, path = "/v1/models", headers = {}) =>
    app.request(`http://localhost${path}`, { headers: { host, ...headers } });
  const guarded = createApp(service, {
    allowedHosts: ["Proxy.Example.:443"],
    internalSecret: "s".repeat(16),
  });
  for (
    const host of [
      "evil.example:8080",
      "evil.example",
      "127.0.0.1.nip.io:8080",
      "localhost.evil.example",
      "a:b:c",
    ]
  ) {
    const refused = await get(guarded, host);
    assert.equal(refused.status, 403, host);
    const { error } = await refused.json();
    assert.equal(error.code, "host_not_allowed");
    assert.match(error.message, new RegExp(`--allowed-host ${host.split(":")[0].replaceAll(".", "\\.")}`));
  }
  for (
    const host of [
      "localhost:8080",
      "LOCALHOST",
      "localhost.:8080",
      "app.localhost:8080",
      "127.0.0.1:8080",
      "[::1]:8080",
      "192.168.1.20",
      "printer.local",
      "Proxy.Example:443",
    ]
  ) {
    assert.equal((await get(guarded, host)).status, 200, host);
  }
  // Gateways call the internal routes with their secret, under any name.
  const internal = await get(guarded, "tunnel.example", "/internal/v1/status", {
    authorization: `Bearer ${"s".repeat(16)}`,
  });
  assert.notEqual(internal.status, 403);
  await internal.body?.cancel();
  assert.equal((await get(createApp(service, { allowedHosts: ["*"] }), "evil.example")).status, 200);
  // Listening beyond loopback (no allowedHosts), the server is reached under any name.
  assert.equal((await get(createApp(service), "evil.example")).status, 200);
  for (
    const host of [
      "127.0.0.1",
      "127.1.2.3",
      "localhost",
      "::1",
      "[::1]",
      "0:0:0:0:0:0:0:1",
      "::ffff:127.0.0.1",
    ]
  ) {
    assert.ok(isLoopback(host), host);
  }
  for (const host of ["0.0.0.0", "::", "192.168.1.2", "example.com", "1::1"]) {
    assert.ok(!isLoopback(host), host);
  }
});
