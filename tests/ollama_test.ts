/**
 * Ollama's own API (`/api/chat`, `/api/generate`, `/api/tags`, `/api/show`, ...) through Ollama's npm client
 * against a real server on loopback (tiny-pixtral, f32): each request must answer what the same conversation
 * answers through the chat API (same tokens at temperature 0, same prompt length), streamed and not, with images,
 * tools and formats; errors in Ollama's shape. Tool calls are read from a scripted engine's tokens.
 */
import assert from "node:assert/strict";
import { Ollama } from "ollama";
import { quantizationLevel } from "../functions/routes/ollama.ts";
import { createApp } from "../functions/app.ts";
import { historyStarts } from "../functions/chat/history.ts";
import { loadTokenizer } from "../runtime/tokenizer/mod.ts";
import { dataUrl, post, serverConfig, withServer } from "./api_helpers.ts";
import { fixture } from "./helpers.ts";
import { countingDecodes, engineLessService, ScriptedEngine } from "./service_helpers.ts";

const image = await dataUrl("golden/images/chat_a_32x48.png");
const base64 = image.slice(image.indexOf(",") + 1);

Deno.test("Ollama API: chat and generate answer as the chat API does, streamed and not, with images", async () => {
  await withServer({}, async ({ url, service }) => {
    const ollama = new Ollama({ host: url });
    const model = `${service.model.id}:latest`;
    const chat = async (messages: unknown[], max = 10) => {
      const res = await post(`${url}/v1/chat/completions`, { messages, max_tokens: max, temperature: 0 });
      assert.equal(res.status, 200, JSON.stringify(res.json));
      return res.json;
    };
    const options = { temperature: 0, num_predict: 10 };

    // Text, and an image before the text (where Ollama puts a message's images).
    const cases = [
      {
        ollama: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hello, how are you?" }],
        chat: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hello, how are you?" }],
      },
      {
        ollama: [{ role: "user", content: "What is this?", images: [base64] }],
        chat: [{
          role: "user",
          content: [{ type: "image_url", image_url: { url: image } }, {
            type: "text",
            text: "What is this?",
          }],
        }],
      },
    ];
    for (const { ollama: messages, chat: same } of cases) {
      const expected = await chat(same);
      const whole = await ollama.chat({ model, messages, options, stream: false });
      assert.equal(whole.message.role, "assistant");
      assert.equal(whole.message.content, expected.choices[0].message.content);
      assert.equal(whole.done, true);
      assert.equal(whole.done_reason, "length");
      assert.equal(whole.prompt_eval_count, expected.usage.prompt_tokens);
      assert.equal(whole.eval_count, expected.usage.completion_tokens);
      assert.ok(whole.total_duration >= whole.prompt_eval_duration + whole.eval_duration - 1e6);
      assert.ok(whole.eval_duration > 0);

      let text = "";
      let last;
      for await (const part of await ollama.chat({ model, messages, options, stream: true })) {
        text += part.message.content;
        last = part;
      }
      assert.equal(text, expected.choices[0].message.content);
      assert.equal(last?.done, true);
      assert.equal(last?.eval_count, expected.usage.completion_tokens);
    }

    // generate: the prompt as a user turn (with the system prompt and images), or with raw as a text completion.
    const expected = await chat([{ role: "system", content: "Be brief." }, {
      role: "user",
      content: [{ type: "image_url", image_url: { url: image } }, { type: "text", text: "Describe it." }],
    }]);
    const generated = await ollama.generate({
      model,
      prompt: "Describe it.",
      system: "Be brief.",
      images: [base64],
      options,
      stream: false,
    });
    assert.equal(generated.response, expected.choices[0].message.content);
    assert.equal(generated.prompt_eval_count, expected.usage.prompt_tokens);
    const completion = await post(`${url}/v1/completions`, {
      prompt: "Once upon",
      max_tokens: 10,
      temperature: 0,
    });
    let raw = "";
    for await (
      const part of await ollama.generate({ model, prompt: "Once upon", raw: true, options, stream: true })
    ) {
      raw += part.response;
    }
    assert.equal(raw, completion.json.choices[0].text);
    // Without num_predict, an answer runs to its end (Ollama's default), not a text completion's 16 tokens: here
    // to a stop string the tiny model writes in its 22nd token (its end of text would take 443).
    const long = await ollama.generate({
      model,
      prompt: "Once upon",
      raw: true,
      options: { temperature: 0, stop: [" set"] },
      stream: false,
    });
    assert.equal(long.done_reason, "stop");
    assert.ok(long.eval_count > 16, `${long.eval_count} tokens`);

    // A last assistant message is continued, as Ollama continues it.
    const prefixed = await chat([{ role: "user", content: "Hi" }, {
      role: "assistant",
      content: "Well",
      prefix: true,
    }]);
    const continued = await ollama.chat({
      model,
      messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "Well" }],
      options,
      stream: false,
    });
    assert.equal(continued.message.content, prefixed.choices[0].message.content);

    // Nothing to answer: the model is (already) loaded.
    const load = await ollama.chat({ model, messages: [], stream: false });
    assert.equal(load.done_reason, "load");
    for (const keep_alive of [0, "0", "0m", "0.0s", "0m0s"]) {
      const unload = await post(`${url}/api/generate`, { model, keep_alive });
      assert.equal(unload.json.done_reason, "unload", String(keep_alive));
    }
    assert.equal((await post(`${url}/api/generate`, { model, keep_alive: "5m" })).json.done_reason, "load");

    // A raw prompt writes Pixtral's format: control tokens written as text are control tokens, as Ollama's
    // tokenizers read them; it answers as the chat API answers the same turn.
    const turn = await chat([{ role: "user", content: "Hello" }]);
    const rawTurn = await ollama.generate({
      model,
      prompt: "[INST]Hello[/INST]",
      raw: true,
      options,
      stream: false,
    });
    assert.equal(rawTurn.prompt_eval_count, turn.usage.prompt_tokens);
    assert.equal(rawTurn.response, turn.choices[0].message.content);
    const withBos = await ollama.generate({
      model,
      prompt: "<s>[INST]Hello[/INST]",
      raw: true,
      options,
      stream: false,
    });
    assert.equal(withBos.prompt_eval_count, turn.usage.prompt_tokens);

    // An empty answer sent back (this server's own, or an empty turn) is left out rather than refused.
    const history = await ollama.chat({
      model,
      messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "" }, {
        role: "user",
        content: "Hello",
      }],
      options,
      stream: false,
    });
    const same = await chat([{ role: "user", content: "Hi" }, { role: "user", content: "Hello" }]);
    assert.equal(history.prompt_eval_count, same.usage.prompt_tokens);
    assert.equal(history.message.content, same.choices[0].message.content);
  });
});

