/**
 * Anthropic's Messages API (`/v1/messages`) through Anthropic's own npm client against a real server on loopback
 * (tiny-pixtral, f32): each request must answer what the same conversation answers through the chat API (same
 * tokens at temperature 0 or one seed, same prompt length), streamed and not, with tools, stop sequences, prefill
 * and structured output; errors in Anthropic's shape.
 */
import Anthropic from "@anthropic-ai/sdk";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { createApp } from "../functions/app.ts";
import { IDLE_EVENT_MS } from "../functions/routes/sse.ts";
import { MAX_STOPS } from "../functions/schema/chat.ts";
import { loadTokenizer } from "../runtime/tokenizer/mod.ts";
import { dataUrl, post, withServer } from "./api_helpers.ts";
import { fixture } from "./helpers.ts";
import { engineLessService, ScriptedEngine } from "./service_helpers.ts";

const image = await dataUrl("golden/images/chat_a_32x48.png");
const base64 = image.slice(image.indexOf(",") + 1);

/**
 * Anthropic's client no longer types sampling parameters (temperature, top_k), which its newer models refuse;
 * it sends them as given, and this server takes them as the chat API does.
 */
type Params = Anthropic.MessageCreateParamsNonStreaming & Record<string, unknown>;

/** The text of a message's text blocks. */
const textOf = (m: Anthropic.Message) => m.content.map((b) => b.type === "text" ? b.text : "").join("");

Deno.test("Messages API: text, images, system and prefill answer as the chat API does, streamed and not", async () => {
  await withServer({}, async ({ url, service }) => {
    const client = new Anthropic({ baseURL: url, apiKey: "unused" });
    const model = service.model.id;
    const cases: [Params, Record<string, unknown>[]][] = [
      [
        {
          model,
          max_tokens: 12,
          temperature: 0,
          messages: [{ role: "user", content: "Hello, how are you?" }],
        },
        [{ role: "user", content: "Hello, how are you?" }],
      ],
      [
        {
          model,
          max_tokens: 12,
          temperature: 0,
          system: [{ type: "text", text: "Be brief." }],
          messages: [{
            role: "user",
            content: [
              { type: "text", text: "What is this?" },
              { type: "image", source: { type: "base64", media_type: "image/png", data: base64 } },
            ],
          }],
        },
        [{ role: "system", content: [{ type: "text", text: "Be brief." }] }, {
          role: "user",
          content: [{ type: "text", text: "What is this?" }, {
            type: "image_url",
            image_url: { url: image },
          }],
        }],
      ],
      [
        // A last assistant message is continued (Anthropic's prefill, Mistral's prefix).
        {
          model,
          max_tokens: 8,
          temperature: 0.9,
          top_k: 40,
          system: "You answer in French.",
          messages: [
            { role: "user", content: "Name a colour." },
            { role: "assistant", content: "Bleu" },
            { role: "user", content: "Another?" },
            { role: "assistant", content: "Le" },
          ],
        },
        [
          { role: "system", content: "You answer in French." },
          { role: "user", content: "Name a colour." },
          { role: "assistant", content: "Bleu" },
          { role: "user", content: "Another?" },
          { role: "assistant", content: "Le", prefix: true },
        ],
      ],
    ];
    for (const [params, messages] of cases) {
      // The third case samples: one seed on both sides.
      const extra = { seed: 7 } as Record<string, unknown>;
      const answer = await client.messages.create({ ...params, ...extra } as Params);
      const chat = await post(`${url}/v1/chat/completions`, {
        messages,
        max_tokens: params.max_tokens,
        temperature: params.temperature,
        top_k: params.top_k,
        seed: 7,
      });
      assert.equal(chat.status, 200, JSON.stringify(chat.json));
      const choice = chat.json.choices[0];
      assert.equal(textOf(answer), choice.message.content);
      assert.equal(answer.stop_reason, choice.finish_reason === "length" ? "max_tokens" : "end_turn");
      assert.equal(answer.usage.input_tokens, chat.json.usage.prompt_tokens);
      assert.equal(answer.usage.output_tokens, chat.json.usage.completion_tokens);
      assert.match(answer.id, /^msg_/);
      assert.equal(answer.role, "assistant");

      const counted = await client.messages.countTokens({ ...params, max_tokens: undefined } as never);
      assert.equal(counted.input_tokens, answer.usage.input_tokens);

      const events: string[] = [];
      const stream = client.messages.stream({ ...params, ...extra } as Params);
      stream.on("streamEvent", (e) => events.push(e.type));
      const streamed = await stream.finalMessage();
      assert.deepEqual(streamed.content, answer.content);
      assert.equal(streamed.stop_reason, answer.stop_reason);
      assert.deepEqual(streamed.usage, answer.usage);
      assert.equal(events[0], "message_start");
      assert.deepEqual(events.slice(-2), ["message_delta", "message_stop"]);
    }
  });
});

