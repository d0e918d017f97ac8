/**
 * POST /v1/responses with the OpenAI client against a real server on loopback (tiny-pixtral, f32): each request
 * answers as the chat completion it amounts to (text, images, calls and their outputs, structured output,
 * log-probabilities), streamed events that the client's own accumulator checks, and errors naming the
 * Responses request's fields.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { type OutputItem, OutputItems } from "../functions/chat/output_items.ts";
import { flatTools, renamed, toChat } from "../functions/chat/responses.ts";
import {
  CUSTOM_INPUT,
  customInput,
  CustomInputReader,
  customInputSoFar,
} from "../functions/chat/custom_tools.ts";
import { parseResponsesRequest, type ResponsesRequest } from "../functions/schema/responses.ts";
import { pyAt } from "../runtime/prompt/pyjson.ts";
import { dataUrl, post, serverConfig, withServer } from "./api_helpers.ts";
import { SUMMARY_REQUEST } from "../functions/chat/compaction.ts";

const image = await dataUrl("golden/images/chat_a_32x48.png");
/** A server with a short context, for conversations that must overflow it (short prompts read fast). */
const SHORT_CONTEXT = { model: { ...serverConfig().model, ctx: 512 } };
const WEATHER = {
  type: "object",
  properties: { city: { type: "string", maxLength: 12 }, unit: { enum: ["c", "f"] } },
  required: ["city", "unit"],
  additionalProperties: false,
};

type Stream = ReturnType<OpenAI["responses"]["stream"]>;

/** The streamed response as the client assembles it, and the events' types in order. */
async function streamed(stream: Stream) {
  const types: string[] = [];
  let sequence = -1;
  for await (const event of stream) {
    types.push(event.type);
    assert.equal(event.sequence_number, sequence + 1);
    sequence = event.sequence_number;
  }
  return { response: await stream.finalResponse(), types };
}

Deno.test("Responses API: text and images answer as chat completions do, streamed or not", async () => {
  await withServer({}, async ({ url, service }) => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused" });
    const model = service.model.id;
    for (const max of [12]) {
      const chat = await client.chat.completions.create({
        model,
        messages: [
          { role: "system", content: "Be brief." },
          {
            role: "user",
            content: [{ type: "text", text: "What is this?" }, {
              type: "image_url",
              image_url: { url: image },
            }],
          },
        ],
        max_completion_tokens: max,
        temperature: 0,
      });
      const request = {
        model,
        instructions: "Be brief.",
        input: [{
          role: "user",
          content: [{ type: "input_text", text: "What is this?" }, {
            type: "input_image",
            image_url: image,
            detail: "auto",
          }],
        }],
        max_output_tokens: max,
        temperature: 0,
        metadata: { case: String(max) },
      } satisfies OpenAI.Responses.ResponseCreateParamsNonStreaming;
      const whole = await client.responses.create(request);
      const finish = chat.choices[0].finish_reason;
      assert.equal(whole.object, "response");
      assert.match(whole.id, /^resp_/);
      assert.equal(whole.output_text, chat.choices[0].message.content);
      assert.equal(whole.status, finish === "length" ? "incomplete" : "completed");
      assert.deepEqual(
        whole.incomplete_details,
        finish === "length" ? { reason: "max_output_tokens" } : null,
      );
      assert.equal(whole.usage?.input_tokens, chat.usage?.prompt_tokens);
      assert.equal(whole.usage?.output_tokens, chat.usage?.completion_tokens);
      assert.equal(whole.usage?.total_tokens, chat.usage?.total_tokens);
      assert.deepEqual(whole.metadata, { case: String(max) });
      assert.equal((whole as unknown as { store: boolean }).store, false);
      // The SDK's count of a request's input tokens (POST /v1/responses/input_tokens) is what the answer read.
      const { max_output_tokens: _, metadata: __, temperature: ___, ...input } = request;
      assert.deepEqual(await client.responses.inputTokens.count(input), {
        object: "response.input_tokens",
        input_tokens: whole.usage?.input_tokens,
      });
      assert.equal(whole.output.length, 1);
      assert.equal(whole.output[0].type, "message");

      const { response, types } = await streamed(client.responses.stream(request));
      assert.equal(response.output_text, whole.output_text);
      assert.equal(response.status, whole.status);
      assert.deepEqual(response.usage, whole.usage);
      assert.deepEqual(types.slice(0, 4), [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
      ]);
      assert.deepEqual(types.slice(-4), [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        whole.status === "completed" ? "response.completed" : "response.incomplete",
      ]);
      assert.equal(types.filter((t) => t === "response.output_text.delta").length >= 1, true);
    }
    // A string is one user message.
    const short = await client.responses.create({
      model,
      input: "Hello",
      max_output_tokens: 5,
      temperature: 0,
    });
    const chat = await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: "Hello" }],
      max_tokens: 5,
      temperature: 0,
    });
    assert.equal(short.output_text, chat.choices[0].message.content);
  });
});