Deno.test("Ollama API: format, logprobs, the model list and errors in Ollama's shape", async () => {
  await withServer({}, async ({ url, service }) => {
    const ollama = new Ollama({ host: url });
    const model = service.model.id;
    const schema = {
      type: "object",
      properties: { name: { type: "string", maxLength: 8 }, age: { type: "integer" } },
      required: ["name", "age"],
      additionalProperties: false,
    };
    const formatted = await ollama.chat({
      model,
      messages: [{ role: "user", content: "Who?" }],
      format: schema,
      options: { seed: 1, num_predict: 60 },
      stream: false,
    });
    const value = JSON.parse(formatted.message.content);
    assert.deepEqual(Object.keys(value), ["name", "age"]);
    assert.ok(Number.isInteger(value.age));
    const json = await ollama.generate({
      model,
      prompt: "JSON?",
      format: "json",
      options: { seed: 2, num_predict: 60 },
    });
    assert.equal(typeof JSON.parse(json.response!), "object");

    const scored = await post(`${url}/api/chat`, {
      model,
      messages: [{ role: "user", content: "Hi" }],
      options: { temperature: 0, num_predict: 3 },
      logprobs: true,
      top_logprobs: 2,
      stream: false,
    });
    assert.equal(scored.json.logprobs.length, 3);
    assert.equal(scored.json.logprobs[0].top_logprobs.length, 2);
    assert.ok(scored.json.logprobs[0].logprob <= 0);

    const list = await ollama.list();
    assert.deepEqual(list.models.map((m) => m.name), [`${model}:latest`]);
    // The tiny model's weights in all, as Ollama writes a size.
    const parameters = service.model.parameters!;
    assert.ok(parameters > 1e5 && parameters < 1e8, String(parameters));
    assert.equal(list.models[0].details.parameter_size, `${(parameters / 1e6).toFixed(1)}M`);
    assert.match(list.models[0].digest, /^[0-9a-f]{64}$/);
    // What the weights take on the GPU, and their format: the tiny model loads exactly, in f32.
    assert.equal(list.models[0].details.quantization_level, "F32");
    for (
      const [format, level] of [["q4", "Q4"], ["q8", "Q8_0"], ["q4k+q6k", "Q4_K+Q6_K"], [
        "Q4_K+Q6_K→q6k",
        "Q4_K+Q6_K→Q6_K",
      ]]
    ) assert.equal(quantizationLevel(format), level);
    assert.equal(list.models[0].details.format, "safetensors");
    assert.ok(list.models[0].size > parameters * 4 * 0.9, String(list.models[0].size));
    const shown = await ollama.show({ model: `${model}:latest` });
    assert.deepEqual(shown.capabilities, ["completion", "vision", "tools"]);
    assert.equal((shown.model_info as unknown as Record<string, unknown>)["pixtral.context_length"], 2048);
    const running = (await ollama.ps()).models[0];
    assert.equal((running as unknown as { context_length: number }).context_length, 2048);
    // On the GPU, all of it.
    assert.equal(running.size_vram, list.models[0].size);
    assert.match((await ollama.version()).version, /^\d+\.\d+\.\d+$/);

    // Errors: Ollama's client raises them with the message the server gave.
    const refused = async (
      body: Record<string, unknown>,
      status: number,
      message: RegExp,
      path = "/api/chat",
    ) => {
      const res = await post(`${url}${path}`, body);
      assert.equal(res.status, status, JSON.stringify(res.json));
      assert.deepEqual(Object.keys(res.json), ["error"]);
      assert.match(res.json.error, message);
    };
    const hello = [{ role: "user", content: "Hi" }];
    await refused({ model: "llava", messages: hello }, 404, /^model "llava" not found; this server serves/);
    await refused(
      { model, messages: hello, options: { temperature: "hot" } },
      400,
      /^options\.temperature: /,
    );
    await refused({ model, messages: hello, options: { top_p: 2 } }, 400, /^options\.top_p: /);
    await refused(
      { model, messages: hello, format: '{"type": "object"}' },
      400,
      /^format: .*"json" or a JSON schema/,
    );
    await refused(
      { model, messages: [{ role: "user", content: "x", images: ["https://x.test/a.png"] }] },
      400,
      /^messages\[0\]\.images\[0\]: .*not as URLs/,
    );
    await refused(
      { model, messages: [{ role: "system", content: "x", images: [base64] }, ...hello] },
      400,
      /^messages\[0\]\.images: a system message/,
    );
    await refused(
      { model, messages: [{ role: "user", content: "x", images: ["bm90IGFuIGltYWdl"] }] },
      400,
      /^messages\[0\]\.images\[0\]: /,
    );
    await refused(
      { model, messages: [{ role: "assistant", content: "x", images: [base64] }] },
      400,
      /no images/,
    );
    await refused({ model, prompt: "x", template: "{{ .Prompt }}" }, 400, /^template: /, "/api/generate");
    await refused({ model, prompt: "x", suffix: "y" }, 400, /^suffix: /, "/api/generate");
    await refused({ model, prompt: "x", context: [1, 2] }, 400, /^context: /, "/api/generate");
    await refused({ model, prompt: "x", raw: true, images: [base64] }, 400, /^images: /, "/api/generate");
    await refused({ model, prompt: "x", raw: true, system: "s" }, 400, /^system: /, "/api/generate");
    await refused(
      { model, prompt: "[INST][IMG][/INST]", raw: true },
      400,
      /^prompt: .*\[IMG\]/,
      "/api/generate",
    );
    // A raw prompt past the context (here 2048) is the client's error, named, however long.
    for (const words of [3000, 140_000]) {
      await refused(
        { model, prompt: "hello ".repeat(words), raw: true },
        400,
        /^prompt: the prompt has/,
        "/api/generate",
      );
    }
    // Names in any case, with or without the tag, as Ollama takes them.
    assert.equal((await post(`${url}/api/show`, { model: `${model.toUpperCase()}:LATEST` })).status, 200);
    for (const system of [undefined, "Be brief."]) {
      await refused(
        { model, prompt: "x", system, images: ["bm90IGFuIGltYWdl"] },
        400,
        /^images\[0\]: /,
        "/api/generate",
      );
    }
    await refused({ model, input: "x" }, 501, /no embeddings/, "/api/embed");
    await refused({ model: "llama3" }, 501, /does not pull/, "/api/pull");
    await assert.rejects(ollama.chat({ model: "llava", messages: hello }), /model "llava" not found/);
  });
});

