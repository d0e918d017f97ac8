/**
 * Function calling: JSON written as Python writes it (mistral_common's prompt), forced calls that follow the
 * functions' schemas (random walks, and the tiny model over HTTP with the OpenAI and Mistral clients), calls read
 * out of the model's text under "auto" (a scripted engine), and [TOOL_CALLS] banned under "none".
 */
import assert from "node:assert/strict";
import { Ajv2020 } from "ajv/dist/2020.js";
import OpenAI from "openai";
import { Mistral } from "@mistralai/mistralai";
import { createApp } from "../functions/app.ts";
import {
  fromRequest,
  parseToolCalls,
  promptToolCallId,
  toolGeneration,
  type ToolUse,
  toolUse,
} from "../functions/chat/tools.ts";
import { parseChatRequest } from "../functions/schema/chat.ts";
import { type FinishReason, GREEDY, InvalidRequestError } from "../runtime/engine/engine.ts";
import { LocalEngine } from "../runtime/engine/local.ts";
import { XGrammarConstraints } from "../runtime/grammar/constraints.ts";
import { jsonSchemaFormat, relaxedSchema, toolCallsFormat } from "../runtime/grammar/format.ts";
import { pyJsonDumps, pyJsonLoads } from "../runtime/prompt/pyjson.ts";
import { loadTokenizer } from "../runtime/tokenizer/mod.ts";
import type { Tokenizer } from "../runtime/tokenizer/tokenizer.ts";
import { fixture } from "./helpers.ts";
import { post, withServer } from "./api_helpers.ts";
import { seededRandom, walk } from "./grammar_helpers.ts";
import { collect, EXACT, loadTiny } from "./model_helpers.ts";
import { engineLessService, ScriptedEngine } from "./service_helpers.ts";

const ajv = new Ajv2020({ strict: false, allErrors: true });

Deno.test("JSON is read and written as Python's json module does (mistral_common's prompts)", async () => {
  const cases: { text: string; dumps: string | null }[] = JSON.parse(
    await Deno.readTextFile(new URL("./fixtures/chat/pyjson.json", import.meta.url)),
  );
  assert.ok(cases.length > 40);
  for (const { text, dumps } of cases) {
    const value = pyJsonLoads(text);
    assert.equal(value === undefined ? null : pyJsonDumps(value), dumps, JSON.stringify(text));
  }
});

const WEATHER = {
  type: "object",
  properties: { city: { type: "string", maxLength: 12 }, unit: { enum: ["c", "f"] } },
  required: ["city", "unit"],
  additionalProperties: false,
};
/** pydantic's shape: definitions under $defs, references to them, anyOf with null. */
const BOOKING = {
  $defs: {
    Guest: {
      type: "object",
      properties: {
        name: { type: "string", maxLength: 8 },
        age: { anyOf: [{ type: "integer" }, { type: "null" }] },
      },
      required: ["name", "age"],
    },
  },
  type: "object",
  properties: {
    guests: { type: "array", items: { $ref: "#/$defs/Guest" }, minItems: 1, maxItems: 2 },
    nights: { type: "integer", minimum: 1, maximum: 30 },
  },
  required: ["guests", "nights"],
};
const FUNCTIONS = [{ name: "get_weather", parameters: WEATHER }, {
  name: "book-room_2",
  parameters: BOOKING,
}];

Deno.test("forced calls: random walks give lists of calls to the functions, arguments valid under their schemas", async () => {
  const validators = new Map(FUNCTIONS.map((f) => [f.name, ajv.compile(f.parameters)]));
  const random = seededRandom(11);
  for (const single of [false, true]) {
    const format = toolCallsFormat(FUNCTIONS, single);
    let finished = 0;
    for (let i = 0; i < 12; i++) {
      const text = await walk(format, random, 500);
      if (text === undefined) continue;
      finished++;
      const calls = parseToolCalls(text);
      assert.ok(calls, text);
      if (single) assert.equal(calls.length, 1, text);
      for (const call of calls) {
        const validate = validators.get(call.function.name);
        assert.ok(validate, `unknown function in ${text}`);
        assert.ok(
          validate(JSON.parse(call.function.arguments)),
          `${text}: ${JSON.stringify(validate.errors)}`,
        );
      }
    }
    assert.ok(finished >= 8, `only ${finished} walks finished`);
  }
});

Deno.test("a forced non-strict function whose schema is not wholly enforceable keeps its types and required properties", async () => {
  // What instructor sends for a pydantic model with `confidence: float = Field(ge=0, le=1)`, and more.
  const parameters = {
    type: "object",
    properties: {
      label: { type: "string", enum: ["a", "b"] },
      confidence: { type: "number", minimum: 0, maximum: 1 },
      tags: { type: "array", items: { type: "number", multipleOf: 0.01 }, uniqueItems: true, maxItems: 3 },
    },
    required: ["label", "confidence", "tags"],
    additionalProperties: false,
  };
  assert.throws(
    () => jsonSchemaFormat(parameters),
    /"uniqueItems" is not supported here: its items may be numbers without bounds/,
  );
  const use: ToolUse = {
    definitions: [{ name: "classify", description: "", parameters: fromRequest(parameters, "tools[0]") }],
    choice: { name: "classify" },
    callable: ["classify"],
    parallel: true,
    strict: new Map([["classify", false]]),
    inputs: new Map(),
  };
  const { format } = toolGeneration(use, 9);
  // The relaxed schema: the same but for the keywords the grammar cannot enforce (the bounds on confidence it can).
  const { schema, dropped } = relaxedSchema(parameters);
  assert.deepEqual(dropped.sort(), ["multipleOf"]);
  assert.deepEqual(format, toolCallsFormat([{ name: "classify", parameters: schema }], true));
  const validate = ajv.compile(schema as object);
  const random = seededRandom(5);
  let finished = 0;
  for (let i = 0; i < 8; i++) {
    const text = await walk(format!, random, 400);
    if (text === undefined) continue;
    finished++;
    const [call] = parseToolCalls(text)!;
    const args = JSON.parse(call.function.arguments) as Record<string, unknown>;
    assert.ok(validate(args), `${text}: ${JSON.stringify(validate.errors)}`);
    assert.deepEqual(Object.keys(args), ["label", "confidence", "tags"]);
  }
  assert.ok(finished >= 5, `only ${finished} walks finished`);
  // A condition beside the properties is merged with them, then dropped: the properties hold.
  const merged = relaxedSchema({
    ...parameters,
    allOf: [{ if: { required: ["tags"] }, then: { required: ["label"] } }],
  });
  assert.deepEqual(merged.schema, schema);
  assert.deepEqual(merged.dropped.sort(), ["if", "multipleOf", "then"]);
  // Beside a combination that cannot be merged every keyword goes, the root's type too: the arguments would be
  // any value, so they are any object instead.
  const conditional = {
    ...parameters,
    allOf: [{ type: "object", pattern: "^a" }, { pattern: "^b" }],
  };
  assert.throws(() => relaxedSchema(conditional), /does not make the value an object/);
  // Normalised before it is relaxed (a review's finding: OpenAPI's nullable made it fail, and draft 4's flag
  // dropped both bounds).
  const nullable = relaxedSchema({
    type: "object",
    properties: {
      x: { anyOf: [{ type: "number", minimum: 0, nullable: true }, { type: "null" }] },
      y: { type: "number", minimum: 5, exclusiveMinimum: true },
    },
  });
  assert.deepEqual((nullable.schema as { properties: { y: unknown } }).properties.y, {
    type: "number",
    exclusiveMinimum: 5,
  });
  const plain = toolGeneration({
    ...use,
    definitions: [{ name: "classify", description: "", parameters: fromRequest(conditional, "tools[0]") }],
  }, 9);
  assert.deepEqual(
    plain.format,
    toolCallsFormat([{ name: "classify", parameters: { type: "object" } }], true),
  );
  // A strict one is refused, as before.
  assert.throws(
    () => toolGeneration({ ...use, strict: new Map([["classify", true]]) }, 9),
    /cannot be enforced/,
  );
});

