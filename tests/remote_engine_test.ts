/**
 * RemoteEngine's routing and failure handling against scripted GPU hosts on loopback (no model): least-loaded
 * choice, retry before the first token, an error (never a silent end) after it, 429 when all are busy, 503
 * when none is healthy, cancellation reaching the host, hosts of another model left out, hosts that stop
 * answering or report nonsense left out, and routing by context length.
 */
import assert from "node:assert/strict";
import {
  type EncodedImage,
  EngineBusyError,
  EngineUnavailableError,
  type FinishReason,
  type GenerateRequest,
  GREEDY,
  InvalidRequestError,
  RequestTooLongError,
  type TokenEvent,
} from "../runtime/engine/engine.ts";
import {
  AFFINITY_SLACK,
  AFFINITY_TOKENS,
  RemoteEngine,
  type RemoteEngineOptions,
  routingKey,
  SecretRefusedError,
} from "../runtime/engine/remote.ts";
import {
  decodeRequest,
  encodeFrame,
  type Frame,
  type HostStatus,
  NDJSON,
  WIRE_MAGIC,
} from "../runtime/engine/wire.ts";
import { DEAD_URL } from "./helpers.ts";

const SECRET = "test-secret-0123456789";

function hostStatus(load: { waiting?: number; running?: number; kvUsage?: number } = {}): HostStatus {
  return {
    wire: WIRE_MAGIC,
    ready: true,
    model: { id: "tiny", aliases: [], created: 0, demo: false, description: "" },
    contextLength: 4096,
    stats: {
      waiting: load.waiting ?? 0,
      running: load.running ?? 0,
      kvUsage: load.kvUsage ?? 0,
      kvBlocks: 100,
      kvBlocksUsed: Math.round((load.kvUsage ?? 0) * 100),
    },
    vocabSize: 1000,
    images: {
      enabled: true,
      maxImages: 8,
      maxBytes: 1e7,
      maxPixels: 5e7,
      fetchUrls: true,
      timeoutMs: 1e4,
      maxRedirects: 3,
      resize: "mistral",
      orientation: "exif",
      maxImageSize: 1024,
      patchSize: 16,
      tokens: { img: 10, imgBreak: 12, imgEnd: 13 },
    },
    defaults: { temperature: 0.7, topP: 1 },
    tokenizer: "ab".repeat(32),
  };
}

type Script = (request: GenerateRequest, signal: AbortSignal) => Response | Promise<Response>;

/** A scripted GPU host: real status and secret checks, generation as `script` says. */
function fakeHost(script: Script, status: () => HostStatus | Promise<HostStatus> = () => hostStatus()) {
  const calls: GenerateRequest[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    if (req.headers.get("authorization") !== `Bearer ${SECRET}`) {
      return new Response(encodeFrame({ error: "wrong secret", kind: "unavailable" }), { status: 401 });
    }
    const path = new URL(req.url).pathname;
    if (path === "/internal/v1/status") return Response.json(await status());
    if (path === "/internal/v1/generate") {
      const request = decodeRequest(await req.arrayBuffer());
      calls.push(request);
      return await script(request, req.signal);
    }
    return new Response("not found", { status: 404 });
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, calls, server };
}

/** A streamed answer: the frames, then either the end of the body or a cut connection. */
function frames(list: Frame[], options: { cut?: boolean; delayMs?: number } = {}): Response {
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    async start(c) {
      for (const frame of list) {
        c.enqueue(encoder.encode(encodeFrame(frame)));
        if (options.delayMs) await new Promise((r) => setTimeout(r, options.delayMs));
      }
      if (options.cut) c.error(new Error("the host died"));
      else c.close();
    },
  });
  return new Response(body, { headers: { "content-type": NDJSON } });
}

const tokens = (ids: number[], finish: FinishReason = "length"): Frame[] => [
  ...ids.map((id) => ({ token: { id } })),
  { finish },
];

