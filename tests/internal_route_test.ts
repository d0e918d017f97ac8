/**
 * The GPU host's internal routes on a real server (tiny-pixtral): the secret, the status, and generation through
 * RemoteEngine giving exactly what the host's own engine gives (ids, log-probabilities, seeded sampling, image
 * files the host decodes, also on a host computing in f16); cancellation freeing the KV cache; bad bodies and
 * bad image files refused.
 */
import assert from "node:assert/strict";
import { encodeChat } from "../functions/chat/prepare.ts";
import type { Service } from "../functions/service.ts";
import type {
  EncodedImage,
  Engine,
  FinishReason,
  GenerateRequest,
  TokenEvent,
} from "../runtime/engine/engine.ts";
import { decodeImage, encodedImage } from "../runtime/images/preprocess.ts";
import type { ImageInput } from "../runtime/model/vision.ts";
import { RemoteEngine } from "../runtime/engine/remote.ts";
import { internalRoutes } from "../functions/routes/internal.ts";
import { jsonSchemaFormat } from "../runtime/grammar/format.ts";
import { BINARY, type HostStatus } from "../runtime/engine/wire.ts";
import { encodeRequest } from "./wire_helpers.ts";
import { dataUrl, serverConfig, withServer } from "./api_helpers.ts";
import { fixture } from "./helpers.ts";
import { ScriptedEngine } from "./service_helpers.ts";

const SECRET = "internal-secret-for-tests";
const auth = { authorization: `Bearer ${SECRET}` };
const image = await dataUrl("golden/images/chat_a_32x48.png");

async function collect(stream: AsyncGenerator<TokenEvent, FinishReason>) {
  const events: TokenEvent[] = [];
  while (true) {
    const next = await stream.next();
    if (next.done) return { events, finish: next.value };
    events.push(next.value);
  }
}

/** The request as a gateway prepares it: the image measured, its file sent on. */
async function prepared(
  service: Service,
  overrides: Partial<GenerateRequest<EncodedImage>> = {},
): Promise<GenerateRequest<EncodedImage>> {
  const gateway = { ...service, images: { ...service.images, prepare: encodedImage } };
  const { ids, images } = await encodeChat([{
    role: "user",
    content: [{ type: "text", text: "What is in" }, { type: "image_url", image_url: { url: image } }],
  }], gateway);
  return {
    ids,
    images: images as EncodedImage[],
    sampling: {
      temperature: 0.9,
      topP: 0.95,
      topK: 50,
      minP: 0,
      presencePenalty: 0,
      frequencyPenalty: 0.2,
      repetitionPenalty: 1,
      seed: 1234,
    },
    maxTokens: 6,
    stopIds: [service.tokenizer.special("</s>")],
    topLogprobs: 2,
    ...overrides,
  };
}

/** The same request as the host's own routes prepare it: the images decoded. */
async function decoded(request: GenerateRequest<EncodedImage>): Promise<GenerateRequest<ImageInput>> {
  const images = await Promise.all(request.images.map((i) => decodeImage(i.bytes, { resize: i.resize })));
  return { ...request, images };
}

async function until(what: string, ok: () => boolean) {
  for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(ok(), what);
}

Deno.test("internal routes: only mounted with a secret, and only for requests that carry it", async () => {
  await withServer({}, async ({ url }) => {
    const res = await fetch(`${url}/internal/v1/status`, { headers: auth });
    assert.equal(res.status, 404);
    await res.body?.cancel();
  });
  await withServer({ internalSecret: SECRET, apiKeys: ["client-key"] }, async ({ url }) => {
    const refused: Record<string, string>[] = [
      {},
      { authorization: "Bearer wrong-secret-of-same-size" },
      { authorization: "Bearer client-key" },
    ];
    for (const headers of refused) {
      const res = await fetch(`${url}/internal/v1/status`, { headers });
      assert.equal(res.status, 401);
      assert.equal((await res.json()).kind, "unavailable");
    }
    // The secret opens the internal routes only: the API still wants an API key.
    const res = await fetch(`${url}/v1/models`, { headers: auth });
    assert.equal(res.status, 401);
    await res.body?.cancel();
    const status: HostStatus = await (await fetch(`${url}/internal/v1/status`, { headers: auth })).json();
    assert.equal(status.ready, true);
    assert.equal(status.contextLength, 2048);
    const { gpuSubmits, ...load } = status.stats!;
    assert.deepEqual(load, {
      waiting: 0,
      maxWaiting: 320, // the queue and the free running places
      running: 0,
      kvBlocks: 128,
      kvBlocksUsed: 0,
      kvUsage: 0,
      prefixHitTokens: 0,
      preemptions: 0,
    });
    assert.ok(gpuSubmits! > 0, "loading the model submitted GPU work");
  });
});