Deno.test("calls are read from the model's text; ids are Pixtral's 9 characters", () => {
  const calls = parseToolCalls(
    ' [{"name": "f", "arguments": {"a": 1.0, "b": [true]}}, {"name": "g", "arguments": "{}"}]',
  );
  assert.deepEqual(calls?.map((c) => [c.type, c.function.name, c.function.arguments]), [
    ["function", "f", '{"a": 1.0, "b": [true]}'],
    ["function", "g", "{}"],
  ]);
  for (const call of calls!) assert.match(call.id, /^[a-zA-Z0-9]{9}$/);
  assert.notEqual(calls![0].id, calls![1].id);
  assert.equal(parseToolCalls('{"name": "f", "arguments": {}}')?.length, 1);
  for (
    const bad of [
      "",
      "[]",
      '[{"name": "f", "arguments": {',
      "[1]",
      '[{"arguments": {}}]',
      '[{"name": "f", "arguments": 3}]',
    ]
  ) {
    assert.equal(parseToolCalls(bad), undefined, bad);
  }
  // A client's own ids (OpenAI's call_...) map to 9 characters, the same each time; ours stay as they are.
  assert.equal(promptToolCallId("abc123DEF"), "abc123DEF");
  assert.match(promptToolCallId("call_Xy12"), /^[a-zA-Z0-9]{9}$/);
  assert.equal(promptToolCallId("call_Xy12"), promptToolCallId("call_Xy12"));
  assert.notEqual(promptToolCallId("call_Xy12"), promptToolCallId("call_Xy13"));
});

const TOOLS = [
  {
    type: "function" as const,
    function: { name: "get_weather", description: "Weather in a city", parameters: WEATHER },
  },
  { type: "function" as const, function: { name: "book-room_2", parameters: BOOKING } },
];

Deno.test("forced calls over HTTP with the OpenAI client: whole, streamed, named; the results go back in", async () => {
  await withServer({}, async ({ url, service }) => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused" });
    const validators = new Map(FUNCTIONS.map((f) => [f.name, ajv.compile(f.parameters)]));
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{
      role: "user",
      content: "Weather in Oslo?",
    }];
    const whole = await client.chat.completions.create({
      model: service.model.id,
      messages,
      tools: TOOLS,
      tool_choice: "required",
      n: 3,
      temperature: 1,
      seed: 5,
      max_tokens: 300,
    });
    for (const choice of whole.choices) {
      assert.equal(choice.finish_reason, "tool_calls", JSON.stringify(choice.message));
      assert.equal(choice.message.content, null);
      assert.ok(choice.message.tool_calls!.length >= 1);
      for (const call of choice.message.tool_calls!) {
        assert.ok(call.type === "function");
        assert.match(call.id, /^[a-zA-Z0-9]{9}$/);
        const validate = validators.get(call.function.name)!;
        assert.ok(validate(JSON.parse(call.function.arguments)), call.function.arguments);
      }
    }

    const named = await client.chat.completions.create({
      model: service.model.id,
      messages,
      tools: TOOLS,
      tool_choice: { type: "function", function: { name: "get_weather" } },
      temperature: 0.9,
      seed: 2,
      max_tokens: 300,
      stream: true,
    });
    const calls: { id?: string; name?: string; arguments: string }[] = [];
    let finish: string | null = null;
    const contents: unknown[] = [];
    for await (const chunk of named) {
      if (chunk.choices[0] && "content" in chunk.choices[0].delta) {
        contents.push(chunk.choices[0].delta.content);
      }
      for (const delta of chunk.choices[0]?.delta.tool_calls ?? []) {
        calls[delta.index] ??= { arguments: "" };
        calls[delta.index].id ??= delta.id;
        calls[delta.index].name ??= delta.function?.name;
        calls[delta.index].arguments += delta.function?.arguments ?? "";
      }
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    assert.equal(finish, "tool_calls");
    // No text part: the first chunk's content is null, as OpenAI streams calls (the AI SDK made an empty text of "").
    assert.deepEqual(contents, [null]);
    assert.equal(calls.length, 1);
    assert.equal(calls[0].name, "get_weather");
    assert.ok(validators.get("get_weather")!(JSON.parse(calls[0].arguments)), calls[0].arguments);

    // The client sends the call and its result back: the prompt holds both, in Pixtral's format.
    const message = whole.choices[0].message;
    const followUp: OpenAI.Chat.ChatCompletionMessageParam[] = [
      ...messages,
      { role: "assistant", content: null, tool_calls: message.tool_calls },
      ...message.tool_calls!.map((c) => ({
        role: "tool" as const,
        tool_call_id: c.id,
        content: '{"temp": 21.0}',
      })),
    ];
    const next = await client.chat.completions.create({
      model: service.model.id,
      messages: followUp,
      tools: TOOLS,
      max_tokens: 3,
    });
    assert.ok(["stop", "length", "tool_calls"].includes(next.choices[0].finish_reason));
    const counted = await post(`${url}/tokenize`, { messages: followUp, tools: TOOLS });
    const ids: number[] = counted.json.tokens;
    const tiny = service.tokenizer;
    assert.equal(ids.filter((id) => id === tiny.special("[TOOL_CALLS]")).length, 1);
    assert.equal(
      ids.filter((id) => id === tiny.special("[TOOL_RESULTS]")).length,
      message.tool_calls!.length,
    );
    assert.ok(
      tiny.decode(ids).includes(`{"content": {"temp": 21.0}, "call_id": "${message.tool_calls![0].id}"}`),
    );
  });
});