const request: GenerateRequest<EncodedImage> = {
  ids: [1, 5, 6],
  images: [],
  sampling: GREEDY,
  maxTokens: 3,
  stopIds: [2],
};

async function collect(stream: AsyncGenerator<TokenEvent, FinishReason>) {
  const ids: number[] = [];
  while (true) {
    const next = await stream.next();
    if (next.done) return { ids, finish: next.value };
    ids.push(next.value.id);
  }
}

async function withHosts(
  hosts: ReturnType<typeof fakeHost>[],
  body: (engine: RemoteEngine) => Promise<void>,
  extra: string[] = [],
  options: Partial<RemoteEngineOptions> = {},
) {
  const engine = new RemoteEngine({
    hosts: [...hosts.map((h) => h.url), ...extra],
    secret: SECRET,
    ...options,
  });
  try {
    await engine.start();
    await body(engine);
  } finally {
    await engine.close();
    for (const h of hosts) await h.server.shutdown();
  }
}

Deno.test("remote: requests go to the least loaded host, and spread over equally loaded ones", async () => {
  const busy = fakeHost(() => frames(tokens([7])), () => hostStatus({ waiting: 3, running: 4 }));
  const idle = fakeHost(() => frames(tokens([8])), () => hostStatus({ running: 1 }));
  await withHosts([busy, idle], async (engine) => {
    assert.deepEqual((await collect(engine.generate(request))).ids, [8]);
    assert.equal(busy.calls.length, 0);
    assert.deepEqual(engine.stats(), {
      waiting: 3,
      running: 5,
      kvUsage: 0,
      kvBlocks: 200,
      kvBlocksUsed: 0,
      prefixHitTokens: 0,
      preemptions: 0,
    });
  });
  const a = fakeHost(() => frames(tokens([1])));
  const b = fakeHost(() => frames(tokens([1])));
  await withHosts([a, b], async (engine) => {
    // Requests that begin alike go to one host (its prefix cache has their beginning) until it has more than
    // AFFINITY_SLACK requests more than the other (each request sent counts until the next status).
    const alike = (tail: number) => ({ ...request, ids: [...Array(AFFINITY_TOKENS).fill(1000), tail] });
    for (let i = 0; i < AFFINITY_SLACK + 1; i++) await collect(engine.generate(alike(i)));
    const [first, other] = a.calls.length ? [a, b] : [b, a];
    assert.deepEqual([first.calls.length, other.calls.length], [AFFINITY_SLACK + 1, 0]);
    await collect(engine.generate(alike(99)));
    assert.deepEqual([first.calls.length, other.calls.length], [AFFINITY_SLACK + 1, 1]);
  });
  const c = fakeHost(() => frames(tokens([1])));
  const d = fakeHost(() => frames(tokens([1])));
  await withHosts([c, d], async (engine) => {
    // Different beginnings spread over both hosts.
    for (let i = 0; i < 8; i++) await collect(engine.generate({ ...request, ids: [1, 3, 1000 + i, 4] }));
    assert.ok(c.calls.length > 0 && d.calls.length > 0, `${c.calls.length} and ${d.calls.length}`);
  });
});

Deno.test("remote: a request's routing key covers its first tokens and an image that starts among them", () => {
  const image = {
    rows: 1,
    cols: 2,
    bytes: Uint8Array.from({ length: 20_000 }, (_, i) => (i * i) & 255),
    resize: "mistral" as const,
  };
  // Files that differ in one of the bytes the key samples (one in every 4 here).
  const other = { ...image, bytes: image.bytes.with(10_000, 7) };
  const early = { ...request, ids: [1, 3, 10, 10, 13, 1500, 4], images: [image] };
  const key = routingKey(early, 10);
  assert.equal(routingKey({ ...early, ids: [...early.ids] }, 10), key);
  assert.notEqual(routingKey({ ...early, images: [other] }, 10), key);
  assert.notEqual(routingKey({ ...early, ids: [1, 3, 10, 10, 13, 1501, 4] }, 10), key);
  // Past the first AFFINITY_TOKENS tokens nothing counts, the image included.
  const head = Array(AFFINITY_TOKENS).fill(1000);
  const late = { ...request, ids: [...head, 10, 10, 13, 4], images: [image] };
  assert.equal(routingKey(late, 10), routingKey({ ...late, images: [other] }, 10));
  assert.equal(routingKey(late, 10), routingKey({ ...request, ids: [...head, 2000] }, 10));
  // A gateway sends files; decoded pixels are the GPU host's own.
  const engine = new RemoteEngine({ hosts: ["http://127.0.0.1:9"], secret: "s" });
  const decoded = { rows: 1, cols: 2, pixels: new Float32Array(3 * 16 * 32) };
  assert.throws(() => engine.generate({ ...early, images: [decoded] }), /images as files/);
});