Deno.test("Ollama API: calls come as Ollama's tool_calls (arguments an object); results go back by tool_name", async () => {
  const full = await loadTokenizer(fixture("tekken-full.json"), { cache: false });
  const tools = [{
    type: "function",
    function: {
      name: "get_weather",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    },
  }];
  const calls = '[{"name": "get_weather", "arguments": {"city": "Paris"}}, ' +
    '{"name": "get_weather", "arguments": {"city": "Oslo"}}]';
  const ids = [full.special("[TOOL_CALLS]"), ...full.encode(calls)];
  const app = createApp({ ...engineLessService(full), engine: new ScriptedEngine(ids) });
  const ollama = new Ollama({
    host: "http://ollama.test",
    fetch: async (input, init) => await app.request(input as Request, init),
  });
  const messages = [{ role: "user", content: "Weather in Paris and Oslo?" }];
  const whole = await ollama.chat({ model: "tiny", messages, tools, stream: false });
  const expected = [{ city: "Paris" }, { city: "Oslo" }];
  assert.deepEqual(whole.message.tool_calls?.map((c) => c.function.arguments), expected);
  assert.equal(whole.done_reason, "stop");
  // Streamed, the calls come whole in a line when the answer ends, as Ollama's streams send them.
  const lines = [];
  for await (const part of await ollama.chat({ model: "tiny", messages, tools, stream: true })) {
    lines.push(part);
  }
  const called = lines.filter((l) => l.message.tool_calls);
  assert.deepEqual(called.map((l) => l.message.tool_calls!.map((c) => c.function.arguments)), [expected]);
  assert.equal(lines.at(-1)!.done, true);

  // num_predict past the context is what the context leaves, as Ollama's runner stops at its end.
  const fitted = await app.request("/api/chat", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "tiny", messages, stream: false, options: { num_predict: 1_000_000 } }),
  });
  assert.equal(fitted.status, 200, await fitted.clone().text());
  const rawFitted = await app.request("/api/generate", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "tiny",
      prompt: "x",
      raw: true,
      stream: false,
      options: { num_predict: 1_000_000 },
    }),
  });
  assert.equal(rawFitted.status, 200, await rawFitted.clone().text());

  // Cut short by num_predict, calls are no calls: the stream has what the model wrote as text, as the answer
  // whole has it.
  const cut = createApp({
    ...engineLessService(full),
    engine: new ScriptedEngine([full.special("[TOOL_CALLS]"), ...full.encode(calls.slice(0, 50))], "length"),
  });
  const cutClient = new Ollama({
    host: "http://ollama.test",
    fetch: async (input, init) => await cut.request(input as Request, init),
  });
  const cutLines = [];
  for await (const part of await cutClient.chat({ model: "tiny", messages, tools, stream: true })) {
    cutLines.push(part);
  }
  assert.ok(cutLines.every((l) => !l.message.tool_calls));
  assert.equal(
    cutLines.map((l) => l.message.content).join(""),
    calls.slice(0, 50),
  );
  assert.equal(cutLines.at(-1)!.done_reason, "length");

  // The conversation goes back without call ids (Ollama's have none): results answer calls by tool_name, else
  // in order, and the prompt is the chat API's with the ids those calls are given.
  const history = [
    ...messages,
    {
      role: "assistant",
      content: "",
      tool_calls: expected.map((args) => ({ function: { name: "get_weather", arguments: args } })),
    },
    { role: "tool", content: "sunny", tool_name: "get_weather" },
    { role: "tool", content: "rainy" },
  ];
  const answered = await ollama.chat({ model: "tiny", messages: history, tools, stream: false });
  const tokenized = await app.request("/tokenize", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      messages: [
        ...messages,
        {
          role: "assistant",
          content: null,
          tool_calls: expected.map((args, k) => ({
            id: `ollama_1_${k}`,
            type: "function",
            function: { name: "get_weather", arguments: JSON.stringify(args) },
          })),
        },
        { role: "tool", tool_call_id: "ollama_1_0", content: "sunny" },
        { role: "tool", tool_call_id: "ollama_1_1", content: "rainy" },
      ],
      tools,
    }),
  });
  assert.equal(answered.prompt_eval_count, (await tokenized.json()).count);
});