Deno.test("allowed_tools: every tool stays in the prompt, only the allowed are called (chat and Responses)", async () => {
  await withServer({}, async ({ url, service }) => {
    const model = service.model.id;
    const messages = [{ role: "user", content: "Book a room" }];
    const allowed = (mode: string, names: string[]) => ({
      type: "allowed_tools",
      allowed_tools: { mode, tools: names.map((name) => ({ type: "function", function: { name } })) },
    });
    const chat = (tool_choice: unknown, more = {}) =>
      post(`${url}/v1/chat/completions`, {
        model,
        messages,
        tools: TOOLS,
        tool_choice,
        n: 3,
        temperature: 1,
        seed: 3,
        max_tokens: 40,
        ...more,
      });
    const [only, all] = await Promise.all([chat(allowed("required", ["book-room_2"])), chat("required")]);
    assert.equal(only.status, 200, JSON.stringify(only.json));
    assert.equal(only.json.usage.prompt_tokens, all.json.usage.prompt_tokens);
    const names = (choices: { message: { tool_calls?: { function: { name: string } }[] } }[]) =>
      choices.flatMap((c) => c.message.tool_calls?.map((call) => call.function.name) ?? []);
    assert.ok(names(only.json.choices).length >= 3, JSON.stringify(only.json.choices));
    assert.ok(
      names(only.json.choices).every((name) => name === "book-room_2"),
      JSON.stringify(names(only.json.choices)),
    );
    // "auto" among none: no call.
    const none = await chat(allowed("auto", []), { max_tokens: 5 });
    assert.equal(none.status, 200, JSON.stringify(none.json));
    assert.deepEqual(names(none.json.choices), []);
    for (
      const [choice, param] of [
        [allowed("auto", ["get_weather", "lookup"]), "tool_choice.allowed_tools.tools[1].function.name"],
        [allowed("required", []), "tool_choice.allowed_tools.tools"],
      ] as const
    ) {
      const res = await chat(choice);
      assert.equal(res.status, 400, JSON.stringify(res.json));
      assert.equal(res.json.error.param, param);
    }
    // The Responses API's shape; a hosted tool's entry names nothing the model may call.
    const responses = (tools: unknown[]) =>
      post(`${url}/v1/responses`, {
        model,
        input: "Book a room",
        tools: TOOLS.map((t) => ({ type: "function", ...t.function })),
        tool_choice: { type: "allowed_tools", mode: "required", tools },
        max_output_tokens: 40,
        temperature: 1,
        seed: 4,
      });
    const response = await responses([{ type: "web_search" }, { type: "function", name: "get_weather" }]);
    assert.equal(response.status, 200, JSON.stringify(response.json));
    const calls = response.json.output.filter((item: { type: string }) => item.type === "function_call");
    assert.ok(calls.length >= 1 && calls.every((c: { name: string }) => c.name === "get_weather"));
    const unknown = await responses([{ type: "web_search" }, { type: "function", name: "lookup" }]);
    assert.equal(unknown.status, 400);
    assert.equal(unknown.json.error.param, "tool_choice.tools[1].name");
    // Hosted tools alone: "auto" calls none, "required" has none to call.
    const hostedAuto = await post(`${url}/v1/responses`, {
      model,
      input: "Hi",
      tools: [{ type: "web_search" }],
      tool_choice: { type: "allowed_tools", mode: "auto", tools: [{ type: "web_search" }] },
      max_output_tokens: 2,
    });
    assert.equal(hostedAuto.status, 200, JSON.stringify(hostedAuto.json));
    const hostedOnly = await responses([{ type: "web_search" }]);
    assert.equal(hostedOnly.status, 400);
    assert.equal(hostedOnly.json.error.param, "tool_choice.tools");
  });
});

Deno.test("custom tools on the chat API: called with text held to their grammar, whole and streamed, and sent back", async () => {
  await withServer({}, async ({ url, service }) => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused" });
    const model = service.model.id;
    const definition = 'start: op " " INT ("," INT) ~ 0..2\nop: "add" | "sub"\n%import common.INT';
    const tools: OpenAI.Chat.ChatCompletionTool[] = [
      {
        type: "custom",
        custom: {
          name: "calc",
          description: "Compute.",
          format: { type: "grammar", grammar: { syntax: "lark", definition } },
        },
      },
      { type: "custom", custom: { name: "note" } },
      { type: "function", function: { name: "get_weather", parameters: { type: "object" } } },
    ];
    const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: "user", content: "Add 2 and 3." }];
    const request = {
      model,
      messages,
      tools,
      tool_choice: { type: "custom", custom: { name: "calc" } },
      temperature: 1,
      max_tokens: 200,
    } as const;
    let held = 0;
    for (const seed of [1, 2, 3]) {
      const whole = await client.chat.completions.create({ ...request, seed });
      const call = whole.choices[0].message.tool_calls![0];
      assert.ok(call.type === "custom", JSON.stringify(call));
      assert.equal(call.custom.name, "calc");
      if (whole.choices[0].finish_reason !== "tool_calls") continue;
      held++;
      assert.match(call.custom.input, /^(add|sub) [0-9]+(,[0-9]+){0,2}$/);
      // Streamed, the same call (the chunk that carries it, as a function's).
      const stream = await client.chat.completions.create({ ...request, seed, stream: true });
      const streamed: unknown[] = [];
      for await (const chunk of stream) streamed.push(...chunk.choices[0]?.delta.tool_calls ?? []);
      const id = (streamed[0] as { id: string }).id;
      assert.match(id, /^[a-zA-Z0-9]{9}$/);
      assert.deepEqual(streamed, [{ index: 0, ...call, id }]);
    }
    assert.ok(held >= 2, `${held} of 3 calls completed`);

    // Sent back, a custom call is the call of the function the model called: the same prompt.
    const back = (call: unknown) => [
      ...messages,
      { role: "assistant", content: null, tool_calls: [call] },
      { role: "tool", tool_call_id: "abcdefghi", content: "5" },
    ];
    const custom = await post(`${url}/tokenize`, {
      model,
      tools,
      messages: back({ id: "abcdefghi", type: "custom", custom: { name: "calc", input: 'add 2,3\n"' } }),
    });
    const asFunction = await post(`${url}/tokenize`, {
      model,
      tools,
      messages: back({
        id: "abcdefghi",
        type: "function",
        function: { name: "calc", arguments: JSON.stringify({ input: 'add 2,3\n"' }) },
      }),
    });
    assert.equal(custom.status, 200, JSON.stringify(custom.json));
    assert.deepEqual(custom.json.tokens, asFunction.json.tokens);
    const answered = await client.chat.completions.create({
      model,
      messages: back({
        id: "abcdefghi",
        type: "custom",
        custom: { name: "calc", input: "add 2,3" },
      }) as never,
      tools,
      max_tokens: 3,
    });
    assert.equal(answered.object, "chat.completion");

    // A grammar Lark would not read is the client's error.
    const refused = await post(`${url}/v1/chat/completions`, {
      model,
      messages,
      tools: [{
        type: "custom",
        custom: {
          name: "calc",
          format: { type: "grammar", grammar: { syntax: "lark", definition: "start: x" } },
        },
      }],
    });
    assert.equal(refused.status, 400);
    assert.equal(refused.json.error.param, "tools[0].custom.format.grammar.definition");
    assert.match(refused.json.error.message, /x, which is not defined/);
    const unknown = await post(`${url}/v1/chat/completions`, {
      model,
      messages,
      tools,
      tool_choice: { type: "custom", custom: { name: "nope" } },
    });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.json.error.param, "tool_choice.custom.name");
  });
});