Deno.test("Responses API: function calls, streamed as items, and their outputs sent back", async () => {
  await withServer({}, async ({ url, service }) => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused" });
    const model = service.model.id;
    const request = {
      model,
      input: [{ role: "user" as const, content: "Weather in Oslo?" }],
      tools: [{ type: "function" as const, name: "get_weather", parameters: WEATHER, strict: true }],
      tool_choice: "required" as const,
      temperature: 1,
      max_output_tokens: 300,
      // vLLM's extension, as in the chat API: the same seed gives the same calls.
      ...{ seed: 3 },
    };
    const whole = await client.responses.create(request);
    const calls = whole.output.filter((item) => item.type === "function_call");
    const asked = { model, input: request.input, tools: request.tools, tool_choice: request.tool_choice };
    const { input_tokens } = await client.responses.inputTokens.count(asked);
    assert.equal(input_tokens, whole.usage?.input_tokens, "the tools are counted");
    assert.equal(whole.status, "completed");
    assert.equal(calls.length, whole.output.length, "calls alone, no message");
    assert.ok(calls.length >= 1);
    for (const call of calls) {
      assert.equal(call.name, "get_weather");
      assert.match(call.call_id, /^[a-zA-Z0-9]{9}$/);
      const args = JSON.parse(call.arguments);
      assert.deepEqual(Object.keys(args).sort(), ["city", "unit"]);
    }
    const chat = await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: "Weather in Oslo?" }],
      tools: [{ type: "function", function: { name: "get_weather", parameters: WEATHER } }],
      tool_choice: "required",
      temperature: 1,
      max_tokens: 300,
      seed: 3,
    });
    assert.deepEqual(
      calls.map((c) => [c.name, c.arguments]),
      chat.choices[0].message.tool_calls!.map((c) =>
        c.type === "function" && [c.function.name, c.function.arguments]
      ),
    );

    const { response, types } = await streamed(
      client.responses.stream(request),
    );
    assert.deepEqual(
      response.output.map((c) => c.type === "function_call" && [c.name, c.arguments]),
      calls.map((c) => [c.name, c.arguments]),
    );
    assert.ok(types.includes("response.function_call_arguments.delta"));
    assert.equal(types.at(-1), "response.completed");

    // The calls and their outputs go back as items; the prompt is the chat API's for the same conversation.
    const input: OpenAI.Responses.ResponseInput = [
      { role: "user", content: "Weather in Oslo?" },
      ...calls,
      ...calls.map((c) => ({
        type: "function_call_output" as const,
        call_id: c.call_id,
        output: '{"temp": 21.0}',
      })),
    ];
    const next = await client.responses.create({
      model,
      input,
      tools: request.tools,
      max_output_tokens: 6,
      temperature: 0,
    });
    const followUp: OpenAI.Chat.ChatCompletionMessageParam[] = [
      { role: "user", content: "Weather in Oslo?" },
      {
        role: "assistant",
        content: null,
        tool_calls: calls.map((c) => ({
          id: c.call_id,
          type: "function" as const,
          function: { name: c.name, arguments: c.arguments },
        })),
      },
      ...calls.map((c) => ({ role: "tool" as const, tool_call_id: c.call_id, content: '{"temp": 21.0}' })),
    ];
    const tools = [{
      type: "function",
      function: { name: "get_weather", parameters: WEATHER, strict: true },
    }];
    const counted = await post(`${url}/tokenize`, { messages: followUp, tools });
    assert.equal(next.usage?.input_tokens, counted.json.count);
    const again = await client.chat.completions.create({
      model,
      messages: followUp,
      tools: [{ type: "function", function: { name: "get_weather", parameters: WEATHER, strict: true } }],
      max_tokens: 6,
      temperature: 0,
    });
    const text = next.output.find((item) => item.type === "message");
    assert.equal(
      text?.type === "message" && text.content[0].type === "output_text" && text.content[0].text,
      again.choices[0].message.content ?? false,
    );

    // Earlier outputs may come back as references to their ids (as the Vercel AI SDK sends them): the same
    // conversation, the same answer. The streamed response's items are remembered as well.
    const reference = (item: { id?: string }) => ({ type: "item_reference", id: item.id! }) as const;
    for (const from of [calls, response.output]) {
      const conversation = (items: unknown[]) => ({
        model,
        input: [
          input[0],
          ...items,
          ...from.map((c) => ({
            type: "function_call_output" as const,
            call_id: (c as { call_id: string }).call_id,
            output: '{"temp": 21.0}',
          })),
        ] as OpenAI.Responses.ResponseInput,
        tools: request.tools,
        max_output_tokens: 6,
        temperature: 0,
      });
      const [byItems, byReferences] = await Promise.all([
        client.responses.create(conversation(from)),
        client.responses.create(conversation(from.map(reference))),
      ]);
      assert.equal(byReferences.output_text, byItems.output_text);
      assert.equal(byReferences.usage?.input_tokens, byItems.usage?.input_tokens);
    }
    const turn = (previous: unknown) => ({
      model,
      input: [...input, previous, {
        role: "user",
        content: "And tomorrow?",
      }] as OpenAI.Responses.ResponseInput,
      tools: request.tools,
      max_output_tokens: 4,
      temperature: 0,
    });
    const message = next.output.find((item) => item.type === "message")!;
    const [byItem, byReference] = await Promise.all([
      client.responses.create(turn({ role: "assistant", content: next.output_text })),
      client.responses.create(turn(reference(message))),
    ]);
    assert.equal(byReference.usage?.input_tokens, byItem.usage?.input_tokens);
    assert.equal(byReference.output_text, byItem.output_text);
    // An answer asked for with store: false is not remembered.
    const unstored = await client.responses.create({
      ...turn({ role: "assistant", content: "x" }),
      store: false,
    });
    await assert.rejects(
      client.responses.create(turn(reference(unstored.output.find((item) => item.type === "message")!))),
      /names no output item this server remembers/,
    );
  });
});