Deno.test("Anthropic's client lists the model", async () => {
  await withServer({}, async ({ url, service }) => {
    const client = new Anthropic({ baseURL: url, apiKey: "unused" });
    const models = [];
    for await (const model of client.models.list()) models.push(model);
    assert.deepEqual(models.map((m) => [m.id, m.display_name]), [[service.model.id, service.model.id]]);
    assert.ok(!Number.isNaN(Date.parse(models[0].created_at)));
    const one = await client.models.retrieve(service.model.id);
    assert.equal(one.id, service.model.id);
  });
});

Deno.test("Messages API: stop sequences end the answer and are named", async () => {
  await withServer({}, async ({ url, service }) => {
    const client = new Anthropic({ baseURL: url, apiKey: "unused" });
    const params: Params = {
      model: service.model.id,
      max_tokens: 16,
      temperature: 0,
      messages: [{ role: "user", content: "Tell me a story." }],
    };
    const full = textOf(await client.messages.create(params));
    // A piece of the greedy answer past its beginning: the answer stops before its first occurrence.
    const stop = [...full].slice(3, 5).join("");
    assert.ok(stop.trim().length > 0, `a stop sequence taken from ${JSON.stringify(full)}`);
    const stopped = await client.messages.create({ ...params, stop_sequences: ["never written", stop] });
    assert.equal(textOf(stopped), full.slice(0, full.indexOf(stop)));
    assert.equal(stopped.stop_reason, "stop_sequence");
    assert.equal(stopped.stop_sequence, stop);
    const streamed = await client.messages.stream({ ...params, stop_sequences: [stop] }).finalMessage();
    assert.equal(streamed.stop_reason, "stop_sequence");
    assert.equal(streamed.stop_sequence, stop);
    assert.equal(textOf(streamed), textOf(stopped));
  });
});

Deno.test("Messages API: tools, tool_use and tool_result as the chat API's calls and tool messages", async () => {
  await withServer({}, async ({ url, service }) => {
    const client = new Anthropic({ baseURL: url, apiKey: "unused" });
    const model = service.model.id;
    const tools: Anthropic.Tool[] = [{
      name: "get_weather",
      description: "The weather in a city",
      input_schema: {
        type: "object",
        properties: {
          city: { type: "string", maxLength: 8 },
          days: { type: "integer", minimum: 1, maximum: 5 },
        },
        required: ["city", "days"],
        additionalProperties: false,
      },
      strict: true,
    } as Anthropic.Tool];
    const params: Params = {
      model,
      max_tokens: 300,
      temperature: 0,
      messages: [{ role: "user", content: "Weather in Paris for two days?" }],
      tools,
      tool_choice: { type: "tool", name: "get_weather" },
    };
    const answer = await client.messages.create(params);
    assert.equal(answer.stop_reason, "tool_use");
    const calls = answer.content.filter((b) => b.type === "tool_use");
    assert.equal(calls.length, 1);
    const call = calls[0] as Anthropic.ToolUseBlock;
    assert.equal(call.name, "get_weather");
    const input = call.input as { city: string; days: number };
    assert.equal(typeof input.city, "string");
    assert.ok(input.city.length <= 8 && Number.isInteger(input.days) && input.days >= 1 && input.days <= 5);

    const chat = await post(`${url}/v1/chat/completions`, {
      messages: [{ role: "user", content: "Weather in Paris for two days?" }],
      max_tokens: 300,
      temperature: 0,
      tools: tools.map((t) => ({
        type: "function",
        function: { name: t.name, description: t.description, parameters: t.input_schema, strict: true },
      })),
      tool_choice: { type: "function", function: { name: "get_weather" } },
    });
    assert.deepEqual(JSON.parse(chat.json.choices[0].message.tool_calls[0].function.arguments), input);
    assert.equal(answer.usage.input_tokens, chat.json.usage.prompt_tokens);

    const streamed = await client.messages.stream(params).finalMessage();
    assert.deepEqual(
      streamed.content.map((b) => b.type === "tool_use" ? { name: b.name, input: b.input } : b),
      answer.content.map((b) => b.type === "tool_use" ? { name: b.name, input: b.input } : b),
    );

    // The call and its result sent back: the same prompt as the chat form with tool_calls and a tool message.
    const turn: Anthropic.MessageParam[] = [
      { role: "user", content: "Weather in Paris for two days?" },
      { role: "assistant", content: [{ type: "text", text: "Let me look." }, call] },
      {
        role: "user",
        content: [
          {
            type: "tool_result",
            tool_use_id: call.id,
            content: [{ type: "text", text: '{"sky": "clear"}' }],
          },
          { type: "text", text: "And tomorrow?" },
        ],
      },
    ];
    const counted = await client.messages.countTokens({ model, messages: turn, tools });
    const tokenized = await post(`${url}/tokenize`, {
      messages: [
        { role: "user", content: "Weather in Paris for two days?" },
        {
          role: "assistant",
          content: "Let me look.",
          tool_calls: [{
            id: call.id,
            type: "function",
            function: { name: call.name, arguments: call.input },
          }],
        },
        { role: "tool", tool_call_id: call.id, content: '{"sky": "clear"}' },
        { role: "user", content: "And tomorrow?" },
      ],
      tools: tools.map((t) => ({
        type: "function",
        function: { name: t.name, description: t.description, parameters: t.input_schema },
      })),
    });
    assert.equal(tokenized.status, 200, JSON.stringify(tokenized.json));
    assert.equal(counted.input_tokens, tokenized.json.count);
    const again = await client.messages.create({ model, max_tokens: 4, messages: turn, tools });
    assert.equal(again.usage.input_tokens, counted.input_tokens);
  });
});