Deno.test("forced calls with the Mistral client (tool_choice any), and its call sent back", async () => {
  await withServer({}, async ({ url, service }) => {
    const client = new Mistral({ serverURL: url, apiKey: "unused" });
    const messages = [{ role: "user" as const, content: "Book two nights." }];
    const res = await client.chat.complete({
      model: service.model.id,
      messages,
      tools: TOOLS,
      toolChoice: "any",
      temperature: 0.7,
      randomSeed: 9,
      maxTokens: 300,
      parallelToolCalls: false,
    });
    const choice = res.choices![0];
    assert.equal(choice.finishReason, "tool_calls");
    const calls = choice.message!.toolCalls!;
    assert.equal(calls.length, 1);
    const args = typeof calls[0].function.arguments === "string"
      ? JSON.parse(calls[0].function.arguments)
      : calls[0].function.arguments;
    const validate = new Map(FUNCTIONS.map((f) => [f.name, ajv.compile(f.parameters)])).get(
      calls[0].function.name,
    )!;
    assert.ok(validate(args), JSON.stringify(args));
    const next = await client.chat.complete({
      model: service.model.id,
      messages: [
        ...messages,
        { role: "assistant", content: "", toolCalls: calls },
        { role: "tool", toolCallId: calls[0].id, name: calls[0].function.name, content: "booked" },
      ],
      tools: TOOLS,
      maxTokens: 3,
    });
    assert.ok(next.choices![0].finishReason);
  });
});

/** What a model writes that answers with some text, then [TOOL_CALLS] and `calls`. */
const textThenCalls = (tokenizer: Tokenizer, calls: string) => [
  ...tokenizer.encode("Let me check."),
  tokenizer.special("[TOOL_CALLS]"),
  ...tokenizer.encode(calls),
];

Deno.test("auto: text, then [TOOL_CALLS] and calls, is content plus tool_calls, whole and streamed", async () => {
  const full = await loadTokenizer(fixture("tekken-full.json"), { cache: false });
  const calls = '[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}]';
  const script = (text: string) => textThenCalls(full, text);
  const app = (ids: number[], finish?: FinishReason) =>
    createApp({ ...engineLessService(full), engine: new ScriptedEngine(ids, finish) });
  const request = (stream: boolean) => ({
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: "Paris?" }], tools: TOOLS, stream }),
  });

  const whole = await (await app(script(calls)).request("/v1/chat/completions", request(false))).json();
  const choice = whole.choices[0];
  assert.equal(choice.finish_reason, "tool_calls");
  assert.equal(choice.message.content, "Let me check.");
  assert.equal(choice.message.tool_calls.length, 1);
  assert.deepEqual(choice.message.tool_calls[0].function, {
    name: "get_weather",
    arguments: '{"city": "Paris", "unit": "c"}',
  });

  const events = (await (await app(script(calls)).request("/v1/chat/completions", request(true))).text())
    .split("\n\n").filter((e) => e.startsWith("data: {")).map((e) => JSON.parse(e.slice(6)));
  const deltas = events.map((e) => e.choices[0]);
  assert.equal(deltas.map((d) => d.delta.content ?? "").join(""), "Let me check.");
  // The calls come whole in one chunk when the answer ends (as Mistral's API streams them).
  const callDeltas = deltas.filter((d) => d.delta.tool_calls).map((d) => d.delta.tool_calls);
  assert.equal(callDeltas.length, 1);
  assert.equal(callDeltas[0].length, 1);
  assert.match(callDeltas[0][0].id, /^[a-zA-Z0-9]{9}$/);
  assert.deepEqual({ ...callDeltas[0][0], id: undefined }, {
    index: 0,
    id: undefined,
    type: "function",
    function: { name: "get_weather", arguments: '{"city": "Paris", "unit": "c"}' },
  });
  assert.equal(deltas.at(-1).finish_reason, "tool_calls");

  // [TOOL_CALLS] written again starts another list.
  const again = (name: string) => [
    ...script(calls),
    full.special("[TOOL_CALLS]"),
    ...full.encode(`[{"name": "${name}", "arguments": {}}]`),
  ];
  const both = await (await app(again("book-room_2")).request("/v1/chat/completions", request(false))).json();
  assert.deepEqual(
    both.choices[0].message.tool_calls.map((c: { function: { name: string } }) => c.function.name),
    ["get_weather", "book-room_2"],
  );
  // Calls no grammar checked (written after text) that name no tool are not calls: the text is returned.
  const unknown = await (await app(again("rm_rf")).request("/v1/chat/completions", request(false))).json();
  assert.equal(unknown.choices[0].finish_reason, "stop");
  assert.equal(unknown.choices[0].message.tool_calls, undefined);
  assert.match(unknown.choices[0].message.content, /^Let me check\.\[.*rm_rf/);

  // The answer goes back as the next turn's history as it is, text and calls: encoded as the model wrote them.
  const history = {
    messages: [
      { role: "user", content: "Paris?" },
      choice.message,
      { role: "tool", tool_call_id: choice.message.tool_calls[0].id, content: "sunny" },
    ],
    tools: TOOLS,
  };
  const res = await app([]).request("/tokenize", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(history),
  });
  assert.equal(res.status, 200);
  const ids: number[] = (await res.json()).tokens;
  const at = ids.indexOf(full.special("[TOOL_CALLS]"));
  const text = [...full.encode("Let me check.")];
  assert.deepEqual(ids.slice(at - text.length, at), text);

  // Complete calls are calls even when what came after them ran into max_tokens.
  const complete = await (await app(script(calls), "length").request("/v1/chat/completions", request(false)))
    .json();
  assert.equal(complete.choices[0].finish_reason, "tool_calls");

  // A call cut short once its name was whole stands as far as it went, as OpenAI's do; before that, what the
  // model wrote reaches the client as text, never dropped.
  const cut =
    await (await app(script(calls.slice(0, 30)), "length").request("/v1/chat/completions", request(false)))
      .json();
  assert.equal(cut.choices[0].finish_reason, "length");
  assert.equal(cut.choices[0].message.content, "Let me check.");
  assert.deepEqual(cut.choices[0].message.tool_calls.map((c: { function: unknown }) => c.function), [
    { name: "get_weather", arguments: "" },
  ]);
  const early =
    await (await app(script(calls.slice(0, 12)), "length").request("/v1/chat/completions", request(false)))
      .json();
  assert.equal(early.choices[0].message.content, `Let me check.${calls.slice(0, 12)}`);
  assert.equal(early.choices[0].message.tool_calls, undefined);
});

/** The response of an app whose engine writes `ids` (then ends with `finish`) to `body` at `path`. */
async function scripted(
  tokenizer: Tokenizer,
  ids: number[],
  path: string,
  body: object,
  stream: boolean,
  finish: FinishReason = "stop",
): Promise<Response> {
  const app = createApp({ ...engineLessService(tokenizer), engine: new ScriptedEngine(ids, finish) });
  const res = await app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...body, stream }),
  });
  assert.equal(res.status, 200);
  return res;
}

/** `scripted`'s answers read: a stream's data events, or the answer's JSON. */
function answers(tokenizer: Tokenizer, ids: number[]) {
  return async (path: string, body: object, stream: boolean) => {
    const res = await scripted(tokenizer, ids, path, body, stream);
    return stream ? await dataEvents(res) : await res.json();
  };
}