Deno.test("remote: a host that fails before the first token is replaced; the request is retried", async () => {
  const failures: Script[] = [
    () => new Response(encodeFrame({ error: "model loading", kind: "unavailable" }), { status: 503 }),
    () => frames([{ error: "the GPU step failed", kind: "internal" }]),
    () => frames([], { cut: true }),
    () => frames([]), // ended without a finish frame
    () => new Response("<html>bad gateway</html>", { status: 502 }),
  ];
  const counting = (preemptions: number, running = 0) => (): HostStatus => {
    const status = hostStatus({ running });
    return { ...status, stats: { ...status.stats!, preemptions, prefixHitTokens: preemptions } };
  };
  for (const script of failures) {
    const bad = fakeHost(script, counting(4));
    const good = fakeHost(() => frames(tokens([4, 5, 6])), counting(1, 9));
    await withHosts([bad, good], async (engine) => {
      assert.deepEqual(await collect(engine.generate(request)), { ids: [4, 5, 6], finish: "length" });
      assert.deepEqual([bad.calls.length, good.calls.length], [1, 1]);
      assert.deepEqual(good.calls[0].ids, request.ids);
      assert.equal(engine.retries.get(), 1);
      assert.ok(engine.health()[0].down, "the failed host is marked down");
      // Its load leaves the sums; its counters stay (a counter that went back would read as a reset).
      const stats = engine.stats();
      assert.deepEqual([stats.running, stats.preemptions, stats.prefixHitTokens], [9, 5, 5]);
    });
  }
  // A host that restarts counts from 0 again: the sums keep what it had counted, also when its new count has
  // passed the old one by the time it is asked (its model's load time tells the restart).
  let count = 7, created = 1000;
  const restarting = fakeHost(() => frames(tokens([1])), () => {
    const status = counting(count)();
    return { ...status, model: { ...status.model, created } };
  });
  const engine = new RemoteEngine({ hosts: [restarting.url], secret: SECRET, statusTtlMs: 0 });
  try {
    await engine.start();
    for (
      const [now, summed, load] of [[7, 7, 1000], [2, 9, 1000], [3, 10, 1000], [0, 10, 1000], [12, 22, 1001]]
    ) {
      count = now;
      created = load;
      for (let i = 0; i < 100 && engine.stats().preemptions !== summed; i++) {
        await engine.refresh();
        await new Promise((r) => setTimeout(r, 5));
      }
      assert.deepEqual([engine.stats().preemptions, engine.stats().prefixHitTokens], [summed, summed]);
    }
  } finally {
    await engine.close();
    await restarting.server.shutdown();
  }
  // A refused connection: the host died since its last status.
  const doomed = fakeHost(() => frames(tokens([9])), () => hostStatus({ running: 0 }));
  const loaded = () => hostStatus({ running: 5 });
  const fine = fakeHost(() => frames(tokens([3])), loaded);
  await withHosts([doomed, fine], async (engine) => {
    await doomed.server.shutdown();
    assert.deepEqual((await collect(engine.generate(request))).ids, [3]);
  });
});