Deno.test("Messages API: structured output, x-api-key, and errors in Anthropic's shape", async () => {
  await withServer({ apiKeys: ["key-1"] }, async ({ url, service }) => {
    const client = new Anthropic({ baseURL: url, apiKey: "key-1" });
    const model = service.model.id;
    const schema = {
      type: "object",
      properties: { colour: { enum: ["red", "green"] }, count: { type: "integer", minimum: 0, maximum: 9 } },
      required: ["colour", "count"],
      additionalProperties: false,
    };
    for (const field of ["output_format", "output_config"]) {
      const format = { type: "json_schema", schema };
      const answer = await client.messages.create({
        model,
        max_tokens: 200,
        seed: 3,
        messages: [{ role: "user", content: "A colour and a count, as JSON." }],
        ...(field === "output_format" ? { output_format: format } : { output_config: { format } }),
      } as Params);
      assert.equal(answer.stop_reason, "end_turn");
      const value = JSON.parse(textOf(answer));
      assert.ok(["red", "green"].includes(value.colour) && Number.isInteger(value.count), textOf(answer));
      assert.deepEqual(Object.keys(value).sort(), ["colour", "count"]);
    }

    await assert.rejects(
      new Anthropic({ baseURL: url, apiKey: "wrong" }).messages.create({
        model,
        max_tokens: 4,
        messages: [{ role: "user", content: "hi" }],
      }),
      (err: InstanceType<typeof Anthropic.APIError>) => {
        assert.equal(err.status, 401);
        assert.deepEqual((err.error as { error: { type: string } }).error.type, "authentication_error");
        return true;
      },
    );
    // Bearer keys work here too, as on the other routes.
    const bearer = await post(`${url}/v1/messages/count_tokens`, {
      messages: [{ role: "user", content: "hi" }],
    }, {
      authorization: "Bearer key-1",
    });
    assert.equal(bearer.status, 200);

    const refused = async (body: unknown, status: number, type: string, message: RegExp) => {
      const res = await post(`${url}/v1/messages`, body, { "x-api-key": "key-1" });
      assert.equal(res.status, status, JSON.stringify(res.json));
      assert.equal(res.json.type, "error");
      assert.equal(res.json.error.type, type);
      assert.equal(res.json.request_id, res.headers.get("request-id"));
      assert.ok(res.json.request_id);
      assert.match(res.json.error.message, message);
    };
    const user = (content: unknown) => ({ role: "user", content });
    await refused("{not json", 400, "invalid_request_error", /not valid JSON/);
    await refused(
      { max_tokens: 4, messages: [user("hi")], model: "claude-sonnet-4-5" },
      404,
      "not_found_error",
      /does not exist/,
    );
    await refused(
      { max_tokens: 4, messages: [user([{ type: "document", source: { type: "text", data: "x" } }])] },
      400,
      "invalid_request_error",
      /messages\[0\]\.content\[0\]: "document" blocks are not supported: send the document's text/,
    );
    await refused(
      { max_tokens: 4, messages: [user("hi")], tools: [{ type: "web_search_20250305", name: "web_search" }] },
      400,
      "invalid_request_error",
      /tools\[0\]: "web_search_20250305" is one of Anthropic's server tools/,
    );
    const call = { type: "tool_use", id: "toolu_01", name: "f", input: {} };
    const tools = [{ name: "f", input_schema: { type: "object" } }];
    await refused(
      {
        max_tokens: 4,
        tools,
        messages: [
          user("go"),
          { role: "assistant", content: [call] },
          user([{
            type: "tool_result",
            tool_use_id: "toolu_02",
            content: "done",
          }]),
        ],
      },
      400,
      "invalid_request_error",
      /^messages\[2\]\.content\[0\]\.tool_use_id: a tool_result's tool_use_id names no tool_use/,
    );
    await refused(
      { max_tokens: 4, tools, messages: [user("go"), { role: "assistant", content: [call] }] },
      400,
      "invalid_request_error",
      /^messages\[1\]: the messages end with an assistant's tool_use: send its tool_result/,
    );
    await refused(
      { max_tokens: 4, messages: [user([{ type: "image", source: { type: "file", file_id: "file_1" } }])] },
      400,
      "invalid_request_error",
      /Files API/,
    );
    await refused(
      { max_tokens: 0, messages: [user("hi")] },
      400,
      "invalid_request_error",
      /^max_tokens/,
    );
    await refused(
      { max_tokens: 4, messages: [user("hi")], stop_sequences: Array(MAX_STOPS + 1).fill("x") },
      400,
      "invalid_request_error",
      new RegExp(`^stop_sequences: at most ${MAX_STOPS} stop strings`),
    );
    // Anthropic's errors have no param: the message names the block.
    await refused(
      {
        max_tokens: 4,
        messages: [user([{ type: "text", text: "a" }, {
          type: "image",
          source: { type: "base64", media_type: "image/png", data: "AAAA" },
        }])],
      },
      400,
      "invalid_request_error",
      /^messages\[0\]\.content\[1\]\.source: /,
    );
    await refused(
      { max_tokens: 4, messages: [user([{ type: "tool_result", tool_use_id: "x", content: "y" }])] },
      400,
      "invalid_request_error",
      /^messages\[0\]\.content\[0\]: a tool_result must answer a tool_use block/,
    );
    await refused(
      { max_tokens: 4, messages: [user("hi"), { role: "assistant", content: "Sure, " }] },
      400,
      "invalid_request_error",
      /^messages\[1\]: final assistant content cannot end with trailing whitespace/,
    );
    const format = { type: "json_schema", schema: { type: "nonsense" } };
    await refused(
      { max_tokens: 4, messages: [user("hi")], output_config: { format } },
      400,
      "invalid_request_error",
      /^output_config\.format/,
    );
    await refused(
      { max_tokens: 4, messages: [user("hi")], output_config: { format }, output_format: format },
      400,
      "invalid_request_error",
      /not both/,
    );
    let deep: unknown = {};
    for (let i = 0; i < 20_000; i++) deep = { a: deep };
    await refused(
      {
        max_tokens: 4,
        messages: [user("go"), { role: "assistant", content: [{ ...call, input: deep }] }, user("x")],
      },
      400,
      "invalid_request_error",
      /nested deeper than 256 levels/,
    );
    // An empty last assistant message (or one of thinking blocks) is no prefill.
    for (const content of ["", [], [{ type: "thinking", thinking: "hm", signature: "s" }]]) {
      const res = await post(`${url}/v1/messages`, {
        max_tokens: 2,
        messages: [user("hi"), { role: "assistant", content }],
      }, { "x-api-key": "key-1" });
      assert.equal(res.status, 200, JSON.stringify(res.json));
    }
    // After another assistant message, that one is the prefill.
    const counted = (messages: unknown[]) =>
      post(`${url}/v1/messages/count_tokens`, { messages }, { "x-api-key": "key-1" });
    const prefilled = await counted([user("hi"), { role: "assistant", content: "Hello" }, {
      role: "assistant",
      content: "",
    }]);
    assert.equal(prefilled.status, 200, JSON.stringify(prefilled.json));
    const alone = await counted([user("hi"), { role: "assistant", content: "Hello" }]);
    assert.equal(prefilled.json.input_tokens, alone.json.input_tokens);
    // Either header may carry the key.
    const both = await post(`${url}/v1/messages/count_tokens`, { messages: [user("hi")] }, {
      authorization: "Bearer wrong",
      "x-api-key": "key-1",
    });
    assert.equal(both.status, 200);
  });
});