/** A stream's data events. */
async function dataEvents(res: Response) {
  return (await res.text()).split("\n\n").flatMap((e) => {
    const data = e.split("\n").find((l) => l.startsWith("data: {"));
    return data ? [JSON.parse(data.slice(6))] : [];
  });
}

Deno.test("calls stream whole on the chat API, as they are written on Messages and Responses; cut short, as far as they went or as text", async () => {
  const full = await loadTokenizer(fixture("tekken-full.json"), { cache: false });
  const calls = '[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}, ' +
    '{"name": "get_weather", "arguments": {"city": "Oslo \\u00e9", "unit": "f"}}]';
  const args = ['{"city": "Paris", "unit": "c"}', '{"city": "Oslo é", "unit": "f"}'];
  const ids = textThenCalls(full, calls);
  const events = async (path: string, body: object, script = ids, finish: FinishReason = "stop") =>
    await dataEvents(await scripted(full, script, path, body, true, finish));
  const chat = { messages: [{ role: "user", content: "Paris?" }], tools: TOOLS };
  const tools = TOOLS.map(({ function: f }) => ({ name: f.name, input_schema: f.parameters }));
  const messages = { model: "tiny", max_tokens: 100, messages: chat.messages, tools };
  const responses = { input: "Paris?", tools: TOOLS.map(({ function: f }) => ({ type: "function", ...f })) };

  // Chat: the calls whole in one chunk before the last, with their ids and names, as Mistral's API streams calls:
  // Mistral's clients need a call's name in every chunk.
  const chatEvents = await events("/v1/chat/completions", chat);
  const chunks = chatEvents.flatMap((e) => e.choices[0]?.delta.tool_calls ?? []);
  assert.deepEqual(chunks.map((c) => [c.index, c.function.name, c.function.arguments]), [
    [0, "get_weather", args[0]],
    [1, "get_weather", args[1]],
  ]);
  assert.ok(chunks.every((c) => /^[a-zA-Z0-9]{9}$/.test(c.id) && c.type === "function"));
  const last = chatEvents.findLastIndex((e) => e.choices[0]?.delta.tool_calls);
  assert.equal(chatEvents[last].choices[0].finish_reason, null);
  assert.equal(chatEvents[last + 1].choices[0].finish_reason, "tool_calls");

  // Messages: a tool_use block per call, its input as input_json_delta pieces, each block stopped.
  const anthropic = await events("/v1/messages", messages);
  const blocks = anthropic.filter((e) => e.type === "content_block_start").map((e) => e.content_block);
  assert.deepEqual(blocks.map((b) => b.type), ["text", "tool_use", "tool_use"]);
  for (const [i, expected] of args.entries()) {
    const pieces = anthropic.filter((e) => e.index === i + 1 && e.type === "content_block_delta");
    assert.ok(pieces.length > 3);
    assert.equal(pieces.map((e) => e.delta.partial_json).join(""), expected);
  }
  assert.equal(anthropic.filter((e) => e.type === "content_block_stop").length, 3);
  assert.equal(anthropic.find((e) => e.type === "message_delta").delta.stop_reason, "tool_use");

  // Responses: an item per call, its arguments as delta events, then done with the whole.
  const openai = await events("/v1/responses", responses);
  const done = openai.filter((e) => e.type === "response.function_call_arguments.done");
  assert.deepEqual(done.map((e) => e.arguments), args);
  for (const { item_id, arguments: whole } of done) {
    const pieces = openai.filter((e) =>
      e.type === "response.function_call_arguments.delta" && e.item_id === item_id
    );
    assert.ok(pieces.length > 3);
    assert.equal(pieces.map((e) => e.delta).join(""), whole);
  }
  const completed = openai.at(-1);
  assert.equal(completed.type, "response.completed");
  assert.deepEqual(completed.response.output.map((o: { type: string }) => o.type), [
    "message",
    "function_call",
    "function_call",
  ]);

  // Cut by max_tokens inside the second call's arguments: every API has the calls as far as they went and says
  // why they ended, streamed or not (the raw call syntax is never the answer's text).
  const cut = textThenCalls(full, calls.slice(0, -16));
  const whole = async (path: string, body: object) =>
    await (await scripted(full, cut, path, body, false, "length")).json();
  const cutChunks = await events("/v1/chat/completions", chat, cut, "length");
  assert.equal(cutChunks.at(-1).choices[0].finish_reason, "length");
  const cutCalls = cutChunks.flatMap((e) => e.choices[0]?.delta.tool_calls ?? []).map((c) => c.function);
  assert.deepEqual(cutCalls, [
    { name: "get_weather", arguments: args[0] },
    { name: "get_weather", arguments: '{"city": "Oslo é"' },
  ]);
  assert.equal(cutChunks.map((e) => e.choices[0]?.delta.content ?? "").join(""), "Let me check.");
  const cutChat = await whole("/v1/chat/completions", chat);
  assert.equal(cutChat.choices[0].finish_reason, "length");
  assert.equal(cutChat.choices[0].message.content, "Let me check.");
  assert.deepEqual(
    cutChat.choices[0].message.tool_calls.map((c: { function: unknown }) => c.function),
    cutCalls,
  );
  const cutResponses = await events("/v1/responses", responses, cut, "length");
  assert.equal(cutResponses.at(-1).type, "response.incomplete");
  const statuses = ["completed", "completed", "incomplete"];
  assert.deepEqual(cutResponses.at(-1).response.output.map((o: { status: string }) => o.status), statuses);
  const cutWhole = await whole("/v1/responses", responses);
  assert.deepEqual(cutWhole.output.map((o: { status: string }) => o.status), statuses);
  assert.deepEqual(
    cutWhole.output.slice(1).map((o: { arguments: string }) => o.arguments),
    cutCalls.map((c) => c.arguments),
  );
  // Cut just after a call whose arguments are whole: that call is complete.
  const after = textThenCalls(full, calls.slice(0, calls.indexOf("}}, ") + 6));
  const afterResponses = await events("/v1/responses", responses, after, "length");
  assert.deepEqual(afterResponses.at(-1).response.output.map((o: { status: string }) => o.status), [
    "completed",
    "completed",
  ]);
  const cutMessages = await events("/v1/messages", messages, cut, "length");
  assert.equal(cutMessages.find((e) => e.type === "message_delta").delta.stop_reason, "max_tokens");
  assert.equal(cutMessages.filter((e) => e.type === "content_block_stop").length, 3);
  const cutMessage = await whole("/v1/messages", messages);
  assert.equal(cutMessage.stop_reason, "max_tokens");
  assert.deepEqual(cutMessage.content.map((b: { type: string }) => b.type), ["text", "tool_use", "tool_use"]);
  assert.deepEqual(cutMessage.content[1].input, JSON.parse(args[0]));
  assert.deepEqual(cutMessage.content[2].input, {});
});

