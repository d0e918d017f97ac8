/**
 * The gateway <-> GPU host wire format: requests round-trip exactly, image files byte for byte, malformed bodies
 * are refused with what is wrong, and token frames survive any chunking of the stream.
 */
import assert from "node:assert/strict";
import type { EncodedImage, GenerateRequest } from "../runtime/engine/engine.ts";
import {
  decodeFrame,
  decodeRequest,
  encodeFrame,
  type Frame,
  readFrames,
  requestParts,
  WireError,
} from "../runtime/engine/wire.ts";
import { encodeRequest } from "./wire_helpers.ts";

/** A stand-in for an image file: the wire carries any bytes; lengths that are not multiples of 4 are padded. */
function image(rows: number, cols: number, length: number, resize: "mistral" | "hf"): EncodedImage {
  return { rows, cols, bytes: Uint8Array.from({ length }, (_, i) => (i * 37 + length) & 255), resize };
}

const request: GenerateRequest<EncodedImage> = {
  ids: [1, 3, 10, 10, 12, 10, 10, 13, 2 ** 32 - 1, 0, 4],
  images: [image(2, 2, 1001, "mistral"), image(1, 3, 64, "hf")],
  sampling: {
    temperature: 0.7,
    topP: 0.9,
    topK: 40,
    minP: 0.05,
    presencePenalty: 0.5,
    frequencyPenalty: -0.25,
    repetitionPenalty: 1.1,
    seed: 4_000_000_000,
    bias: { ids: [5, 131071], values: [-100, 0.1 + 0.2] },
  },
  maxTokens: 77,
  stopIds: [2],
  topLogprobs: 3,
  format: { schema: '{"type":"object","properties":{"a":{"enum":["x"]}}}', strict: true },
  banned: [9, 131071],
  trigger: 9,
  orElse: { schema: '["yes","no"]', strict: true, kind: "choice" },
  minTokens: 5,
  promptLogprobs: 1,
  lora: "sql-lora",
};

const buffer = (bytes: Uint8Array) => bytes.slice().buffer;

Deno.test("wire: a request round-trips exactly, with its image files", () => {
  const decoded = decodeRequest(buffer(encodeRequest(request)));
  assert.deepEqual(decoded.ids, request.ids);
  assert.deepEqual(decoded.sampling, request.sampling);
  assert.equal(decoded.maxTokens, 77);
  assert.deepEqual(decoded.stopIds, [2]);
  assert.equal(decoded.topLogprobs, 3);
  assert.deepEqual(decoded.format, request.format);
  assert.deepEqual(decoded.banned, [9, 131071]);
  assert.equal(decoded.trigger, 9);
  assert.deepEqual(decoded.orElse, request.orElse);
  // A choice format whose schema is not a list of choices is refused, as the HTTP layer refuses it.
  const bad = encodeRequest({ ...request, orElse: { schema: "{}", strict: true, kind: "choice" } });
  assert.throws(() => decodeRequest(buffer(bad)), /list of choices/);
  const badRegex = encodeRequest({ ...request, orElse: { schema: "(a", strict: true, kind: "regex" } });
  assert.throws(() => decodeRequest(buffer(badRegex)), /what this server takes/);
  const grammar = { schema: 'root ::= "a" [0-9]+', strict: true, kind: "grammar" as const };
  assert.deepEqual(decodeRequest(buffer(encodeRequest({ ...request, orElse: grammar }))).orElse, grammar);
  const badGrammar = encodeRequest({ ...request, orElse: { ...grammar, schema: "root ::= x" } });
  assert.throws(() => decodeRequest(buffer(badGrammar)), /what this server takes/);
  assert.equal(decoded.minTokens, 5);
  assert.equal(decoded.promptLogprobs, 1);
  assert.equal(decoded.lora, "sql-lora");
  assert.equal(decoded.images.length, 2);
  decoded.images.forEach((got, i) => {
    const want = request.images[i];
    assert.deepEqual([got.rows, got.cols, got.resize], [want.rows, want.cols, want.resize]);
    assert.deepEqual(got.bytes, want.bytes);
  });
});

Deno.test("wire: a body's parts are the header and the request's own image files, which choices share", () => {
  const choices = [1, 2, 3].map((seed) => ({ ...request, sampling: { ...request.sampling, seed } }));
  for (const choice of choices) {
    const parts = requestParts(choice);
    // The files themselves, not copies: n choices of a request hold one copy of its images.
    assert.equal(parts[1], request.images[0].bytes);
    assert.equal(parts[3], request.images[1].bytes);
    assert.deepEqual(parts.map((p) => p.length % 4), [0, 1001 % 4, 4 - (1001 % 4), 0]);
    const joined = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (joined.set(p, at), at + p.length), 0);
    assert.deepEqual(joined, encodeRequest(choice));
    assert.equal(decodeRequest(buffer(joined)).sampling.seed, choice.sampling.seed);
  }
});