Deno.test("usage reports the prompt tokens the prefix cache gave, in each API's own fields", async () => {
  await withServer({}, async ({ url, service }) => {
    const client = new Anthropic({ baseURL: url, apiKey: "unused" });
    const model = service.model.id;
    // About 200 tokens: read in chunks of 64 (lavapipe), of which the whole ones are cached for the next request.
    const long = (tag: string) =>
      `${tag}: ` + Array.from({ length: 60 }, (_, i) => `word${i * 7 % 23}`).join(" ");
    const twice = async <T>(ask: () => Promise<T>, cached: (answer: T) => number) => {
      const first = cached(await ask());
      const second = cached(await ask());
      assert.equal(first, 0);
      assert.ok(second >= 128 && second % 64 === 0, `${second} cached tokens`);
      return second;
    };
    const chat = () =>
      post(`${url}/v1/chat/completions`, {
        messages: [{ role: "user", content: long("chat") }],
        max_tokens: 2,
      });
    await twice(chat, (res) => res.json.usage.prompt_tokens_details.cached_tokens);
    // n choices: the prompt was read once (its followers took it from the cache), so counted as the first read it.
    const choices = () =>
      post(`${url}/v1/chat/completions`, {
        messages: [{ role: "user", content: long("choices") }],
        max_tokens: 2,
        n: 3,
      });
    await twice(choices, (res) => res.json.usage.prompt_tokens_details.cached_tokens);
    await twice(
      () => post(`${url}/v1/responses`, { input: long("responses"), max_output_tokens: 2 }),
      (res) => res.json.usage.input_tokens_details.cached_tokens,
    );
    const params: Params = { model, max_tokens: 2, messages: [{ role: "user", content: long("messages") }] };
    const total = (await client.messages.countTokens(params)).input_tokens;
    const cached = await twice(
      () => client.messages.create(params),
      (m) => m.usage.cache_read_input_tokens ?? 0,
    );
    const again = await client.messages.create(params);
    assert.equal(again.usage.input_tokens, total - cached, "input_tokens are the tokens read anew");
    const stream = client.messages.stream(params);
    let started: Anthropic.Usage | undefined;
    stream.on("streamEvent", (event) => {
      if (event.type === "message_start") started = { ...event.message.usage }; // (the SDK adds to it later)
    });
    const streamed = await stream.finalMessage();
    assert.deepEqual(streamed.usage, again.usage);
    // message_start splits the input as the end does (LangChain's ChatAnthropic reads it from there).
    assert.equal(started?.cache_read_input_tokens, cached);
    assert.equal(started?.input_tokens, total - cached);
    // A stream's usage (chat) carries it too.
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        messages: [{ role: "user", content: long("chat") }],
        max_tokens: 2,
        stream: true,
      }),
    });
    const usage = (await res.text()).split("\n").filter((l) => l.startsWith("data: {")).map((l) =>
      JSON.parse(l.slice(6))
    ).findLast((chunk) => chunk.usage)?.usage;
    assert.ok(usage.prompt_tokens_details.cached_tokens >= 128, JSON.stringify(usage));
  });
});