Deno.test("remote: a host failing after the first token ends the stream with an error, not a finish", async () => {
  const dies = fakeHost(() =>
    frames([{ token: { id: 4 } }, { token: { id: 5 } }], { cut: true, delayMs: 20 })
  );
  const other = fakeHost(() => frames(tokens([1, 2, 3])), () => hostStatus({ running: 9 }));
  await withHosts([dies, other], async (engine) => {
    const stream = engine.generate(request);
    assert.deepEqual((await stream.next()).value, { id: 4 });
    assert.deepEqual((await stream.next()).value, { id: 5 });
    await assert.rejects(
      stream.next(),
      (err: Error) => err instanceof EngineUnavailableError && /failed after 2 tokens/.test(err.message),
    );
    assert.equal(other.calls.length, 0, "a started stream is not replayed elsewhere");
  });
  const errs = fakeHost(() =>
    frames([{ token: { id: 4 } }, { error: "GPU lost", kind: "internal" }], { delayMs: 20 })
  );
  await withHosts([errs], async (engine) => {
    await assert.rejects(collect(engine.generate(request)), /after 1 tokens of this response: GPU lost/);
  });
});

Deno.test("remote: 429 when every host is busy, 503 naming each host when none is healthy", async () => {
  const full = () =>
    new Response(encodeFrame({ error: "queue full", kind: "busy", retryAfter: 3 }), { status: 429 });
  const a = fakeHost(full), b = fakeHost(full);
  await withHosts([a, b], async (engine) => {
    await assert.rejects(
      collect(engine.generate(request)),
      (err: Error) => err instanceof EngineBusyError && err.retryAfterSeconds === 3,
    );
    assert.deepEqual([a.calls.length, b.calls.length], [1, 1]);
    assert.deepEqual(engine.health().map((h) => h.down), [undefined, undefined], "busy is not down");
  });
  const dead = DEAD_URL;
  const loading = fakeHost(() => frames([]), () => ({ ...hostStatus(), ready: false, stats: null }));
  const engine = new RemoteEngine({ hosts: [dead, loading.url], secret: SECRET });
  await assert.rejects(engine.start(), (err: Error) => {
    assert.ok(err instanceof EngineUnavailableError);
    // Hosts are named by their place in the list: their addresses stay in the gateway's logs.
    assert.match(err.message, /GPU host 1 of 2: .+; GPU host 2 of 2: loading/);
    assert.ok(!err.message.includes("127.0.0.1"), err.message);
    return true;
  });
  await loading.server.shutdown();
  const guarded = fakeHost(() => frames([]));
  // Every host refusing the secret is a misconfiguration (the gateway's 500), not an outage to retry.
  const wrong = new RemoteEngine({ hosts: [guarded.url], secret: "not-the-secret" });
  await assert.rejects(wrong.start(), (err: Error) => {
    assert.ok(err instanceof SecretRefusedError, String(err));
    assert.match(err.message, /PIXTRAL_INTERNAL_SECRET must equal the hosts' --internal-secret/);
    return true;
  });
  await guarded.server.shutdown();
});

Deno.test("remote: a request too long for the context is not retried elsewhere", async () => {
  const a = fakeHost(() =>
    new Response(encodeFrame({ error: "too long", kind: "too_long" }), { status: 400 })
  );
  // b has too much work to be preferred for any prefix: a takes the request.
  const b = fakeHost(() => frames(tokens([1])), () => hostStatus({ running: AFFINITY_SLACK + 1 }));
  await withHosts([a, b], async (engine) => {
    await assert.rejects(collect(engine.generate(request)), RequestTooLongError);
    assert.equal(b.calls.length, 0);
  });
});

Deno.test("remote: stopping the stream or aborting its signal cancels the host's generation", async () => {
  const cancelled: string[] = [];
  const endless = fakeHost((_req, signal) => {
    let n = 0;
    const encoder = new TextEncoder();
    signal.addEventListener("abort", () => cancelled.push("signal"));
    return new Response(
      new ReadableStream<Uint8Array>({
        async pull(c) {
          await new Promise((r) => setTimeout(r, 5));
          c.enqueue(encoder.encode(encodeFrame({ token: { id: n++ } })));
        },
        cancel() {
          cancelled.push("body");
        },
      }),
      { headers: { "content-type": NDJSON } },
    );
  });
  await withHosts([endless], async (engine) => {
    const stream = engine.generate(request);
    await stream.next();
    await stream.return("stop");
    const controller = new AbortController();
    const second = engine.generate(request, controller.signal);
    await second.next();
    controller.abort();
    await assert.rejects(collect(second), (err: Error) => err.name === "AbortError");
    for (let i = 0; i < 100 && cancelled.filter((c) => c === "body").length < 2; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(cancelled.filter((c) => c === "body").length, 2, `host saw: ${cancelled}`);
  });
});

Deno.test("remote: a host serving another model or tokenizer is left out", async () => {
  const main = fakeHost(() => frames(tokens([1])), () => hostStatus({ running: 5 }));
  const other = fakeHost(() => frames(tokens([2])), () => ({ ...hostStatus(), tokenizer: "cd".repeat(32) }));
  await withHosts([main, other], async (engine) => {
    assert.match(
      engine.health()[1].down!,
      /tokenizer cdcdcdcdcdcd.*the gateway "tiny" \(tokenizer abababababab/,
    );
    assert.deepEqual((await collect(engine.generate(request))).ids, [1]);
    assert.equal(other.calls.length, 0);
  });
  // One serving other LoRA adapters per request would refuse the requests naming the gateway's.
  const withLora = (loras: string[]) => () => ({ ...hostStatus(), model: { ...hostStatus().model, loras } });
  const a = fakeHost(() => frames(tokens([1])), withLora(["sql", "ocr"]));
  const b = fakeHost(() => frames(tokens([2])), withLora(["sql"]));
  await withHosts([a, b], async (engine) => {
    assert.match(engine.health()[1].down!, /LoRA adapters \["sql"\], the gateway \["ocr","sql"\]/);
    assert.deepEqual((await collect(engine.generate({ ...request, lora: "ocr" }))).ids, [1]);
    assert.equal(b.calls.length, 0);
    assert.equal(a.calls[0].lora, "ocr");
  });
});

Deno.test("remote: a host that hangs times out and delays no other host", async () => {
  const release = Promise.withResolvers<void>();
  const stuck = fakeHost(async () => {
    await release.promise;
    return new Response("late", { status: 503 });
  });
  const silent = fakeHost(() => frames(tokens([1])), async () => {
    await release.promise;
    return hostStatus();
  });
  const good = fakeHost(() => frames(tokens([6])), () => hostStatus({ running: 9 }));
  const engine = new RemoteEngine({
    hosts: [stuck.url, silent.url, good.url],
    secret: SECRET,
    statusTimeoutMs: 300,
    timeoutMs: 300,
  });
  try {
    let started = performance.now();
    await engine.start();
    assert.ok(performance.now() - started < 2000);
    assert.equal(engine.health()[1].down, "no answer within 300 ms");
    // The stuck host reported the lightest load, so it is picked first; its answer never starts.
    started = performance.now();
    assert.deepEqual((await collect(engine.generate(request))).ids, [6]);
    assert.ok(performance.now() - started < 2000);
    assert.match(engine.health()[0].down!, /no answer within 300 ms/);
  } finally {
    release.resolve();
    await engine.close();
    for (const host of [stuck, silent, good]) await host.server.shutdown();
  }
});

/**
 * A response that sends `first`, then nothing but keep-alive lines every `keepAliveMs` (none if not given) for
 * 3 s, then ends (so that the server can shut down: it does not see a client that left while it writes nothing).
 */
function stalls(first: Frame[], keepAliveMs?: number): Response {
  const encoder = new TextEncoder();
  let timer: ReturnType<typeof setInterval> | undefined, end: ReturnType<typeof setTimeout> | undefined;
  const stop = () => (clearInterval(timer), clearTimeout(end));
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (const frame of first) c.enqueue(encoder.encode(encodeFrame(frame)));
      if (keepAliveMs) timer = setInterval(() => c.enqueue(encoder.encode("\n")), keepAliveMs);
      end = setTimeout(() => (stop(), c.close()), 3000);
    },
    cancel: stop,
  });
  return new Response(body, { headers: { "content-type": NDJSON } });
}