Deno.test("wire: optional fields stay absent; no images, no seed, no log-probabilities, no format, no bans", () => {
  const { seed: _, ...sampling } = request.sampling;
  const plain: GenerateRequest<EncodedImage> = {
    ...request,
    images: [],
    sampling,
    topLogprobs: undefined,
    format: undefined,
    banned: [],
    trigger: undefined,
    orElse: undefined,
    lora: undefined,
  };
  const decoded = decodeRequest(buffer(encodeRequest(plain)));
  assert.equal("lora" in decoded, false);
  assert.equal("seed" in decoded.sampling, false);
  assert.equal("format" in decoded, false);
  assert.equal("banned" in decoded, false);
  assert.equal("trigger" in decoded, false);
  assert.equal("orElse" in decoded, false);
  assert.equal(decoded.topLogprobs, undefined);
  assert.deepEqual(decoded.images, []);
  assert.deepEqual(decoded.ids, plain.ids);
});

Deno.test("wire: malformed bodies are refused with what is wrong", () => {
  const good = encodeRequest(request);
  const header = new DataView(good.buffer).getUint32(4, true);
  const withHeader = (json: string) => {
    const text = new TextEncoder().encode(json);
    const body = new Uint8Array(8 + text.length);
    body.set(good.subarray(0, 4));
    new DataView(body.buffer).setUint32(4, text.length, true);
    body.set(text, 8);
    return body.buffer;
  };
  const json = JSON.parse(new TextDecoder().decode(good.subarray(8, 8 + header)));
  const cases: [ArrayBuffer, RegExp][] = [
    [new TextEncoder().encode('{"messages": []}').buffer, /must start with "PXG8"/],
    [good.slice(0, 20).buffer, /ends inside its header/],
    [withHeader("{not json"), /header is not JSON/],
    [withHeader(JSON.stringify({ ...json, maxTokens: 0 })), /invalid at maxTokens/],
    [withHeader(JSON.stringify({ ...json, sampling: { ...json.sampling, topP: 0 } })), /sampling\.topP/],
    [withHeader(JSON.stringify({ ...json, extra: 1 })), /invalid at the top/],
    [withHeader(JSON.stringify({ ...json, images: [] })), /ends inside the token ids/],
    [good.slice(0, good.length - 4).buffer, /ends inside image 1/],
    [
      withHeader(JSON.stringify({ ...json, images: [{ ...json.images[0], resize: "bilinear" }] })),
      /images\.0\.resize/,
    ],
    [withHeader(JSON.stringify({ ...json, images: [{ ...json.images[0], bytes: 0 }] })), /images\.0\.bytes/],
    [buffer(new Uint8Array([...good, 0, 0, 0, 0])), /4 bytes after its last image/],
  ];
  for (const [body, message] of cases) {
    assert.throws(
      () => decodeRequest(body),
      (err: Error) => err instanceof WireError && message.test(err.message),
    );
  }
});

Deno.test("wire: frames round-trip, log-probabilities bit for bit", () => {
  const logprob = Math.fround(-1.2345678);
  const frames: Frame[] = [
    { token: { id: 17 } },
    { token: { id: 5, logprob, top: [{ id: 5, logprob }, { id: 9, logprob: -3.5 }] } },
    { token: { id: 6, logprob: -0.5 } },
    // The prompt's log-probabilities with the first token, or with the stop token that ended it at once.
    { token: { id: 7, prompt: [{ logprob }, { logprob: -2, top: [{ id: 3, logprob: -0.1 }] }] } },
    { token: { id: 2, logprob: -0.5, prompt: [{ logprob: -1 }], stop: true } },
    // The prompt tokens the prefix cache gave, with the first token (or the stop token that ended it at once).
    { token: { id: 8, cached: 512 } },
    { token: { id: 2, cached: 64, stop: true } },
    { finish: "length" },
    { error: "the GPU failed", kind: "internal" },
    { error: "queue full", kind: "busy", retryAfter: 2 },
  ];
  for (const frame of frames) {
    const line = encodeFrame(frame);
    assert.ok(line.endsWith("\n") && !line.slice(0, -1).includes("\n"));
    assert.deepEqual(decodeFrame(line.trim()), frame);
  }
  assert.throws(() => decodeFrame('{"id":-1}'), WireError);
  assert.throws(() => decodeFrame('{"finish":"done"}'), WireError);
  assert.throws(() => decodeFrame("[1,2"), /not JSON/);
});

Deno.test("wire: the frame reader takes any chunking and refuses a stream cut inside a frame", async () => {
  const frames: Frame[] = [
    { token: { id: 1 } },
    { token: { id: 2, logprob: -0.25, top: [{ id: 2, logprob: -0.25 }] } },
    { finish: "stop" },
  ];
  const text = frames.map(encodeFrame).join("");
  const bytes = new TextEncoder().encode(text);
  const streamOf = (chunks: Uint8Array[]) =>
    new ReadableStream<Uint8Array>({
      start(c) {
        for (const chunk of chunks) c.enqueue(chunk);
        c.close();
      },
    });
  for (const size of [1, 3, 7, bytes.length]) {
    const chunks = [];
    for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.slice(i, i + size));
    assert.deepEqual(await Array.fromAsync(readFrames(streamOf(chunks))), frames, `chunks of ${size}`);
  }
  await assert.rejects(
    Array.fromAsync(readFrames(streamOf([bytes.slice(0, bytes.length - 5)]))),
    /ended inside a frame/,
  );
});