Deno.test("calls the grammar did not check, in a form the reader does not follow, are still calls in every stream", async () => {
  const full = await loadTokenizer(fixture("tekken-full.json"), { cache: false });
  const args = '{"city": "Paris", "unit": "c"}';
  // A key more (as the prompt writes past calls, with their ids), and arguments as JSON text.
  const texts = [
    `[{"name": "get_weather", "arguments": ${args}, "id": "abcdefghi"}]`,
    `[{"name": "get_weather", "arguments": ${JSON.stringify(args)}}]`,
  ];
  for (const text of texts) {
    const ids = textThenCalls(full, text);
    const request = answers(full, ids);
    const chat = { messages: [{ role: "user", content: "Paris?" }], tools: TOOLS };
    const whole = await request("/v1/chat/completions", chat, false);
    assert.equal(whole.choices[0].finish_reason, "tool_calls", text);
    assert.equal(whole.choices[0].message.tool_calls[0].function.arguments, args);
    const streamed = await request("/v1/chat/completions", chat, true);
    const calls = streamed.flatMap((e: { choices: { delta: { tool_calls?: unknown[] } }[] }) =>
      e.choices[0]?.delta.tool_calls ?? []
    );
    assert.deepEqual(
      calls.map((c: { function: { arguments: string } }) => c.function.arguments),
      [args],
      text,
    );

    const tools = TOOLS.map(({ function: f }) => ({ name: f.name, input_schema: f.parameters }));
    const messages = { model: "tiny", max_tokens: 100, messages: chat.messages, tools };
    const anthropic = await request("/v1/messages", messages, true);
    const pieces = anthropic.filter((e: { type: string; delta?: { type: string } }) =>
      e.type === "content_block_delta" && e.delta?.type === "input_json_delta"
    );
    assert.equal(
      pieces.map((e: { delta: { partial_json: string } }) => e.delta.partial_json).join(""),
      args,
      text,
    );
    const started = anthropic.filter((e: { type: string; content_block?: { type: string } }) =>
      e.type === "content_block_start" && e.content_block?.type === "tool_use"
    );
    assert.equal(started.length, 1);
    assert.equal(
      anthropic.find((e: { type: string }) => e.type === "message_delta").delta.stop_reason,
      "tool_use",
    );
  }
});

Deno.test("calls that are none (not JSON, a name twice) are text in every answer, also after calls began", async () => {
  const full = await loadTokenizer(fixture("tekken-full.json"), { cache: false });
  const texts = [
    '[{"name": "get_weather", "arguments": {"city": "a",}}]',
    '[{"name": "get_weather", "arguments": {"city": "a" "b"}}]',
    '[{"name": "get_weather", "name": "book-room_2", "arguments": {}}]',
  ];
  for (const text of texts) {
    const ids = textThenCalls(full, text);
    const request = answers(full, ids);
    const chat = { messages: [{ role: "user", content: "Paris?" }], tools: TOOLS };
    const whole = await request("/v1/chat/completions", chat, false);
    assert.equal(whole.choices[0].finish_reason, "stop", text);
    assert.equal(whole.choices[0].message.content, `Let me check.${text}`);
    assert.equal(whole.choices[0].message.tool_calls, undefined);

    const tools = TOOLS.map(({ function: f }) => ({ name: f.name, input_schema: f.parameters }));
    const anthropic = await request("/v1/messages", {
      model: "tiny",
      max_tokens: 100,
      messages: chat.messages,
      tools,
    }, true);
    const written = anthropic.filter((e: { type: string; delta?: { type: string } }) =>
      e.delta?.type === "text_delta"
    )
      .map((e: { delta: { text: string } }) => e.delta.text).join("");
    assert.equal(written, `Let me check.${text}`, text);
    assert.equal(
      anthropic.find((e: { type: string }) => e.type === "message_delta").delta.stop_reason,
      "end_turn",
    );

    const responses = {
      input: "Paris?",
      tools: TOOLS.map(({ function: f }) => ({ type: "function", ...f })),
    };
    const openai = await request("/v1/responses", responses, true);
    const output = openai.at(-1).response.output;
    assert.ok(
      output.every((o: { type: string; status: string }) =>
        o.type === "message" || o.status === "incomplete"
      ),
    );
    assert.equal(
      output.filter((o: { type: string }) => o.type === "message").map((o: { content: { text: string }[] }) =>
        o.content[0].text
      ).join(""),
      `Let me check.${text}`,
    );
  }
});

Deno.test("a forced call's stream starts at its first token and keeps alive while the call is written", async () => {
  const full = await loadTokenizer(fixture("tekken-full.json"), { cache: false });
  const calls = [...full.encode('[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}]')];
  const body = JSON.stringify({
    messages: [{ role: "user", content: "Paris?" }],
    tools: TOOLS,
    tool_choice: "required",
    stream: true,
  });
  // One token each 150 ms: the call takes about 3 s.
  const serve = async (engine: ScriptedEngine, use: (url: string) => Promise<void>) => {
    const app = createApp({ ...engineLessService(full), engine });
    const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.fetch);
    try {
      await use(`http://127.0.0.1:${server.addr.port}`);
    } finally {
      await server.shutdown();
    }
  };
  const request = { method: "POST", headers: { "content-type": "application/json" }, body };

  const engine = new ScriptedEngine(calls, "stop", 150);
  await serve(engine, async (url) => {
    const res = await fetch(`${url}/v1/chat/completions`, request);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const parts: { text: string; given: number }[] = [];
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      parts.push({ text: r.value, given: engine.given });
    }
    const text = parts.map((p) => p.text).join("");
    const events = text.split("\n\n").filter(Boolean);
    // The role comes with the first token, keep-alive comments while the call is written, then the call.
    assert.match(events[0], /^data: .*"role":"assistant"/);
    assert.ok(parts[0].given < calls.length / 2, `the stream began after ${parts[0].given} tokens`);
    const comments = events.filter((e) => e.startsWith(": "));
    assert.ok(comments.length >= 1, text);
    assert.ok(comments.every((e) => e === ": keep-alive"));
    const data = events.filter((e) => e.startsWith("data: {")).map((e) => JSON.parse(e.slice(6)));
    const call = data.flatMap((d) => d.choices[0]?.delta.tool_calls ?? []);
    assert.equal(call.length, 1);
    assert.deepEqual(JSON.parse(call[0].function.arguments), { city: "Paris", unit: "c" });
    assert.equal(events.at(-1), "data: [DONE]");

    // Clients skip the comments.
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused" });
    const stream = await client.chat.completions.create({
      messages: [{ role: "user", content: "Paris?" }],
      model: "tiny",
      tools: TOOLS,
      tool_choice: "required",
      stream: true,
    });
    const names: string[] = [];
    for await (const chunk of stream) {
      for (const c of chunk.choices[0]?.delta.tool_calls ?? []) names.push(c.function!.name!);
    }
    assert.deepEqual(names, ["get_weather"]);
  });

  // A client that leaves while the calls are written stops their generation.
  const left = new ScriptedEngine(calls, "stop", 150);
  await serve(left, async (url) => {
    const res = await fetch(`${url}/v1/chat/completions`, request);
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    const deadline = Date.now() + 10_000;
    while (!left.stopped && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(left.stopped, `the generation ran on: ${left.given} of ${calls.length} tokens`);
    assert.ok(left.given < calls.length);
  });
});