Deno.test("Responses API: text.format and log-probabilities as the chat API gives them", async () => {
  await withServer({}, async ({ url, service }) => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused" });
    const model = service.model.id;
    const schema = {
      type: "object",
      properties: { name: { type: "string", maxLength: 10 }, age: { type: "integer" } },
      required: ["name", "age"],
      additionalProperties: false,
    };
    const request = {
      model,
      input: "A person as JSON",
      text: { format: { type: "json_schema" as const, name: "person", schema, strict: true } },
      max_output_tokens: 200,
      temperature: 0,
      top_logprobs: 2,
      include: ["message.output_text.logprobs" as const],
    };
    const whole = await client.responses.create(request);
    const chat = await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: "A person as JSON" }],
      response_format: { type: "json_schema", json_schema: { name: "person", schema, strict: true } },
      max_tokens: 200,
      temperature: 0,
      logprobs: true,
      top_logprobs: 2,
    });
    assert.equal(whole.status, "completed");
    const value = JSON.parse(whole.output_text);
    assert.deepEqual(Object.keys(value).sort(), ["age", "name"]);
    assert.equal(whole.output_text, chat.choices[0].message.content);
    const part = whole.output[0].type === "message" ? whole.output[0].content[0] : undefined;
    assert.ok(part?.type === "output_text");
    assert.deepEqual(part.logprobs, chat.choices[0].logprobs!.content);
    assert.equal(part.logprobs!.every((p) => p.top_logprobs.length === 2), true);
    assert.deepEqual(whole.text?.format, { type: "json_schema", name: "person", schema, strict: true });

    const { response } = await streamed(client.responses.stream(request));
    const streamedPart = response.output[0].type === "message" ? response.output[0].content[0] : undefined;
    assert.ok(streamedPart?.type === "output_text");
    assert.equal(streamedPart.text, part.text);
    assert.deepEqual(streamedPart.logprobs, part.logprobs);
  });
});

Deno.test("Responses API: errors name the Responses request's fields", async () => {
  await withServer({}, async ({ url, service }) => {
    const model = service.model.id;
    const user = (content: unknown) => ({ role: "user", content });
    const tool = { type: "function", name: "get_weather", parameters: WEATHER };
    // Text, then two calls (the second misnamed) joined to its turn, and the first call's output.
    const mergedTurn = [
      user("Hi"),
      { role: "assistant", content: "Checking." },
      { type: "function_call", call_id: "abcdefghi", name: "w", arguments: "{}" },
      { type: "function_call", call_id: "bbcdefghi", name: "bad name", arguments: "{}" },
      { type: "function_call_output", call_id: "abcdefghi", output: "1" },
    ];
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [
        { instructions: "Hi" },
        "input",
        /^input: expected the conversation, a string or a list of input items$/,
      ],
      [{ input: "Hi", previous_response_id: "resp_1" }, "previous_response_id", /stores no responses/],
      [{ input: "Hi", prompt: { id: "pmpt_1" } }, "prompt", /stored prompt template/],
      [
        { input: [{ role: "system", content: [{ type: "input_image", image_url: image }] }, user("Hi")] },
        "input[0].content[0]",
        /hold text only/,
      ],
      [{ input: [user("Hi"), { type: "item_reference", id: "msg_1" }] }, "input[1].id", /store: false/],
      [{ input: [{ type: "web_search_call", id: "ws_1" }] }, "input[0].type", /not supported/],
      [{ input: "Hi", tools: [{ type: "code_interpreter" }] }, "tools[0].type", /hosted tools/],
      [{ input: "Hi", tools: [{ type: "foo" }] }, "tools[0].type", /"foo" tools are not supported/],
      // A type that is no string is named as such (it read "[object Object]" tools).
      [
        { input: "Hi", tools: [{ type: { a: 1 } }] },
        "tools[0].type",
        /^tools\[0\]\.type: .*expected "function"/,
      ],
      [{ input: [{ type: 5, role: "user", content: "x" }] }, "input[0].type", /Expected 'message'/],
      [
        { input: "Hi", tools: [{ type: "namespace", name: "ns", tools: [{ type: "custom", name: "c" }] }] },
        "tools[0].tools[0].type",
        /"custom" tools are not supported/,
      ],
      [{ input: "Hi", max_output_tokens: 0 }, "max_output_tokens", /max_output_tokens/],
      [{ input: "Hi", temperature: 3 }, "temperature", /temperature/],
      [
        { input: [user([{ type: "input_text", text: "a" }, { type: "input_image", file_id: "f" }])] },
        "input[0].content[1].file_id",
        /Files API/,
      ],
      [
        { input: [user([{ type: "input_image", image_url: "data:image/png;base64,AAAA" }])] },
        "input[0].content[0].image_url",
        /./,
      ],
      [
        { input: [user("Hi"), { type: "function_call_output", call_id: "abc", output: "1" }] },
        "input[1].call_id",
        /no function_call before it has this call_id/,
      ],
      [
        { input: [...mergedTurn, { type: "function_call_output", call_id: "bbcdefghi", output: "2" }] },
        "input[3].name",
        /function name "bad name"/,
      ],
      [
        {
          input: [
            user("Hi"),
            { type: "function_call", call_id: "abcdefghi", name: "w", arguments: "{}" },
            { type: "function_call_output", call_id: "zzz", output: "2" },
          ],
        },
        "input[2].call_id",
        /no function_call before it has this call_id/,
      ],
      [
        { input: [user("Hi"), { role: "assistant", content: "Yo" }] },
        "input[1]",
        /^input\[1\]: the input must end with a user message/,
      ],
      [
        { input: "Hi", tools: [{ ...tool, parameters: { type: "string" } }] },
        "tools[0].parameters",
        /^tools\[0\]\.parameters: /,
      ],
      [
        { input: "Hi", tools: [tool], tool_choice: { type: "function", name: "nope" } },
        "tool_choice.name",
        /nope/,
      ],
      [
        {
          input: "Hi",
          text: {
            format: {
              type: "json_schema",
              name: "x",
              schema: { type: "object", properties: { a: { type: "string", pattern: "(?<=a)b" } } },
            },
          },
        },
        "text.format.schema",
        /^text\.format\.schema: /,
      ],
      [
        {
          input: [user("Hi"), {
            type: "message",
            role: "assistant",
            content: [{ type: "output_text", text: 5 }],
          }],
        },
        "input[1].content[0].text",
        /input\[1\]\.content\[0\]\.text/,
      ],
    ];
    for (const [body, param, message] of cases) {
      const res = await post(`${url}/v1/responses`, { model, ...body });
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.json.error.param, param, JSON.stringify(res.json));
      assert.match(res.json.error.message, message, JSON.stringify(res.json));
    }
    const unknown = await post(`${url}/v1/responses`, { model: "gpt-5", input: "Hi" });
    assert.equal(unknown.status, 404);
    // Stored responses: there are none to retrieve, cancel or delete, and the answer says so.
    for (const [method, path] of [["GET", "resp_1"], ["DELETE", "resp_1"], ["POST", "resp_1/cancel"]]) {
      const res = await fetch(`${url}/v1/responses/${path}`, { method });
      const json = await res.json();
      assert.equal(res.status, 404);
      assert.equal(json.error.code, "response_not_found");
      assert.match(json.error.message, /no response resp_1: this server stores no responses/);
    }
  });
});