Deno.test("remote: a host that stops sending is left like one that failed; keep-alive lines keep it", async () => {
  const silent = fakeHost(() => stalls([]));
  const good = fakeHost(() => frames(tokens([6])), () => hostStatus({ running: 9 }));
  await withHosts(
    [silent, good],
    async (engine) => {
      // Before the first token: the request goes to the other host.
      assert.deepEqual((await collect(engine.generate(request))).ids, [6]);
      assert.match(engine.health()[0].down!, /no answer for 300 ms/);
    },
    [],
    { stallMs: 300 },
  );
  // After tokens: the stream ends with an error, in about the stall time rather than never.
  const halfway = fakeHost(() => stalls([{ token: { id: 4 } }]));
  await withHosts(
    [halfway],
    async (engine) => {
      const started = performance.now();
      await assert.rejects(
        collect(engine.generate(request)),
        (err: Error) =>
          err instanceof EngineUnavailableError && /after 1 tokens.*no answer for 300 ms/.test(err.message),
      );
      assert.ok(performance.now() - started < 3000);
    },
    [],
    { stallMs: 300 },
  );
  // A consumer that pauses longer than the stall time is not a silent host.
  const quick = fakeHost(() => frames(tokens([1, 2, 3])));
  await withHosts(
    [quick],
    async (engine) => {
      const stream = engine.generate(request);
      const ids: number[] = [];
      for (let next = await stream.next(); !next.done; next = await stream.next()) {
        ids.push(next.value.id);
        await new Promise((r) => setTimeout(r, 500));
      }
      assert.deepEqual(ids, [1, 2, 3]);
    },
    [],
    { stallMs: 300 },
  );
  // A host that sends keep-alive lines for longer than the stall time is still working: its tokens come. (Lines
  // 6 times as often as the stall time: room for pauses of a loaded machine's event loop.)
  const slow = fakeHost(() => stalls([], 100));
  await withHosts(
    [slow],
    async (engine) => {
      const stream = engine.generate(request);
      const first = stream.next();
      const outcome = await Promise.race([
        first.then(() => "ended"),
        new Promise((r) => setTimeout(() => r("waiting"), 1500)),
      ]);
      assert.equal(outcome, "waiting", "a host sending keep-alive lines is not dropped");
      await stream.return("stop");
    },
    [],
    { stallMs: 600 },
  );
});