Deno.test('tool_choice "none" bans [TOOL_CALLS]: banned tokens are never sampled, in runs of steps too', async () => {
  const model = await loadTiny("mistral", EXACT);
  const tiny = await loadTokenizer(fixture("mistral/tekken.json"), { cache: false });
  const request = {
    ids: [1, 3, ...tiny.encode("Say something."), 4],
    images: [],
    sampling: GREEDY,
    maxTokens: 12,
    stopIds: [2],
  };
  const engine = new LocalEngine(model, { decodeRunMs: Infinity });
  try {
    const free = (await collect(engine.generate(request))).events.map((e) => e.id);
    // Ban the tokens greedy decoding picked: none of them may come again, and the first pick must change.
    const banned = [...new Set(free)];
    const constrained = (await collect(engine.generate({ ...request, banned }))).events.map((e) => e.id);
    assert.ok(constrained.length > 0);
    assert.ok(constrained.every((id) => !banned.includes(id)), `${constrained} vs banned ${banned}`);
    assert.throws(() => engine.generate({ ...request, banned: [2] }), /both a stop id and banned/);
  } finally {
    await engine.close();
  }
  assert.equal(model.pool.usedBlocks, 0);
  // The format of a forced call with a schema the check accepts compiles as one JSON Schema.
  assert.ok(jsonSchemaFormat(JSON.parse(toolCallsFormat(FUNCTIONS, false).schema)));
});

/** The tiny model's engine with xgrammar over its tokenizer, and a greedy request for a short answer. */
async function triggerEngine(maxTokens: number) {
  const model = await loadTiny("mistral", EXACT);
  const tiny = await loadTokenizer(fixture("mistral/tekken.json"), { cache: false });
  const constraints = XGrammarConstraints.forTokenizer(tiny, model.config.decoder.vocabSize);
  const engine = new LocalEngine(model, { constraints, decodeRunMs: Infinity });
  const request = {
    ids: [1, 3, ...tiny.encode("Answer."), 4],
    images: [],
    sampling: GREEDY,
    maxTokens,
    stopIds: [2],
  };
  return { model, tiny, constraints, engine, request };
}

Deno.test("auto: a triggered format applies to what follows the trigger, wherever it comes, in runs of steps too", async () => {
  const { model, tiny, constraints, engine, request } = await triggerEngine(40);
  // The same requests read back token by token: runs of steps must drop what they sampled past the trigger.
  const stepwise = new LocalEngine(model, { constraints, decodeSteps: 1 });
  const format = jsonSchemaFormat({ enum: ["yes", "no"] });
  const answers = ['"yes"', '"no"'];
  try {
    const free = (await collect(engine.generate(request))).events.map((e) => e.id);
    assert.equal(free.length, 40, "greedy text without a stop token, long enough for several runs");
    // A trigger the text never writes: the output is free, token for token what it is without a format.
    const absent = [1100, 1101, 1102].find((id) => !free.includes(id))!;
    const untriggered = await collect(engine.generate({ ...request, format, trigger: absent }));
    assert.deepEqual(untriggered.events.map((e) => e.id), free);
    // The trigger first, inside the first run of steps, at its end and inside a chained run: the text before
    // it is the free text's, what follows it is the format's, then the stop token.
    const firsts = [...new Set(free)].map((id) => free.indexOf(id));
    const at = [0, ...[3, 9, 13, 22].map((k) => firsts.find((f) => f >= k)!)];
    assert.ok(new Set(at).size >= 4, `first occurrences ${firsts}`);
    for (const k of new Set(at)) {
      const triggered = await collect(engine.generate({ ...request, format, trigger: free[k] }));
      const ids = triggered.events.map((e) => e.id);
      assert.deepEqual(ids.slice(0, k + 1), free.slice(0, k + 1), `trigger at ${k}`);
      assert.equal(triggered.finish, "stop");
      assert.ok(
        answers.includes(tiny.decode(ids.slice(k + 1))),
        `trigger at ${k}: ${tiny.decode(ids.slice(k + 1))}`,
      );
      const alone = await collect(stepwise.generate({ ...request, format, trigger: free[k] }));
      assert.deepEqual(alone.events.map((e) => e.id), ids, `trigger at ${k}, one step per readback`);
    }
    // A triggered format xgrammar cannot compile is dropped: the output is free.
    const broken = { schema: JSON.stringify({ $ref: "#/$defs/missing" }), strict: true };
    const dropped = await collect(engine.generate({ ...request, format: broken, trigger: free[at[2]] }));
    assert.deepEqual(dropped.events.map((e) => e.id), free);
    assert.throws(() => engine.generate({ ...request, trigger: 5 }), /needs an output format/);
    assert.throws(() => engine.generate({ ...request, format, trigger: 2 }), /stop id or banned/);
  } finally {
    await engine.close();
    await stepwise.close();
  }
  assert.equal(model.pool.usedBlocks, 0);
});

Deno.test("auto with an alternative format: the first token is the trigger or the alternative's, and the rest follows", async () => {
  const { model, tiny, engine, request } = await triggerEngine(40);
  const format = jsonSchemaFormat({ enum: ["yes", "no"] });
  const orElse = jsonSchemaFormat({ type: "array", items: { enum: [1, 2, 3] }, minItems: 1, maxItems: 3 });
  const trigger = tiny.special("[TOOL_CALLS]");
  const bias = (value: number) => ({ ...GREEDY, bias: { ids: [trigger], values: [value] } });
  try {
    // The trigger first: what follows is the triggered format's.
    const calls = await collect(
      engine.generate({ ...request, sampling: bias(100), format, trigger, orElse }),
    );
    const called = calls.events.map((e) => e.id);
    assert.equal(called[0], trigger);
    assert.equal(calls.finish, "stop");
    assert.ok(['"yes"', '"no"'].includes(tiny.decode(called.slice(1))), tiny.decode(called.slice(1)));
    // Anything else first: the whole answer is the alternative's, from its first token on.
    for (const sampling of [bias(-100), GREEDY]) {
      const text = await collect(engine.generate({ ...request, sampling, format, trigger, orElse }));
      const ids = text.events.map((e) => e.id);
      if (ids[0] === trigger) continue; // greedy may choose the trigger itself
      assert.equal(text.finish, "stop");
      const value = JSON.parse(tiny.decode(ids));
      assert.ok(Array.isArray(value) && value.length >= 1 && value.length <= 3, tiny.decode(ids));
      assert.ok(value.every((v: number) => [1, 2, 3].includes(v)));
    }
    assert.throws(() => engine.generate({ ...request, orElse }), /needs a trigger token/);
  } finally {
    await engine.close();
  }
  // An alternative that cannot be compiled fails the request, and frees the triggered format's matcher too.
  let made = 0, released = 0;
  const counting = {
    constrain: async (f: typeof format) => {
      if (f === orElse) throw new InvalidRequestError("the schema cannot be compiled");
      await new Promise((r) => setTimeout(r, 50)); // the calls' matcher arrives after the failure
      made++;
      return {
        allowed: () => Promise.resolve(new Uint32Array(64)),
        accept: () => true,
        release: () => released++,
      };
    },
  };
  const failing = new LocalEngine(model, { constraints: counting, decodeRunMs: Infinity });
  try {
    await assert.rejects(
      () => collect(failing.generate({ ...request, format, trigger, orElse })),
      /cannot be compiled/,
    );
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual({ made, released }, { made: 1, released: 1 });
  } finally {
    await failing.close();
  }
  assert.equal(model.pool.usedBlocks, 0);
});