Deno.test("internal routes: generation through RemoteEngine equals the host's own engine, then cancels", async () => {
  await withServer({ internalSecret: SECRET }, async ({ url, service }) => {
    const remote = new RemoteEngine({ hosts: [url], secret: SECRET });
    await remote.start();
    assert.equal(remote.contextLength, service.engine!.contextLength);
    const request = await prepared(service);
    assert.equal(request.images.length, 1);
    assert.deepEqual(request.images[0].bytes, await Deno.readFile(fixture("golden/images/chat_a_32x48.png")));
    const local = await collect(service.engine!.generate(await decoded(request)));
    const viaWire = await collect(remote.generate(request));
    assert.equal(local.events.length, 6);
    assert.ok(local.events.every((e) => e.logprob !== undefined && e.top?.length === 2));
    assert.deepEqual(viaWire, local);

    // An output format travels with the request, and the host keeps the output inside it as its engine does.
    const constrained = { ...request, maxTokens: 60, format: jsonSchemaFormat({ enum: ["yes", "no"] }) };
    const json = await collect(remote.generate(constrained));
    assert.deepEqual(json, await collect(service.engine!.generate(await decoded(constrained))));
    assert.equal(json.finish, "stop");
    assert.match(service.tokenizer.decode(json.events.map((e) => e.id)), /^"(yes|no)"$/);

    // Cancelling the remote stream reaches the host's engine: the sequence and its KV blocks are freed.
    const long = remote.generate({ ...request, maxTokens: 500, topLogprobs: undefined });
    await long.next();
    await until("the host runs the sequence", () => service.engine!.stats().kvBlocksUsed > 0);
    await long.return("stop");
    await until("the host freed the sequence", () => {
      const stats = service.engine!.stats();
      return stats.running === 0 && stats.waiting === 0 && stats.kvBlocksUsed === 0;
    });
  });
});

Deno.test("internal routes: a request's n choices, sent apart by a gateway, decode their image once", async () => {
  await withServer({ internalSecret: SECRET }, async ({ url, service }) => {
    let decodes = 0;
    // Slow enough that the choices' requests meet while it runs.
    service.images.prepare = async (...args: Parameters<typeof decodeImage>) => {
      decodes++;
      await new Promise((resolve) => setTimeout(resolve, 200));
      return decodeImage(...args);
    };
    const remote = new RemoteEngine({ hosts: [url], secret: SECRET });
    await remote.start();
    const request = await prepared(service);
    const choices = await Promise.all(
      [1, 2, 3].map((seed) =>
        collect(remote.generate({ ...request, sampling: { ...request.sampling, seed } }))
      ),
    );
    assert.equal(decodes, 1);
    // Each choice is its own seeded answer, as the host's engine gives it.
    for (const [i, choice] of choices.entries()) {
      const alone = await decoded({ ...request, sampling: { ...request.sampling, seed: i + 1 } });
      assert.deepEqual(choice, await collect(service.engine!.generate(alone)));
    }
  });
});

Deno.test("internal routes: a host computing in f16 gives through the wire what its own engine gives", async () => {
  const model = { ...serverConfig().model, activations: "f16" as const };
  await withServer({ internalSecret: SECRET, model }, async ({ url, service }) => {
    const remote = new RemoteEngine({ hosts: [url], secret: SECRET });
    await remote.start();
    const request = await prepared(service, { topLogprobs: undefined });
    assert.deepEqual(
      await collect(remote.generate(request)),
      await collect(service.engine!.generate(await decoded(request))),
    );
  });
});