Deno.test("Messages API: a call whose number is past a double is a tool_use block, not a crash", async () => {
  await withServer({}, async ({ url, service }) => {
    const schema = {
      type: "object",
      properties: { x: { type: "number" } },
      required: ["x"],
      additionalProperties: false,
    };
    // Tokens "e" and "9" favoured: the model writes numbers such as 9e999, which Python's json reads as inf.
    const body = {
      model: service.model.id,
      max_tokens: 200,
      seed: 0,
      logit_bias: { "1101": 100, "1057": 4 },
      tools: [{ name: "setx", description: "Set x", input_schema: schema, strict: true }],
      tool_choice: { type: "any" },
      messages: [{ role: "user", content: "Set x" }],
    };
    const chat = await post(`${url}/v1/chat/completions`, {
      ...body,
      tools: [{
        type: "function",
        function: { name: "setx", description: "Set x", parameters: schema, strict: true },
      }],
      tool_choice: "required",
    });
    const args: string[] = chat.json.choices[0].message.tool_calls.map((
      c: { function: { arguments: string } },
    ) => c.function.arguments);
    // The number as written (Python would print Infinity, which is not JSON): the arguments stay JSON.
    assert.ok(
      args.some((a) => JSON.parse(a).x === Infinity),
      `the case needs a number past a double: ${args}`,
    );
    const answer = await post(`${url}/v1/messages`, body);
    assert.equal(answer.status, 200, JSON.stringify(answer.json));
    const inputs = answer.json.content.filter((b: { type: string }) => b.type === "tool_use").map((
      b: { input: { x: number | null } },
    ) => b.input.x);
    assert.equal(inputs.length, args.length);
    assert.ok(inputs.includes(null), "a number past a double is null, as JSON.stringify writes Infinity");
  });
});