Deno.test("remote: errors clients read name no host address, IPv6 and host names included", async () => {
  const proxy = fakeHost(() => new Response("<html>bad gateway at 10.0.0.7</html>", { status: 502 }));
  const engine = new RemoteEngine({ hosts: [proxy.url, "http://[fd00::5]:8080", DEAD_URL], secret: SECRET });
  try {
    await engine.start();
    const err = await collect(engine.generate(request)).catch((e) => e);
    assert.ok(err instanceof EngineUnavailableError, String(err));
    assert.match(err.message, /GPU host 1 of 3: HTTP 502/);
    for (const hidden of ["127.0.0.1", "fd00", "10.0.0.7", "bad gateway"]) {
      assert.ok(!err.message.includes(hidden), err.message);
    }
  } finally {
    await engine.close();
    await proxy.server.shutdown();
  }
});

Deno.test("remote: a request a host refuses as bad is a 400 with the host's reason, tried nowhere else", async () => {
  const refusing = fakeHost(() =>
    new Response(encodeFrame({ error: "the schema cannot be compiled: minItems", kind: "bad_request" }), {
      status: 400,
    })
  );
  const other = fakeHost(() => frames(tokens([6])), () => hostStatus({ running: AFFINITY_SLACK + 1 }));
  await withHosts([refusing, other], async (engine) => {
    await assert.rejects(
      collect(engine.generate(request)),
      (err: Error) =>
        err instanceof InvalidRequestError && err.message === "the schema cannot be compiled: minItems",
    );
    assert.equal(other.calls.length, 0);
  });
});