Deno.test("internal routes: bodies that are not valid requests for this model are refused", async () => {
  await withServer({ internalSecret: SECRET, bodyIdleMs: 500 }, async ({ url, service }) => {
    const post = async (body: BodyInit) => {
      const res = await fetch(`${url}/internal/v1/generate`, {
        method: "POST",
        headers: { ...auth, "content-type": BINARY },
        body,
        ...(body instanceof ReadableStream ? { duplex: "half" } : {}),
      } as RequestInit);
      return { status: res.status, json: await res.json() };
    };
    const request = await prepared(service);
    const engine: Engine = service.engine!;
    const img = service.images.tokens.img;
    const { rows, cols, bytes: file } = request.images[0];
    assert.deepEqual([rows, cols], [3, 2]);
    const cases: [BodyInit, number, string, RegExp, number?][] = [
      ['{"messages": []}', 400, "bad_request", /must start with "PXG8"/],
      [
        encodeRequest({ ...request, ids: request.ids.map((id) => id === img ? 5 : id) }),
        400,
        "bad_request",
        /has 0 image tokens/,
      ],
      [
        encodeRequest({ ...request, images: [{ ...request.images[0], rows: request.images[0].rows + 1 }] }),
        400,
        "bad_request",
        /image tokens for images of/,
      ],
      [
        // As many patches, another grid: the tokens were laid out for an image the file is not.
        encodeRequest({ ...request, images: [{ ...request.images[0], rows: cols, cols: rows }] }),
        400,
        "bad_request",
        /image 1 decodes to 2x3 patches, not the gateway's 3x2/,
      ],
      [
        encodeRequest({
          ...request,
          images: [{ ...request.images[0], bytes: file.subarray(0, file.length / 2) }],
        }),
        400,
        "bad_request",
        /corrupt|truncated|end|format/i,
        0,
      ],
      [
        encodeRequest({
          ...request,
          images: [{ ...request.images[0], bytes: new TextEncoder().encode("GIF89a") }],
        }),
        400,
        "bad_request",
        /corrupt|truncated|end|format/i,
        0,
      ],
      [
        encodeRequest({ ...request, ids: [...request.ids, 999_999] }),
        400,
        "bad_request",
        /not in the vocabulary/,
      ],
      [encodeRequest({ ...request, maxTokens: engine.contextLength }), 400, "too_long", /context of 2048/],
      [new Uint8Array(200 * 1024 * 1024), 413, "bad_request", /larger than/],
      // A gateway that stops sending its body midway: the host's handler does not wait for ever.
      [
        new ReadableStream({ start: (c) => c.enqueue(encodeRequest(request).subarray(0, 10)) }),
        408,
        "bad_request",
        /no more of the request body came for 0.5 s \(after 10 bytes\)/,
      ],
    ];
    for (const [body, status, kind, message, image] of cases) {
      const res = await post(body);
      assert.equal(res.status, status, res.json.error);
      assert.equal(res.json.kind, kind);
      assert.match(res.json.error, message);
      // An image that does not decode is named, for the gateway to name its place in the client's request.
      assert.equal(res.json.image, image);
    }
    assert.deepEqual(engine.stats().running, 0);
  });
});

Deno.test("internal routes: a full queue answers 429 before the request's images are decoded", async () => {
  const config = serverConfig({ engine: { maxQueue: 1, maxRunning: 1 } });
  await withServer({ ...config, internalSecret: SECRET }, async ({ url, service }) => {
    let decodes = 0;
    service.images.prepare = (...args: Parameters<typeof decodeImage>) => (decodes++, decodeImage(...args));
    const request = await prepared(service, { maxTokens: 1000, stopIds: [], topLogprobs: undefined });
    const send = (signal?: AbortSignal) =>
      fetch(`${url}/internal/v1/generate`, {
        method: "POST",
        headers: { ...auth, "content-type": BINARY },
        body: encodeRequest(request),
        signal,
      });
    const controller = new AbortController();
    const running = send(controller.signal);
    await until("one runs", () => service.engine!.stats().running === 1);
    const waiting = send(controller.signal);
    await until("one waits", () => service.engine!.stats().waiting === 1);
    assert.equal(decodes, 2);
    const refused = await send();
    assert.equal(refused.status, 429);
    assert.equal((await refused.json()).kind, "busy");
    assert.equal(decodes, 2, "the refused request's image was not decoded");
    controller.abort();
    await Promise.allSettled([running, waiting].map((r) => r.then((res) => res.body?.cancel())));
    await until("the host freed both", () => {
      const stats = service.engine!.stats();
      return stats.running === 0 && stats.waiting === 0;
    });
  });
});