Deno.test("Ollama API: a stream's keep-alive is a space that begins the next line, which JSON readers skip", async () => {
  const full = await loadTokenizer(fixture("tekken-full.json"), { cache: false });
  const app = createApp({
    ...engineLessService(full),
    engine: new ScriptedEngine([...full.encode("Hi there")], "stop", 1300),
  });
  const res = await app.request("/api/chat", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "tiny", messages: [{ role: "user", content: "Hi" }] }),
  });
  assert.equal(res.headers.get("content-type"), "application/x-ndjson");
  const body = await res.text();
  const lines = body.split("\n");
  assert.equal(lines.pop(), "");
  assert.ok(lines.slice(1).some((line) => line.startsWith(" {")), JSON.stringify(body));
  const parts = lines.map((line) => JSON.parse(line));
  assert.equal(parts.map((p) => p.message.content).join(""), "Hi there");
  assert.equal(parts.at(-1).done, true);
});

/** An app over a scripted engine that records each prompt, and counts image decodes. */
async function recordingApp(context = 4096) {
  const full = await loadTokenizer(fixture("tekken-full.json"), { cache: false });
  const prompts: (readonly number[])[] = [];
  class Recording extends ScriptedEngine {
    override readonly contextLength: number = context;
    override generate(request: { ids: readonly number[] }, signal?: AbortSignal) {
      prompts.push(request.ids);
      return super.generate(request, signal);
    }
  }
  const { service, counts } = countingDecodes(engineLessService(full));
  const app = createApp({ ...service, engine: new Recording([...full.encode("Fine.")]) });
  const send = async (path: string, body: Record<string, unknown>) => {
    const res = await app.request(path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny", stream: false, ...body }),
    });
    return { status: res.status, json: await res.json() };
  };
  /** The prompt the chat API makes of `messages` (the engine's record of it); undefined: longer than the context. */
  const chatPrompt = async (messages: unknown[]) => {
    const res = await send("/v1/chat/completions", { messages, max_tokens: 1 });
    if (res.json.error?.code === "context_length_exceeded") return undefined;
    assert.equal(res.status, 200, JSON.stringify(res.json));
    return prompts.at(-1)!;
  };
  return { full, prompts, counts, send, chatPrompt };
}