Deno.test("Messages API: Claude Code's system messages, images in tool results, message_start at once", async () => {
  await withServer({}, async ({ url }) => {
    const ask = (body: Record<string, unknown>) => post(`${url}/v1/messages`, { max_tokens: 2, ...body });
    const chat = (messages: unknown[], tools?: unknown[]) =>
      post(`${url}/v1/chat/completions`, { messages, max_tokens: 2, ...tools ? { tools } : {} });
    // A system message among the messages (Claude Code's mid-conversation-system beta), after an answer too.
    const lifted = await ask({
      system: "S1",
      messages: [
        { role: "user", content: "say hi" },
        { role: "system", content: "Available agents: none." },
        { role: "assistant", content: "Hi." },
        { role: "system", content: [{ type: "text", text: "Be brief." }] },
        { role: "user", content: "again" },
      ],
    });
    assert.equal(lifted.status, 200, JSON.stringify(lifted.json));
    const same = await chat([
      { role: "system", content: "S1" },
      { role: "system", content: "Available agents: none." },
      { role: "system", content: "Be brief." },
      { role: "user", content: "say hi" },
      { role: "assistant", content: "Hi." },
      { role: "user", content: "again" },
    ]);
    assert.equal(lifted.json.usage.input_tokens, same.json.usage.prompt_tokens);
    // An image in a tool result (a screenshot) goes to the user turn after the results.
    const call = { type: "tool_use", id: "toolu_01", name: "f", input: {} };
    const tools = [{ name: "f", input_schema: { type: "object" } }];
    const shot = await ask({
      tools,
      messages: [
        { role: "user", content: "go" },
        { role: "assistant", content: [call] },
        {
          role: "user",
          content: [{
            type: "tool_result",
            tool_use_id: "toolu_01",
            content: [{ type: "text", text: "shot" }, {
              type: "image",
              source: { type: "base64", media_type: "image/png", data: base64 },
            }],
          }],
        },
      ],
    });
    assert.equal(shot.status, 200, JSON.stringify(shot.json));
    const shotChat = await chat([
      { role: "user", content: "go" },
      {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "toolu_01", type: "function", function: { name: "f", arguments: "{}" } }],
      },
      { role: "tool", tool_call_id: "toolu_01", content: "shot" },
      { role: "user", content: [{ type: "image_url", image_url: { url: image } }] },
    ], [{ type: "function", function: { name: "f", parameters: { type: "object" } } }]);
    assert.equal(shotChat.status, 200, JSON.stringify(shotChat.json));
    assert.equal(shot.json.usage.input_tokens, shotChat.json.usage.prompt_tokens);
  });
});