Deno.test("internal routes: while a request has no frame to send, the host sends keep-alive lines", async () => {
  await withServer({ internalSecret: SECRET }, async ({ url, service }) => {
    // An engine that takes 3.5 s before its first token (a long prefill, a full queue).
    const real = service.engine!;
    const slow: Engine = {
      contextLength: real.contextLength,
      vocabSize: real.vocabSize,
      stats: () => real.stats(),
      close: (graceMs) => real.close(graceMs),
      async *generate(request, signal) {
        await new Promise((r) => setTimeout(r, 3500));
        return yield* real.generate(request, signal);
      },
    };
    service.engine = slow;
    try {
      const res = await fetch(`${url}/internal/v1/generate`, {
        method: "POST",
        headers: { ...auth, "content-type": BINARY },
        body: encodeRequest(await prepared(service, { maxTokens: 2 })),
      });
      const lines = (await res.text()).split("\n");
      const firstFrame = lines.findIndex((line) => line !== "");
      assert.ok(firstFrame >= 2, `${firstFrame} keep-alive lines before the first frame`);
      assert.deepEqual(lines.at(-1), "");
      assert.ok(JSON.parse(lines.at(-2)!).finish, lines.at(-2));
      // An engine that submits no GPU work for longer than wedgedMs gets no keep-alive lines: a gateway takes the
      // silence for a hung host. (One that never does: the real one, once it began, would be busy with a prompt
      // past wedgedMs on a loaded machine.)
      const idle = new ScriptedEngine([1100, 1101], "stop", 1500);
      service.engine = { ...slow, generate: (request, signal) => idle.generate(request, signal) };
      const routes = internalRoutes(service, SECRET, { wedgedMs: 500 });
      const silent = await routes.request("/internal/v1/generate", {
        method: "POST",
        headers: { ...auth, "content-type": BINARY },
        body: encodeRequest(await prepared(service, { maxTokens: 2 })),
      });
      const text = await silent.text();
      assert.ok(
        text.startsWith("{"),
        `keep-alive lines from an engine that did nothing: ${JSON.stringify(text.slice(0, 9))}`,
      );
    } finally {
      service.engine = real;
    }
  });
});

Deno.test("internal routes: the prompt tokens the host's prefix cache gave cross the wire", async () => {
  await withServer({ internalSecret: SECRET }, async ({ url, service }) => {
    const remote = new RemoteEngine({ hosts: [url], secret: SECRET });
    await remote.start();
    // 150 tokens read in chunks of 64 (lavapipe): the second time, the first 128 come from the cache.
    const ids = [1, 3, ...Array.from({ length: 147 }, (_, i) => 1000 + (i * 31) % 1000), 4];
    const request = await prepared(service, { ids, images: [], topLogprobs: undefined });
    const first = await collect(remote.generate(request));
    const second = await collect(remote.generate(request));
    assert.equal(first.events[0].cached, undefined);
    assert.equal(second.events[0].cached, 128);
  });
});

Deno.test("internal routes: an image a gateway measured at low detail is decoded by the host at that size", async () => {
  await withServer({ internalSecret: SECRET }, async ({ url, service }) => {
    const remote = new RemoteEngine({ hosts: [url], secret: SECRET });
    await remote.start();
    const wide = await dataUrl("golden/images/wide_1500x900.png");
    const gateway = { ...service, images: { ...service.images, prepare: encodedImage } };
    const { ids, images } = await encodeChat([{
      role: "user",
      content: [{ type: "image_url", image_url: { url: wide, detail: "low" } }, { type: "text", text: "Hi" }],
    }], gateway);
    const [image] = images as EncodedImage[];
    // 1500x900 scaled to 512x307: 32x20 patches (64x39 at the host's own 1024).
    assert.deepEqual([image.cols, image.rows, image.maxImageSize], [32, 20, 512]);
    const request = {
      ...(await prepared(service)),
      ids,
      images: [image],
      maxTokens: 2,
      topLogprobs: undefined,
    };
    const own = await decodeImage(image.bytes, { maxImageSize: 512 });
    const viaWire = await collect(remote.generate(request));
    const local = await collect(service.engine!.generate({ ...request, images: [own] }));
    assert.deepEqual(local.events.map((e) => e.id), viaWire.events.map((e) => e.id));
    // The prefix cache gave the second its image: the host's pixels were these.
    assert.ok(local.events[0].cached! >= 512);
    // Without the size the host decodes it at its own and finds the layout apart from the prompt's.
    const { maxImageSize: _, ...unsized } = image;
    await assert.rejects(
      collect(remote.generate({ ...request, images: [unsized] })),
      /not the gateway's 32x20/,
    );
  });
});