Deno.test("Responses API: an error that cannot be renamed (a client's AbortError) passes through unchanged", () => {
  const abort = new DOMException("the request was cancelled", "AbortError");
  assert.equal(renamed(abort, () => "input"), abort);
  assert.equal(abort.name, "AbortError");
});

Deno.test("Responses API: remembered output items are bounded, the least recently used given up first", () => {
  const items = new OutputItems(2, 1000);
  const text = (t: string): OutputItem => ({
    type: "message",
    role: "assistant",
    content: [{ type: "output_text", text: t }],
  });
  items.remember("a", text("a"));
  items.remember("b", text("b"));
  assert.ok(items.recall("a")); // a is now the most recently used
  items.remember("c", text("c"));
  assert.deepEqual([!!items.recall("a"), !!items.recall("b"), !!items.recall("c")], [true, false, true]);
  items.remember("d", text("x".repeat(400))); // 2 bytes a character: with c, over the byte bound
  assert.deepEqual([items.size, !!items.recall("d"), !!items.recall("c")], [1, true, false]);
  items.remember("e", text("x".repeat(600))); // larger than the bound: not kept
  assert.deepEqual([items.size, !!items.recall("e")], [1, false]);
});

Deno.test('Responses API: truncation "auto" leaves out the oldest input items that do not fit', async () => {
  await withServer(SHORT_CONTEXT, async ({ url, service }) => {
    const model = service.model.id;
    const context = service.engine!.contextLength;
    const words = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag}${i}`).join(" ");
    const input: Record<string, unknown>[] = [];
    for (let turn = 0; turn < 12; turn++) {
      input.push({ role: "user", content: `question ${turn}: ${words(30, "q")}` });
      input.push({ role: "assistant", content: `answer ${turn}: ${words(30, "a")}` });
    }
    input.push({
      role: "user",
      content: [{ type: "input_image", image_url: image }, { type: "input_text", text: "Last?" }],
    });
    const instructions = "Answer briefly.";
    const refused = await post(`${url}/v1/responses`, { model, input, instructions, max_output_tokens: 5 });
    assert.equal(refused.status, 400);
    assert.equal(refused.json.error.code, "context_length_exceeded");

    const res = await post(`${url}/v1/responses`, {
      model,
      input,
      instructions,
      max_output_tokens: 5,
      truncation: "auto",
    });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.equal(res.json.truncation, "auto");
    const used = res.json.usage.input_tokens;
    assert.ok(used <= context - 5, String(used));
    // The same as the chat API's prompt for the latest beginning that fits (instructions kept as the system).
    const chatMessage = (item: Record<string, unknown>) =>
      Array.isArray(item.content)
        ? {
          role: item.role,
          content: [{ type: "image_url", image_url: { url: image } }, { type: "text", text: "Last?" }],
        }
        : item;
    let expected: number | undefined;
    for (let from = 1; from < input.length && expected === undefined; from++) {
      const chat = await post(`${url}/v1/chat/completions`, {
        messages: [{ role: "system", content: instructions }, ...input.slice(from).map(chatMessage)],
        max_tokens: 5,
      });
      if (chat.status === 200) expected = chat.json.usage.prompt_tokens;
    }
    assert.equal(used, expected);
  });
});

Deno.test("Responses API: compact leaves a conversation's user messages and a summary, which later requests read", async () => {
  await withServer(SHORT_CONTEXT, async ({ url, service }) => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused" });
    const model = service.model.id;
    const instructions = "You are a coding agent.";
    const input: OpenAI.Responses.ResponseInput = [
      { role: "user", content: "Fix the bug in main.py" },
      { type: "function_call", call_id: "c1", name: "shell", arguments: '{"cmd": "cat main.py"}' },
      { type: "function_call_output", call_id: "c1", output: "print(1/0)" },
      { role: "assistant", content: "It divides by zero." },
      { role: "user", content: [{ type: "input_text", text: "Go on." }] },
    ];
    const sampling = { max_output_tokens: 6, temperature: 0 };
    const compacted = await client.responses.compact({ model, input, instructions, ...sampling });
    assert.equal(compacted.object, "response.compaction");
    assert.deepEqual(
      compacted.output.map((item) => item.type === "message" ? [item.role, item.content] : [item.type]),
      [
        ["user", [{ type: "input_text", text: "Fix the bug in main.py" }]],
        ["user", [{ type: "input_text", text: "Go on." }]],
        ["compaction"],
      ],
    );
    // The summary is what the model writes when asked for one after the conversation.
    const asked = await client.responses.create({
      model,
      instructions,
      input: [...input, { role: "user", content: SUMMARY_REQUEST }],
      ...sampling,
    });
    assert.equal(compacted.usage.input_tokens, asked.usage!.input_tokens);
    assert.equal(compacted.usage.output_tokens, asked.usage!.output_tokens);
    assert.ok(asked.usage!.input_tokens_details.cached_tokens > 0, "the same prompt, from the prefix cache");
    // A later request reads it as a user turn after the user messages.
    const next: OpenAI.Responses.ResponseInput = [
      ...compacted.output as OpenAI.Responses.ResponseInputItem[],
      { role: "user", content: "And now?" },
    ];
    const turns = [
      "Fix the bug in main.py",
      "Go on.",
      `A summary of the conversation so far:\n\n${asked.output_text}`,
    ];
    const count = async (input: OpenAI.Responses.ResponseInput) =>
      (await client.responses.inputTokens.count({ model, input })).input_tokens;
    assert.equal(
      await count(next),
      await count([...turns.map((content) => ({ role: "user" as const, content })), next.at(-1)!]),
    );
    assert.equal(
      (await client.responses.create({ model, input: next, max_output_tokens: 2 })).status,
      "incomplete",
    );
    // Another server's compaction item (encrypted for it) cannot be read here.
    const foreign = await post(`${url}/v1/responses`, {
      model,
      input: [{ type: "compaction", encrypted_content: "gAAAAABpZ2V0" }, { role: "user", content: "Hi" }],
    });
    assert.equal(foreign.status, 400);
    assert.equal(foreign.json.error.param, "input[0].encrypted_content");
    assert.match(foreign.json.error.message, /not made by this server/);
    // A conversation past the context is summed up from the latest items that fit.
    const long: Record<string, unknown>[] = [];
    for (let turn = 0; turn < 12; turn++) {
      long.push({ role: "user", content: `question ${turn}: ${"word ".repeat(40)}` });
      long.push({ role: "assistant", content: `answer ${turn}: ${"word ".repeat(40)}` });
    }
    const whole = await post(`${url}/v1/responses/compact`, { model, input: long, max_output_tokens: 4 });
    assert.equal(whole.status, 200, JSON.stringify(whole.json));
    assert.equal(whole.json.output.length, 13, "every user message and the compaction item");
    assert.ok(whole.json.usage.input_tokens <= service.engine!.contextLength - 4);
  });
});

Deno.test("Responses API: a developer message after an answer joins the instructions, as Pixtral's format places them", async () => {
  await withServer({}, async ({ url, service }) => {
    const model = service.model.id;
    const input = [
      { role: "user", content: "Hello there." },
      { role: "assistant", content: "Hi." },
      { role: "developer", content: "Now answer in French." },
      { role: "user", content: "How are you?" },
    ];
    const res = await post(`${url}/v1/responses`, {
      model,
      input,
      instructions: "Be brief.",
      max_output_tokens: 6,
      temperature: 0,
    });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    const chat = await post(`${url}/v1/chat/completions`, {
      messages: [
        { role: "system", content: "Be brief." },
        { role: "system", content: "Now answer in French." },
        ...input.filter((m) => m.role !== "developer"),
      ],
      max_tokens: 6,
      temperature: 0,
    });
    assert.equal(res.json.usage.input_tokens, chat.json.usage.prompt_tokens);
    assert.equal(res.json.output[0].content[0].text, chat.json.choices[0].message.content);
    // Last, after an answer: a new answer, the developer's text in an empty user turn after it.
    const last = await post(`${url}/v1/responses`, { model, input: input.slice(0, 3), max_output_tokens: 6 });
    assert.equal(last.status, 200, JSON.stringify(last.json));
    const same = await post(`${url}/v1/chat/completions`, {
      messages: [{ role: "system", content: "Now answer in French." }, ...input.slice(0, 2), {
        role: "user",
        content: "",
      }],
      max_tokens: 6,
    });
    assert.equal(last.json.usage.input_tokens, same.json.usage.prompt_tokens);
  });
});

Deno.test("Responses API: an empty answer sent back (an agent's history of it) is left out, not refused", async () => {
  await withServer({}, async ({ url, service }) => {
    const model = service.model.id;
    const empty = {
      type: "message",
      role: "assistant",
      status: "completed",
      content: [{ type: "output_text", text: "", annotations: [] }],
    };
    const [sent, without] = await Promise.all([
      post(`${url}/v1/responses`, {
        model,
        input: [{ role: "user", content: "Hi" }, empty, { role: "user", content: "Hello" }],
        max_output_tokens: 3,
        temperature: 0,
      }),
      post(`${url}/v1/chat/completions`, {
        messages: [{ role: "user", content: "Hi" }, { role: "user", content: "Hello" }],
        max_tokens: 3,
        temperature: 0,
      }),
    ]);
    assert.equal(sent.status, 200, JSON.stringify(sent.json));
    assert.equal(sent.json.usage.input_tokens, without.json.usage.prompt_tokens);
    assert.equal(sent.json.output[0].content[0].text, without.json.choices[0].message.content);
    // The chat API likewise, for content "" or null.
    for (const content of ["", null]) {
      const chat = await post(`${url}/v1/chat/completions`, {
        messages: [{ role: "user", content: "Hi" }, { role: "assistant", content }, {
          role: "user",
          content: "Hello",
        }],
        max_tokens: 3,
        temperature: 0,
      });
      assert.equal(chat.status, 200, JSON.stringify(chat.json));
      assert.equal(chat.json.usage.prompt_tokens, without.json.usage.prompt_tokens);
    }
  });
});

Deno.test("Responses API: an agent's history may open with calls; an output answers a call before it", async () => {
  await withServer({}, async ({ url, service }) => {
    const model = service.model.id;
    const tools = [{ type: "function", name: "lookup", parameters: { type: "object" } }];
    const call = { type: "function_call", call_id: "c1", name: "lookup", arguments: '{"q": "x"}' };
    const output = { type: "function_call_output", call_id: "c1", output: "42" };
    const words = Array.from({ length: 800 }, (_, i) => `w${i}`).join(" ");
    const opened = await post(`${url}/v1/responses`, {
      model,
      tools,
      input: [call, output],
      max_output_tokens: 1,
    });
    assert.equal(opened.status, 200, JSON.stringify(opened.json));
    // A cut may begin with the call too: the long question goes, the call and its output stay.
    const cut = await post(`${url}/v1/responses`, {
      model,
      tools,
      input: [{ role: "user", content: words }, call, output],
      max_output_tokens: 1,
      truncation: "auto",
    });
    assert.equal(cut.status, 200, JSON.stringify(cut.json));
    assert.equal(cut.json.usage.input_tokens, opened.json.usage.input_tokens);
    for (
      const input of [[output, { role: "user", content: "hi" }], [{ role: "user", content: "hi" }, output]]
    ) {
      const orphan = await post(`${url}/v1/responses`, { model, tools, input, instructions: "Be brief." });
      assert.equal(orphan.status, 400);
      assert.match(orphan.json.error.message, /no function_call before it has this call_id/);
      assert.match(orphan.json.error.param, /^input\[\d\]\.call_id$/);
    }
  });
});

Deno.test("Responses API: Codex's tools: namespaces of functions, web and tool search left out, images that a function returns", async () => {
  await withServer({}, async ({ url, service }) => {
    const model = service.model.id;
    const object = {
      type: "object",
      properties: { id: { enum: [1, 2] } },
      required: ["id"],
      additionalProperties: false,
    };
    const tools = [
      { type: "web_search", external_web_access: false },
      {
        type: "namespace",
        name: "multi_agent_v1",
        description: "Agents.",
        tools: [
          { type: "function", name: "close_agent", parameters: object },
          { type: "function", name: "spawn_agent", parameters: object },
        ],
      },
      // The search of the tools Codex holds back, which it runs itself.
      { type: "tool_search", execution: "client", parameters: { type: "object", properties: {} } },
    ];
    const called = await post(`${url}/v1/responses`, {
      model,
      input: "Close agent 1.",
      tools,
      tool_choice: "required",
      max_output_tokens: 200,
      reasoning: { effort: "low", summary: "auto" },
    });
    assert.equal(called.status, 200, JSON.stringify(called.json));
    const call = called.json.output.find((item: { type: string }) => item.type === "function_call");
    assert.ok(["close_agent", "spawn_agent"].includes(call.name), JSON.stringify(call));
    assert.equal(call.namespace, "multi_agent_v1");
    assert.deepEqual(called.json.reasoning, { effort: "low", summary: "auto" });
    assert.deepEqual(called.json.tools[0], { type: "web_search" });
    assert.deepEqual(called.json.tools[2], { type: "tool_search" });
    assert.equal(called.json.tools[1].tools[1].name, "spawn_agent");
    // The call sent back with its namespace, and an image a function returned (a user turn after the results).
    const back = [
      { role: "user", content: "Close agent 1." },
      {
        type: "function_call",
        call_id: call.call_id,
        name: call.name,
        namespace: call.namespace,
        arguments: call.arguments,
      },
      {
        type: "function_call_output",
        call_id: call.call_id,
        output: [{ type: "input_text", text: "closed" }, { type: "input_image", image_url: image }],
      },
    ];
    const answered = await post(`${url}/v1/responses`, { model, input: back, tools, max_output_tokens: 2 });
    assert.equal(answered.status, 200, JSON.stringify(answered.json));
    const chat = await post(`${url}/v1/chat/completions`, {
      messages: [
        { role: "user", content: "Close agent 1." },
        {
          role: "assistant",
          content: null,
          tool_calls: [{
            id: call.call_id,
            type: "function",
            function: { name: call.name, arguments: call.arguments },
          }],
        },
        { role: "tool", tool_call_id: call.call_id, content: "closed" },
        { role: "user", content: [{ type: "image_url", image_url: { url: image } }] },
      ],
      tools: tools[1].tools!.map(({ name, parameters }) => ({
        type: "function",
        function: { name, parameters, strict: true },
      })),
      max_tokens: 2,
    });
    assert.equal(chat.status, 200, JSON.stringify(chat.json));
    assert.equal(answered.json.usage.input_tokens, chat.json.usage.prompt_tokens);
  });
});

Deno.test("Responses API: a namespace's function named as another tool is known to the model as namespace__name", () => {
  const { callName, flatName } = flatTools({
    input: "Hi",
    tools: [
      { type: "function", name: "f" },
      {
        type: "namespace",
        name: "ns",
        tools: [{ type: "function", name: "f" }, { type: "function", name: "g" }],
      },
    ],
  } as ResponsesRequest);
  assert.equal(flatName("f"), "f");
  assert.equal(flatName("f", "ns"), "ns__f");
  assert.equal(flatName("g", "ns"), "g");
  assert.deepEqual(callName("ns__f"), { name: "f", namespace: "ns" });
  assert.deepEqual(callName("g"), { name: "g", namespace: "ns" });
  assert.deepEqual(callName("f"), { name: "f" });
});

/**
 * A tool as Codex's apply_patch, with a grammar no pattern writes (it refers to itself): the model is given it
 * to follow, and its input is free.
 */
const APPLY_PATCH = {
  type: "custom",
  name: "apply_patch",
  description: "Use the `apply_patch` tool to edit files.",
  format: {
    type: "grammar",
    syntax: "lark",
    definition:
      'start: "*** Begin Patch" LF lines\nlines: "+" /.*/ LF lines | "*** End Patch"\n%import common.LF',
  },
} as const;

Deno.test("Responses API: custom tools are called as functions of one string, their input streamed as written", async () => {
  await withServer({}, async ({ url, service }) => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused" });
    const model = service.model.id;
    const request = {
      model,
      input: "Add a README.",
      tools: [APPLY_PATCH],
      tool_choice: { type: "custom", name: "apply_patch" },
      temperature: 1,
      max_output_tokens: 60,
      seed: 5,
    } as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming;
    const whole = await client.responses.create(request);
    assert.equal(whole.output.length, 1, JSON.stringify(whole.output));
    const call = whole.output[0] as OpenAI.Responses.ResponseCustomToolCall & { status: string };
    assert.equal(call.type, "custom_tool_call");
    assert.equal(call.name, "apply_patch");
    assert.equal(typeof call.input, "string");
    // Cut at max_output_tokens: the call as far as it went.
    assert.equal(whole.status, "incomplete");
    assert.equal(call.status, "incomplete");
    assert.deepEqual(whole.tools, [APPLY_PATCH]);
    // The model calls a function of one string: the chat API's call of it has that string as `input`.
    const fn = {
      type: "function",
      function: {
        name: "apply_patch",
        description: `${APPLY_PATCH.description}\n\nThe input is text in this format (lark grammar):\n` +
          APPLY_PATCH.format.definition,
        parameters: CUSTOM_INPUT,
        strict: true,
      },
    };
    const chat = await post(`${url}/v1/chat/completions`, {
      model,
      messages: [{ role: "user", content: "Add a README." }],
      tools: [fn],
      tool_choice: { type: "function", function: { name: "apply_patch" } },
      temperature: 1,
      max_tokens: 60,
      seed: 5,
    });
    const args = chat.json.choices[0].message.tool_calls[0].function.arguments;
    assert.equal(call.input, customInputSoFar(args));
    assert.equal(whole.usage?.input_tokens, chat.json.usage.prompt_tokens);

    // Streamed, the input comes as it is written: its deltas add up to the input of the item that ends it.
    const stream = client.responses.stream(
      request as unknown as OpenAI.Responses.ResponseCreateParamsStreaming,
    );
    let deltas = "", done: string | undefined;
    for await (const event of stream) {
      if (event.type === "response.custom_tool_call_input.delta") deltas += event.delta;
      if (event.type === "response.custom_tool_call_input.done") done = event.input;
    }
    const final = await stream.finalResponse();
    assert.equal(deltas, call.input);
    assert.equal(done, call.input);
    assert.equal((final.output[0] as { input: string }).input, call.input);

    // The call and its output sent back: the prompt is the chat API's for the same conversation.
    const back = await client.responses.create({
      model,
      input: [
        { role: "user", content: "Add a README." },
        { type: "custom_tool_call", call_id: call.call_id, name: "apply_patch", input: "*** Begin Patch\n" },
        { type: "custom_tool_call_output", call_id: call.call_id, output: "Done!" },
      ],
      tools: [APPLY_PATCH],
      max_output_tokens: 2,
    } as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming);
    const counted = await post(`${url}/tokenize`, {
      messages: [
        { role: "user", content: "Add a README." },
        {
          role: "assistant",
          content: null,
          tool_calls: [{
            id: call.call_id,
            type: "function",
            function: { name: "apply_patch", arguments: JSON.stringify({ input: "*** Begin Patch\n" }) },
          }],
        },
        { role: "tool", tool_call_id: call.call_id, content: "Done!" },
      ],
      tools: [fn],
    });
    assert.equal(back.usage?.input_tokens, counted.json.count);
    const orphan = await post(`${url}/v1/responses`, {
      model,
      input: [{ role: "user", content: "Hi" }, {
        type: "custom_tool_call_output",
        call_id: "x",
        output: "1",
      }],
    });
    assert.equal(orphan.status, 400);
    assert.match(orphan.json.error.message, /no custom_tool_call before it has this call_id/);
  });
});

Deno.test("Responses API: a custom tool's input is held to its grammar, Lark's or a regular expression", async () => {
  await withServer({}, async ({ url, service }) => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused" });
    const lark = 'start: op " " INT ("," INT) ~ 0..2\nop: "add" | "sub"\n%import common.INT';
    const grammars = [
      { syntax: "lark", definition: lark, whole: /^(add|sub) [0-9]+(,[0-9]+){0,2}$/ },
      { syntax: "regex", definition: '^(yes|no|"maybe")\\\\?$', whole: /^(yes|no|"maybe")\\?$/ },
    ];
    for (const { syntax, definition, whole } of grammars) {
      const tool = { type: "custom", name: "calc", format: { type: "grammar", syntax, definition } };
      let completed = 0;
      for (const seed of [1, 2, 3, 4]) {
        const request = {
          model: service.model.id,
          input: "Compute.",
          tools: [tool],
          tool_choice: { type: "custom", name: "calc" },
          temperature: 1,
          max_output_tokens: 200,
          seed,
        } as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming;
        const answer = await client.responses.create(request);
        const call = answer.output[0] as OpenAI.Responses.ResponseCustomToolCall;
        assert.equal(call.type, "custom_tool_call");
        if (answer.status !== "completed") continue;
        completed++;
        assert.match(call.input, whole);
      }
      assert.ok(completed >= 2, `${syntax}: ${completed} of 4 calls completed`);
    }
    // A grammar Lark would not read is the client's error.
    const refused = await post(`${url}/v1/responses`, {
      model: service.model.id,
      input: "Hi",
      tools: [{
        type: "custom",
        name: "calc",
        format: { type: "grammar", syntax: "lark", definition: "start: op" },
      }],
    });
    assert.equal(refused.status, 400);
    assert.equal(refused.json.error.param, "tools[0].format.definition");
    assert.match(refused.json.error.message, /^tools\[0\]\.format\.definition: .*op, which is not defined/);
  });
});

Deno.test("Responses API: a custom tool's input is read from its arguments as far as they go", () => {
  assert.equal(customInputSoFar(""), "");
  assert.equal(customInputSoFar('{"inp'), "");
  assert.equal(customInputSoFar('{"input": "a\\nb'), "a\nb");
  assert.equal(customInputSoFar('{"input": "a\\'), "a");
  assert.equal(customInputSoFar('{"input": "a\\u00'), "a");
  assert.equal(customInputSoFar('{"input": "\\u00e9\\"\\\\'), 'é"\\');
  // Half a surrogate pair waits for the other half.
  assert.equal(customInputSoFar('{"input": "x\\ud83d'), "x");
  assert.equal(customInputSoFar('{"input": "x\\ud83d\\ude00'), "x😀");
  assert.equal(customInputSoFar('{"input": "done", "x'), "done");
  assert.equal(customInput('{"input": "a\\tb"}'), "a\tb");
  // Read a character at a time, as a stream writes it: the input only grows, and ends as JSON reads it.
  const args = '{"input": "a\\nb\\u00e9\\ud83d\\ude00\\"c"}';
  const reader = new CustomInputReader();
  let last = "";
  for (const c of args) {
    const now = reader.push(c);
    assert.ok(now.startsWith(last), JSON.stringify([last, now]));
    last = now;
  }
  assert.equal(last, JSON.parse(args).input);
  assert.equal(customInput('{"input": "cut'), "cut");
});

Deno.test("Responses API: a custom tool's parameters are its input's, whatever else it carries", () => {
  const request = {
    input: "Hi",
    tools: [{ type: "custom", name: "apply_patch", parameters: { type: "object", properties: { p: {} } } }],
  };
  const { chat, source } = toChat(
    parseResponsesRequest(request, new OutputItems()).request,
    JSON.stringify(request),
  );
  assert.deepEqual(chat.tools?.[0].function.parameters, CUSTOM_INPUT);
  assert.equal(pyAt(source, "tools", 0, "function", "parameters"), undefined);
});