Deno.test("Messages and Responses streams begin at once and, while the prompt is read, tell agents' watchdogs they live", async () => {
  const full = await loadTokenizer(fixture("tekken-full.json"), { cache: false });
  const ids = [...full.encode("Hi")];
  // The first token comes well after IDLE_EVENT_MS from the stream's start (2 s in, later on a busy machine).
  const app = createApp({
    ...engineLessService(full),
    engine: new ScriptedEngine(ids, "stop", IDLE_EVENT_MS + 9000),
  });
  const fetch = async (url: string | URL | Request, init?: RequestInit) =>
    await app.request(String(url), init);
  const anthropic = new Anthropic({ baseURL: "http://pixtral.test", apiKey: "unused", fetch });
  const openai = new OpenAI({ baseURL: "http://pixtral.test/v1", apiKey: "unused", fetch });
  const messages: string[] = [], responses: string[] = [];
  const [message, response] = await Promise.all([
    (async () => {
      const stream = anthropic.messages.stream({
        model: "tiny",
        max_tokens: 4,
        messages: [{ role: "user", content: "Hi" }],
      });
      for await (const event of stream) {
        messages.push(
          event.type === "message_delta" ? `message_delta:${event.delta.stop_reason}` : event.type,
        );
      }
      return await stream.finalMessage();
    })(),
    (async () => {
      const stream = openai.responses.stream({ model: "tiny", input: "Hi", max_output_tokens: 4 });
      for await (const event of stream) responses.push(event.type);
      return await stream.finalResponse();
    })(),
  ]);
  // Anthropic's: message_start once the stream begins (2 s), pings each second (which the SDK drops), and after
  // IDLE_EVENT_MS without an event a message_delta that changes nothing, which it passes on.
  assert.equal(messages[0], "message_start");
  assert.equal(messages[1], "message_delta:null", messages.join());
  assert.ok(messages.indexOf("content_block_start") > 1, messages.join());
  assert.equal(messages.at(-2), "message_delta:end_turn");
  assert.equal(message.stop_reason, "end_turn");
  assert.ok(message.usage.output_tokens >= ids.length, "the keep-alive's 0 was no count");
  // OpenAI's: response.in_progress again.
  assert.deepEqual(responses.slice(0, 3), [
    "response.created",
    "response.in_progress",
    "response.in_progress",
  ]);
  assert.equal(response.status, "completed");
  assert.equal(response.usage?.output_tokens, message.usage.output_tokens);
  const raw = await (await app.request("/v1/messages", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "tiny",
      max_tokens: 4,
      stream: true,
      messages: [{ role: "user", content: "Hi" }],
    }),
  })).text();
  const events = [...raw.matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
  assert.deepEqual(events.slice(0, 3), ["message_start", "ping", "ping"]);
  assert.ok(!raw.includes(": keep-alive"), raw);
});

Deno.test("Messages API: a tool runner's thread is refused so that Anthropic's SDK sends each turn whole", async () => {
  const full = await loadTokenizer(fixture("tekken-full.json"), { cache: false });
  // The first answer calls the tool; the next answers in text.
  const turns = [
    [full.special("[TOOL_CALLS]"), ...full.encode('[{"name": "weather", "arguments": {"city": "Oslo"}}]')],
    [...full.encode("Sunny.")],
  ];
  const bodies: Record<string, unknown>[] = [];
  let answers = 0;
  const engine = new class extends ScriptedEngine {
    override generate(request: unknown, signal?: AbortSignal) {
      return new ScriptedEngine(turns[Math.min(answers++, 1)]).generate(request, signal);
    }
  }([]);
  const app = createApp({ ...engineLessService(full), engine });
  const fetch = async (url: string | URL | Request, init?: RequestInit) => {
    bodies.push(JSON.parse(String(init?.body)));
    return await app.request(String(url), init);
  };
  const anthropic = new Anthropic({ baseURL: "http://pixtral.test", apiKey: "unused", fetch });
  const runner = anthropic.beta.messages.toolRunner({
    model: "tiny",
    max_tokens: 100,
    messages: [{ role: "user", content: "Weather in Oslo?" }],
    tools: [{
      name: "weather",
      input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
      run: (input: unknown) => `sunny in ${(input as { city: string }).city}`,
    }],
  });
  const final = await runner;
  assert.deepEqual(final.content.map((b) => b.type === "text" && b.text), ["Sunny."]);
  // Asked with a thread first, refused, then every turn whole: the tools and the conversation so far.
  const answered = bodies.filter((b) => b.thread === undefined);
  assert.ok(answered.length >= 2, JSON.stringify(bodies));
  assert.ok(answered.every((b) => Array.isArray(b.tools)));
  assert.equal((answered.at(-1)!.messages as unknown[]).length, 3);
  // The refusal's details name what could not be threaded, as the SDK logs them.
  const refused = await app.request("/v1/messages", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...bodies.find((b) => b.thread !== undefined), stream: false }),
  });
  assert.equal(refused.status, 400);
  assert.deepEqual((await refused.json()).error.details, {
    error_code: "thread_unsupported_request",
    unsupported: ["thread"],
  });
});