Deno.test("remote: a malformed status or a token outside the vocabulary puts a host out; Retry-After is bounded", async () => {
  const nonsense = fakeHost(() => frames(tokens([1])), () => ({ ...hostStatus(), stats: null }));
  const outside = fakeHost(() => frames(tokens([4_000_000_000])));
  const good = fakeHost(() => frames(tokens([6])), () => hostStatus({ running: 9 }));
  await withHosts([nonsense, outside, good], async (engine) => {
    assert.match(engine.health()[0].down!, /status is malformed/);
    assert.deepEqual((await collect(engine.generate(request))).ids, [6]);
    assert.match(engine.health()[1].down!, /token 4000000000, outside the vocabulary/);
    assert.equal(nonsense.calls.length, 0);
  });
  const busy = fakeHost(() =>
    new Response(encodeFrame({ error: "queue full", kind: "busy", retryAfter: 1e9 }), { status: 429 })
  );
  await withHosts([busy], async (engine) => {
    await assert.rejects(
      collect(engine.generate(request)),
      (err: Error) => err instanceof EngineBusyError && err.retryAfterSeconds === 300,
    );
  });
});

Deno.test("remote: requests go to a host whose context holds them; the gateway's context is the smallest", async () => {
  const small = fakeHost(() => frames(tokens([1])), () => ({ ...hostStatus(), contextLength: 512 }));
  const large = fakeHost(
    () => frames(tokens([2])),
    () => ({ ...hostStatus({ running: 9 }), contextLength: 2048 }),
  );
  await withHosts([small, large], async (engine) => {
    assert.equal(engine.contextLength, 512);
    const long = { ...request, maxTokens: 1000 };
    assert.deepEqual((await collect(engine.generate(long))).ids, [2], "only the large host holds it");
    assert.deepEqual((await collect(engine.generate(request))).ids, [1], "the small one is less loaded");
    await assert.rejects(collect(engine.generate({ ...request, maxTokens: 3000 })), RequestTooLongError);
    assert.equal(small.calls.length, 1);
  });
  // The one host that holds a request is busy: the answer is its 429, not "too long".
  const busy = fakeHost(
    () => new Response(encodeFrame({ error: "queue full", kind: "busy", retryAfter: 2 }), { status: 429 }),
    () => ({ ...hostStatus(), contextLength: 2048 }),
  );
  const smaller = fakeHost(() => frames(tokens([1])), () => ({ ...hostStatus(), contextLength: 512 }));
  await withHosts([busy, smaller], async (engine) => {
    await assert.rejects(
      collect(engine.generate({ ...request, maxTokens: 1000 })),
      (err: Error) => err instanceof EngineBusyError,
    );
    assert.equal(smaller.calls.length, 0);
  });
});

/** What refresh says once the statuses asked for have come. */
async function settled(engine: RemoteEngine): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const unavailable = await engine.refresh();
    if (unavailable) return unavailable;
    await new Promise((r) => setTimeout(r, 10));
  }
  return "still available";
}