Deno.test("auto: calls the tiny model writes after text follow the tools' schemas, whole and streamed", async () => {
  await withServer({}, async ({ url, service }) => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused" });
    const validators = new Map(FUNCTIONS.map((f) => [f.name, ajv.compile(f.parameters)]));
    const trigger = String(service.tokenizer.special("[TOOL_CALLS]"));
    const body = {
      model: service.model.id,
      messages: [{ role: "user" as const, content: "Weather in Oslo?" }],
      tools: TOOLS,
      // A bias that makes greedy decoding write [TOOL_CALLS] after two tokens of text (found by trying).
      logit_bias: { [trigger]: 3 },
      temperature: 0,
      max_tokens: 600,
    };
    const { message, finish_reason } = (await client.chat.completions.create(body)).choices[0];
    assert.equal(finish_reason, "tool_calls", JSON.stringify(message));
    assert.ok(message.content, "text before the calls");
    for (const call of message.tool_calls!) {
      assert.ok(call.type === "function");
      const validate = validators.get(call.function.name)!;
      assert.ok(validate(JSON.parse(call.function.arguments)), call.function.arguments);
    }
    let content = "", args = "";
    for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) {
      const delta = chunk.choices[0]?.delta;
      content += delta?.content ?? "";
      for (const call of delta?.tool_calls ?? []) args += call.function?.arguments ?? "";
    }
    assert.equal(content, message.content);
    assert.equal(
      args,
      message.tool_calls!.map((c) => c.type === "function" ? c.function.arguments : "").join(""),
    );
  });
});

Deno.test("response_format with tools under auto: calls, or text in the format (chat and Responses)", async () => {
  await withServer({}, async ({ url, service }) => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused" });
    const trigger = String(service.tokenizer.special("[TOOL_CALLS]"));
    const schema = {
      type: "object",
      properties: { answer: { enum: ["yes", "no"] } },
      required: ["answer"],
      additionalProperties: false,
    };
    const validate = ajv.compile(schema);
    const ask = (bias: number) =>
      client.chat.completions.create({
        model: service.model.id,
        messages: [{ role: "user", content: "Weather in Oslo?" }],
        tools: TOOLS,
        response_format: { type: "json_schema", json_schema: { name: "answer", schema } },
        logit_bias: { [trigger]: bias },
        temperature: 0,
        max_tokens: 300,
      });
    const calls = (await ask(100)).choices[0];
    assert.equal(calls.finish_reason, "tool_calls", JSON.stringify(calls.message));
    for (const call of calls.message.tool_calls!) {
      assert.ok(call.type === "function" && ["get_weather", "book-room_2"].includes(call.function.name));
    }
    const text = (await ask(-100)).choices[0];
    assert.equal(text.finish_reason, "stop", JSON.stringify(text.message));
    assert.ok(validate(JSON.parse(text.message.content!)), text.message.content!);

    // openai-agents' shape: an output type (text.format) and function tools in one Responses request.
    const response = await client.responses.create({
      model: service.model.id,
      input: "Weather in Oslo?",
      tools: [{ type: "function", name: "get_weather", parameters: WEATHER, strict: true }],
      text: { format: { type: "json_schema", name: "answer", schema, strict: true } },
      temperature: 0,
      max_output_tokens: 300,
      ...{ logit_bias: { [trigger]: -100 } },
    });
    assert.equal(response.status, "completed");
    assert.ok(validate(JSON.parse(response.output_text)), response.output_text);
  });
});

Deno.test("tool_choice as a tool's name alone (LangChain's ChatMistralAI) forces that function; another word is a 400", () => {
  const tools = [
    { type: "function", function: { name: "get_weather", parameters: { type: "object" } } },
    { type: "function", function: { name: "lookup", parameters: { type: "object" } } },
  ];
  const use = (tool_choice: unknown) =>
    toolUse(parseChatRequest({ messages: [{ role: "user", content: "hi" }], tools, tool_choice }).request);
  const named = use({ type: "function", function: { name: "lookup" } })!;
  const bare = use("lookup")!;
  assert.deepEqual(bare.callable, ["lookup"]);
  assert.deepEqual(toolGeneration(bare, 9), toolGeneration(named, 9));
  // The keywords stay keywords.
  assert.equal(use("required")!.choice, "required");
  assert.throws(
    () => use("requird"),
    (err: Error & { param?: string }) =>
      err.param === "tool_choice" && /"requird" is none of/.test(err.message),
  );
  assert.throws(
    () =>
      toolUse(parseChatRequest({ messages: [{ role: "user", content: "hi" }], tool_choice: "Auto" }).request),
    /"Auto" is none of/,
  );
});

Deno.test("a function whose parameters are no JSON Schema is a 400, strict or not; an unsupported one is relaxed", () => {
  const use = (parameters: unknown) =>
    toolUse(
      parseChatRequest({
        messages: [{ role: "user", content: "hi" }],
        tools: [{ type: "function", function: { name: "f", parameters } }],
      }).request,
    )!;
  for (
    const [parameters, at] of [
      [{ type: "object", properties: { city: { type: "int" } } }, "/properties/city/type"],
      [
        { type: "object", properties: { a: { type: "string" } }, additionalProperties: "abc" },
        "/additionalProperties",
      ],
      [{ type: "object", required: 7 }, "/required"],
      [{ type: "object", properties: { a: { type: "string", minLength: "3" } } }, "/properties/a/minLength"],
    ] as const
  ) {
    assert.throws(
      () => toolGeneration(use(parameters), 9),
      (err: Error & { param?: string }) =>
        err.param === "tools[0].function.parameters" && err.message.includes(`(at ${at})`),
      JSON.stringify(parameters),
    );
  }
  // Whatever the choice: none, or another function named.
  const two = (tool_choice: unknown) =>
    toolUse(
      parseChatRequest({
        messages: [{ role: "user", content: "hi" }],
        tools: [
          { type: "function", function: { name: "f", parameters: { type: "object" } } },
          { type: "function", function: { name: "g", parameters: { type: "object", required: 7 } } },
        ],
        tool_choice,
      }).request,
    )!;
  for (const choice of ["none", "f", { type: "function", function: { name: "f" } }]) {
    assert.throws(
      () => toolGeneration(two(choice), 9),
      (err: Error & { param?: string }) => err.param === "tools[1].function.parameters",
      JSON.stringify(choice),
    );
  }
  // A schema the grammar cannot enforce all of is still taken (OpenAI enforces nothing without strict).
  const relaxed = toolGeneration(use({ type: "object", properties: { a: { not: { type: "string" } } } }), 9);
  assert.ok(relaxed.format);
});