Deno.test("Ollama API: a system message after an answer joins the others, as Pixtral's format places them", async () => {
  const { prompts, send, chatPrompt } = await recordingApp();
  const messages = [
    { role: "system", content: "S1" },
    { role: "user", content: "u1" },
    { role: "assistant", content: "a1" },
    { role: "system", content: "S2" },
    { role: "user", content: "u2" },
  ];
  const expected = await chatPrompt([messages[0], messages[3], messages[1], messages[2], messages[4]]);
  // The chat API places them so too (mistral_common refuses them there; OpenAI takes them).
  for (const path of ["/api/chat", "/v1/chat/completions"]) {
    const res = await send(path, { messages });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.deepEqual(prompts.at(-1), expected, path);
  }
});

Deno.test("Ollama API: a conversation longer than the context is cut as Ollama cuts it, leaving the answer room", async () => {
  const { full, prompts, counts, send, chatPrompt } = await recordingApp();
  const context = 4096;
  const words = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag}${i}`).join(" ");
  const system = { role: "system", content: "You answer briefly." };
  const conversation: Record<string, unknown>[] = [system];
  for (let turn = 0; turn < 24; turn++) {
    conversation.push({
      role: "user",
      content: `question ${turn}: ${words(60, "q")}`,
      ...turn % 6 === 0 ? { images: [base64] } : {},
    });
    conversation.push({ role: "assistant", content: `answer ${turn}: ${words(60, "a")}` });
  }
  conversation.push({ role: "user", content: "And the last question?" });
  const asChat = (messages: Record<string, unknown>[]) =>
    messages.map(({ images, ...m }) =>
      images
        ? {
          ...m,
          content: [{ type: "image_url", image_url: { url: image } }, { type: "text", text: m.content }],
        }
        : m
    );
  assert.equal(await chatPrompt(asChat(conversation)), undefined, "the whole conversation must not fit");

  for (const [numPredict, room] of [[200, 200], [undefined, context / 4]] as const) {
    counts.decodes = 0;
    const res = await send("/api/chat", {
      messages: conversation,
      options: numPredict ? { num_predict: numPredict } : {},
    });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.equal(res.json.message.content, "Fine.");
    // Each of the 4 images decoded once, however many cuts were tried.
    assert.equal(counts.decodes, 4);
    const cut = prompts.at(-1)!;
    assert.equal(res.json.prompt_eval_count, cut.length);
    // The latest beginning whose prompt leaves the room, found by trying each beginning through the chat API.
    let expected: readonly number[] | undefined;
    for (let from = 1; from < conversation.length && !expected; from++) {
      const ids = await chatPrompt(asChat([system, ...conversation.slice(from)]));
      if (ids && context - ids.length >= room) expected = ids;
    }
    assert.deepEqual(cut, expected);
    const text = full.decode(cut);
    assert.ok(text.includes("You answer briefly.") && text.includes("And the last question?"), text);
    assert.ok(!text.includes("question 0:"), text);
  }

  // In a large context, an answer of no asked length is left 4096 tokens, the rest kept for the conversation.
  const large = await recordingApp(65536);
  const long = [
    system,
    ...Array.from(
      { length: 60 },
      (_, i) => ({ role: i % 2 ? "assistant" : "user", content: words(500, "w") }),
    ),
  ];
  long.push({ role: "user", content: "And now?" });
  const roomy = await large.send("/api/chat", { messages: long });
  assert.equal(roomy.status, 200, JSON.stringify(roomy.json));
  const length = large.prompts.at(-1)!.length;
  assert.ok(length <= 65536 - 4096 && length > 65536 - 4096 - 2000, String(length));

  // More images than the server takes (8 here) are cut alike: the oldest go.
  const pictures: Record<string, unknown>[] = Array.from({ length: 10 }, (_, i) => [
    { role: "user", content: `picture ${i}`, images: [base64] },
    { role: "assistant", content: `seen ${i}` },
  ]).flat();
  pictures.push({ role: "user", content: "Which came first?" });
  const seen = await send("/api/chat", { messages: pictures });
  assert.equal(seen.status, 200, JSON.stringify(seen.json));
  const shown = full.decode(prompts.at(-1)!);
  assert.ok(shown.includes("seen 1") && !shown.includes("picture 1"), shown);
  assert.equal(prompts.at(-1)!.filter((id) => id === full.special("[IMG_END]")).length, 8);
  const many = await send("/api/chat", { messages: pictures, truncate: false });
  assert.equal(many.status, 400);
  assert.match(many.json.error, /10 images in one request/);

  // truncate: false asks for the context error instead.
  const refused = await send("/api/chat", { messages: conversation, truncate: false });
  assert.equal(refused.status, 400);
  assert.match(refused.json.error, /context is 4096 tokens/);

  // A tool result is never cut from the call it answers: the cut begins at the assistant message with the call.
  const calls = [
    { role: "system" as const, content: "Use the tools." },
    { role: "user" as const, content: `look it up: ${words(1000, "w")}` },
    {
      role: "assistant" as const,
      content: "",
      tool_calls: [{ function: { name: "find", arguments: { q: "x" } } }],
    },
    { role: "tool" as const, tool_name: "find", content: `found: ${words(500, "r")}` },
  ];
  const tools = [{ type: "function", function: { name: "find", parameters: { type: "object" } } }];
  const answered = await send("/api/chat", { messages: calls, tools, options: { num_predict: 100 } });
  assert.equal(answered.status, 200, JSON.stringify(answered.json));
  const kept = full.decode(prompts.at(-1)!);
  assert.ok(!kept.includes("look it up") && kept.includes('"find"') && kept.includes("found: r0"), kept);
  assert.deepEqual(historyStarts(calls), [0, 1, 2]);
  // Without a system message first too: an empty user turn opens the cut (mistral_common's serving checks count
  // no calls in a first message; Pixtral's format has the empty turn there anyway).
  assert.deepEqual(historyStarts(calls.slice(1)), [0, 1]);
  const agent = await send("/api/chat", { messages: calls.slice(1), tools, options: { num_predict: 100 } });
  assert.equal(agent.status, 200, JSON.stringify(agent.json));
  assert.ok(full.decode(prompts.at(-1)!).includes("found: r0"));
  assert.deepEqual(
    historyStarts([
      { role: "system" },
      { role: "user" },
      { role: "assistant", tool_calls: [{ function: { name: "f" } }, { function: { name: "g" } }] },
      { role: "tool" },
      { role: "tool" },
      { role: "tool" },
      { role: "user" },
      { role: "assistant" },
    ]),
    // Not 7: an answer is not continued alone.
    [0, 1, 2, 6],
  );
  // A result that answers no call in the messages sent begins where it is.
  assert.deepEqual(historyStarts([{ role: "user" }, { role: "assistant" }, { role: "tool" }]), [0, 1, 2]);
});

Deno.test("Ollama API: cuts and lifted system messages keep a conversation Pixtral's format takes", async () => {
  const { full, prompts, send, chatPrompt } = await recordingApp();
  const long = (tag: string) => Array.from({ length: 400 }, (_, i) => `${tag}${i}`).join(" ");
  const text = () => full.decode(prompts.at(-1)!);
  const ok = async (messages: unknown[], extra: Record<string, unknown> = {}) => {
    const res = await send("/api/chat", { messages, ...extra });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    return text();
  };
  // An answer to continue, or an empty one, is never left alone by a cut.
  const turns = [
    { role: "user", content: long("x") },
    { role: "assistant", content: "a" },
    { role: "user", content: long("y") },
    { role: "assistant", content: "a" },
    { role: "user", content: long("z") },
  ];
  const continued = await ok([...turns, { role: "assistant", content: "Sure," }]);
  assert.ok(continued.includes("z0") && continued.endsWith("Sure,") && !continued.includes("x0"), continued);
  const empty = await ok([...turns, { role: "assistant", content: "" }]);
  assert.ok(empty.includes("z0") && prompts.at(-1)!.at(-1) === full.special("[/INST]"), empty);
  // A system message between a call and its results does not part them.
  const calls = [
    { role: "system", content: "S" },
    { role: "user", content: long("x") },
    { role: "user", content: long("y") },
    {
      role: "assistant",
      content: "",
      tool_calls: [{ function: { name: "find", arguments: { q: 1 } } }, {
        function: { name: "find", arguments: { q: 2 } },
      }],
    },
    { role: "tool", tool_name: "find", content: "r1" },
    { role: "system", content: "N" },
    { role: "tool", tool_name: "find", content: "r2" },
    { role: "user", content: "q" },
  ];
  const tools = [{ type: "function", function: { name: "find", parameters: { type: "object" } } }];
  const parted = await ok(calls, { tools });
  assert.ok(parted.includes('"r1"') && parted.includes('"r2"') && !parted.includes("x0"), parted);
  // System messages after the last answer: a new answer, not the old one continued; the system prompt in order.
  const french = await ok([
    { role: "user", content: "hi" },
    { role: "assistant", content: "Hello" },
    { role: "system", content: "Reply in French." },
  ]);
  assert.deepEqual(
    prompts.at(-1),
    await chatPrompt([
      { role: "system", content: "Reply in French." },
      { role: "user", content: "hi" },
      { role: "assistant", content: "Hello" },
      { role: "user", content: "" },
    ]),
  );
  assert.ok(
    french.trimEnd().endsWith("HelloReply in French.") && prompts.at(-1)!.at(-1) === full.special("[/INST]"),
    french,
  );
  // A conversation that opens with an answer (a chat app's greeting) reads as the chat API reads it.
  const greeting = [{ role: "assistant", content: "Hi! Ask me." }, { role: "user", content: "q" }];
  await ok(greeting);
  assert.deepEqual(prompts.at(-1), await chatPrompt(greeting));
  const ordered = await ok([
    { role: "system", content: "S1" },
    { role: "user", content: "u1" },
    { role: "system", content: "S3" },
    { role: "assistant", content: "a1" },
    { role: "system", content: "S2" },
    { role: "user", content: "u2" },
  ]);
  assert.ok(ordered.includes("S1\n\nS3\n\nS2\n\nu2"), ordered);
});

Deno.test("Ollama API: a model quantized on load with a llama.cpp recipe is listed by its name (Q4_K_M)", async () => {
  await withServer({ model: { ...serverConfig().model, quant: "q4km" } }, async ({ url }) => {
    const tags = await (await fetch(`${url}/api/tags`)).json();
    assert.equal(tags.models[0].details.quantization_level, "Q4_K_M");
  });
});