Deno.test("remote: refresh says when no host can serve; hosts that all changed model supersede the gateway", async () => {
  let model = "tiny";
  const a = fakeHost(
    () => frames(tokens([1])),
    () => ({ ...hostStatus(), model: { ...hostStatus().model, id: model } }),
  );
  const engine = new RemoteEngine({ hosts: [a.url], secret: SECRET, statusTtlMs: 0 });
  try {
    await engine.start();
    assert.equal(await engine.refresh(), undefined);
    assert.equal(engine.superseded, false);
    model = "tiny-v2";
    // While a host is known healthy the answers are not awaited: the next refresh sees them.
    assert.match(await settled(engine), /no GPU host can serve: GPU host 1 of 1: it serves model "tiny-v2"/);
    assert.equal(engine.superseded, true);
    await a.server.shutdown();
    assert.match((await engine.refresh())!, /GPU host 1 of 1: unreachable/);
    assert.equal(engine.superseded, true, "last seen serving another model");
  } finally {
    await engine.close();
  }
  // A host restarted with another image layout cannot serve what the gateway prepares: it is left out, and once
  // all have it the gateway is built again. One with other limits or defaults (which only the gateway applies)
  // serves on; when every serving host has them, the gateway is built again too.
  let settings = hostStatus();
  const b = fakeHost(() => frames(tokens([1])), () => settings);
  const c = fakeHost(() => frames(tokens([1])), () => hostStatus());
  const gateway = new RemoteEngine({ hosts: [b.url, c.url], secret: SECRET, statusTtlMs: 0 });
  const healthy = async () => {
    for (let i = 0; i < 100; i++) {
      await gateway.refresh();
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  try {
    await gateway.start();
    settings = { ...hostStatus(), images: { ...hostStatus().images, resize: "hf" } };
    await healthy();
    assert.match(
      gateway.health()[0].down ?? "",
      /its settings differ from the gateway's \(images\.resize "hf"/,
    );
    assert.equal(gateway.superseded, false, "host 2 serves the gateway's settings");
    settings = {
      ...hostStatus(),
      defaults: { temperature: 0.3, topP: 1 },
      images: { ...hostStatus().images, maxImages: 3 },
    };
    await healthy();
    assert.match(
      gateway.health()[0].down ?? "",
      /images\.maxImages 3, the gateway's/,
      "fewer images: left out",
    );
    settings = { ...hostStatus(), defaults: { temperature: 0.3, topP: 1 } };
    await healthy();
    assert.equal(gateway.health()[0].down, undefined, "other defaults: serves on");
    assert.equal(gateway.superseded, false);
    await c.server.shutdown();
    await healthy();
    assert.equal(gateway.superseded, true, "every serving host has other defaults");
  } finally {
    await gateway.close();
    await b.server.shutdown();
  }
  // The model most hosts serve is the gateway's, whichever answers first; a host serving it that pauses does not
  // make the gateway change model.
  const serving = (id: string) => () => ({ ...hostStatus(), model: { ...hostStatus().model, id } });
  const hosts = [
    fakeHost(() => frames(tokens([1])), serving("v2")),
    ...[0, 1].map(() => fakeHost(() => frames(tokens([2])), serving("v1"))),
  ];
  const pool = new RemoteEngine({ hosts: hosts.map((h) => h.url), secret: SECRET, statusTtlMs: 0 });
  try {
    assert.equal((await pool.start()).model.id, "v1");
    assert.match(pool.health()[0].down!, /serves model "v2"/);
    await hosts[1].server.shutdown();
    await hosts[2].server.shutdown();
    assert.match(await settled(pool), /GPU host 2 of 3: unreachable/);
    assert.equal(pool.superseded, false, "its hosts served v1 a moment ago");
  } finally {
    await pool.close();
    await hosts[0].server.shutdown();
  }
});

Deno.test("remote: a gateway without requests is not superseded by time alone", async () => {
  // One host serves the gateway's model, one another: a gateway that checks nothing while idle (statuses are
  // asked for with requests) keeps its model, as its last statuses had it.
  const hosts = [
    fakeHost(() => frames(tokens([1])), () => hostStatus()),
    fakeHost(
      () => frames(tokens([1])),
      () => ({ ...hostStatus(), model: { ...hostStatus().model, id: "v2" } }),
    ),
  ];
  const pool = new RemoteEngine({ hosts: hosts.map((h) => h.url), secret: SECRET, statusTtlMs: 60_000 });
  try {
    await pool.start();
    assert.equal(pool.superseded, false);
    await new Promise((resolve) => setTimeout(resolve, 10_500));
    assert.equal(pool.superseded, false, "idle for longer than a host's pause may last");
  } finally {
    await pool.close();
    for (const host of hosts) await host.server.shutdown();
  }
});
