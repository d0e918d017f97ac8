/** Every kind of bad request gets its HTTP status and an OpenAI-shaped error that says what is wrong. */
import assert from "node:assert/strict";
import { apiKeys } from "../cli/serve.ts";
import { SAFE_PROMPT } from "../functions/chat/prepare.ts";
import { parseChatRequest, RequestError } from "../functions/schema/chat.ts";
import { createApp } from "../functions/app.ts";
import { loadTokenizer } from "../runtime/tokenizer/mod.ts";
import { dataUrl, post, serverConfig, withServer } from "./api_helpers.ts";
import { fixture } from "./helpers.ts";
import { countingDecodes, engineLessService, ScriptedEngine } from "./service_helpers.ts";

const image = await dataUrl("golden/images/chat_a_32x48.png");
const user = (content: unknown) => ({ messages: [{ role: "user", content }], max_tokens: 2 });

function expectError(
  res: {
    status: number;
    json: { error: { message: string; type: string; param: string | null; code: string | null } };
  },
  status: number,
  message: RegExp,
  param?: string,
) {
  assert.equal(res.status, status, JSON.stringify(res.json));
  assert.match(res.json.error.message, message);
  assert.equal(typeof res.json.error.type, "string");
  if (param !== undefined) assert.equal(res.json.error.param, param);
}

Deno.test("bad requests: JSON, types, model, images, body size, context", async () => {
  const config = serverConfig({ maxBodyBytes: 200_000 });
  config.model.ctx = 512;
  config.images.maxImages = 2;
  config.images.maxBytes = 100_000;
  await withServer(config, async ({ url }) => {
    const chat = `${url}/v1/chat/completions`;
    expectError(await post(chat, "{not json"), 400, /not valid JSON/);
    expectError(await post(chat, "[1, 2]"), 400, /JSON object/);
    expectError(await post(chat, { messages: "hi" }), 400, /messages/, "messages");
    expectError(
      await post(chat, { ...user("hi"), temperature: "hot" }),
      400,
      /expected number/,
      "temperature",
    );
    expectError(
      await post(chat, user([{ type: "text", text: 3 }])),
      400,
      /expected string/,
      "messages[0].content[0].text",
    );
    // OpenAI's deprecated function calling would be answered in text: refused, pointing at tools.
    expectError(
      await post(chat, { ...user("hi"), functions: [{ name: "f" }] }),
      400,
      /send tools/,
      "functions",
    );
    expectError(
      await post(chat, { ...user("hi"), function_call: "auto" }),
      400,
      /tool_choice/,
      "function_call",
    );
    // Function calling: conversations Pixtral's format cannot hold are refused, naming the message.
    const tools = [{ type: "function", function: { name: "f", parameters: { type: "object" } } }];
    expectError(
      await post(chat, { messages: [{ role: "tool", content: "x", tool_call_id: "abc123DEF" }] }),
      400,
      /one message must be a user or system/,
      "messages[0]",
    );
    const call = { id: "c1", type: "function", function: { name: "f", arguments: "{}" } };
    const asked = [{ role: "user", content: "a" }, { role: "assistant", content: null, tool_calls: [call] }];
    expectError(
      await post(chat, { messages: [...asked, { role: "user", content: "b" }] }),
      400,
      /do not answer .* calls one for one/,
      "messages[2]",
    );
    expectError(
      await post(chat, { messages: [...asked, { role: "tool", content: "r", tool_call_id: "c2" }] }),
      400,
      /names no call/,
      "messages[2].tool_call_id",
    );
    const badName = { ...call, id: "c2", function: { name: "bad name", arguments: "{}" } };
    expectError(
      await post(chat, {
        messages: [asked[0], { role: "assistant", content: null, tool_calls: [call, badName] }, {
          role: "user",
          content: "b",
        }],
      }),
      400,
      /function name "bad name"/,
      "messages[1].tool_calls[1].function.name",
    );
    expectError(
      await post(chat, { messages: [...asked, { role: "tool", content: "r" }] }),
      400,
      /tool call id is required/,
      "messages[2].tool_call_id",
    );
    // Counted in the request's own messages, whatever the server puts first.
    expectError(
      await post(chat, { messages: [...asked, { role: "user", content: "b" }], safe_prompt: true }),
      400,
      /do not answer .* calls one for one/,
      "messages[2]",
    );
    expectError(
      await post(chat, { messages: [...asked, { role: "tool", content: null, tool_call_id: "c1" }] }),
      400,
      /./,
      "messages[2].content",
    );
    // Too deep to be a schema anyone means (and deeper than a recursive reader should go).
    let deep: unknown = {};
    for (let i = 0; i < 300; i++) deep = { a: deep };
    expectError(
      await post(`${url}/tokenize`, {
        ...user("hi"),
        tools: [{
          type: "function",
          function: { name: "f", parameters: { type: "object", properties: deep } },
        }],
      }),
      400,
      /deeper than/,
      "tools[0].function.parameters",
    );
    // Many tools that pass alone but not together: "auto" answers unconstrained, a forced call is refused.
    const many = Array.from({ length: 100 }, (_, i) => ({
      type: "function",
      function: {
        name: `f${i}`,
        parameters: {
          type: "object",
          properties: Object.fromEntries(
            Array.from({ length: 30 }, (_, j) => [`property_${j}`, { type: "string" }]),
          ),
        },
      },
    }));
    assert.equal((await post(`${url}/tokenize`, { ...user("hi"), tools: many })).status, 200);
    expectError(
      await post(`${url}/tokenize`, { ...user("hi"), tools: many, tool_choice: "required" }),
      400,
      /larger than/,
      "tools",
    );
    expectError(
      await post(chat, { messages: [asked[0], { role: "tool", content: "r", tool_call_id: "c1" }] }),
      400,
      /a tool message cannot follow a user message/,
      "messages[1]",
    );
    // A system message after an answer goes first with the others, as OpenAI takes it (mistral_common refuses it
    // there); after the last answer, an empty user turn takes it. Errors name messages where the request has them.
    const late = [
      { role: "user", content: "hi" },
      { role: "assistant", content: "yo" },
      { role: "system", content: "Be brief." },
      { role: "user", content: "again" },
    ];
    const [lifted, counted] = await Promise.all([
      post(chat, { messages: late, max_tokens: 1 }),
      post(`${url}/tokenize`, { messages: [late[2], late[0], late[1], late[3]] }),
    ]);
    assert.equal(lifted.status, 200, JSON.stringify(lifted.json));
    assert.equal(lifted.json.usage.prompt_tokens, counted.json.count);
    assert.equal((await post(`${url}/tokenize`, { messages: late })).json.count, counted.json.count);
    const ending = await post(chat, { messages: late.slice(0, 3), max_tokens: 1 });
    assert.equal(ending.status, 200, JSON.stringify(ending.json));
    const badImage = {
      role: "user",
      content: [{ type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } }],
    };
    const misplaced = await post(chat, { messages: [badImage, ...late.slice(1)], max_tokens: 1 });
    assert.equal(misplaced.status, 400, JSON.stringify(misplaced.json));
    assert.equal(misplaced.json.error.param, "messages[0].content[0].image_url");
    expectError(
      await post(chat, { ...user("hi"), tools: [...tools, ...tools] }),
      400,
      /two tools are named "f"/,
      "tools[1]",
    );
    expectError(
      await post(chat, { ...user("hi"), tools: [{ type: "function", function: { name: "f g" } }] }),
      400,
      /function name/,
      "tools[0].function.name",
    );
    expectError(
      await post(chat, { ...user("hi"), tools, tool_choice: { type: "function", function: { name: "g" } } }),
      400,
      /"g", which is not among the tools/,
      "tool_choice.function.name",
    );
    expectError(
      await post(chat, { ...user("hi"), tool_choice: "required" }),
      400,
      /has no tools/,
      "tool_choice",
    );
    // A forced call is the answer, as at OpenAI (agents send their output type with every turn): the format is
    // for answers in text after it.
    const none = { type: "object", properties: {}, additionalProperties: false };
    const one = [{ type: "function", function: { name: "f", parameters: none } }];
    for (const format of [{ response_format: { type: "json_object" } }, { grammar: 'root ::= "a"' }]) {
      const called = await post(chat, {
        ...user("hi"),
        ...format,
        tools: one,
        tool_choice: "required",
        max_tokens: 60,
      });
      assert.equal(called.status, 200, JSON.stringify(called.json));
      assert.equal(called.json.choices[0].message.tool_calls[0].function.name, "f");
    }
    expectError(
      await post(chat, {
        ...user("hi"),
        tools: [{ type: "function", function: { name: "f", parameters: { type: "string" } } }],
      }),
      400,
      /arguments of a call are a JSON object/,
      "tools[0].function.parameters",
    );
    // Found by an adversarial helper: schemas without a type that allow no object came back as text.
    for (
      const parameters of [{ const: "hello" }, { enum: [1, "a"] }, {
        oneOf: [{ type: "string" }, { type: "null" }],
      }]
    ) {
      expectError(
        await post(chat, {
          ...user("hi"),
          tools: [{ type: "function", function: { name: "f", parameters } }],
        }),
        400,
        /arguments of a call are a JSON object; the schema allows none/,
        "tools[0].function.parameters",
      );
    }
    // A strict function whose parameters the grammar cannot enforce cannot be forced.
    const strictNot = [{
      type: "function",
      function: { name: "f", strict: true, parameters: { type: "object", properties: { a: { not: {} } } } },
    }];
    expectError(
      await post(chat, { ...user("hi"), tools: strictNot, tool_choice: "required" }),
      400,
      /"not" is not supported.*strict function/,
      "tools[0].function.parameters",
    );
    // Tools too large together for one call grammar, with response_format under auto: the text would follow the
    // format from its first token and no call could be made.
    const large = Array.from({ length: 20 }, (_, i) => ({
      type: "function",
      function: {
        name: `f${i}`,
        parameters: {
          type: "object",
          properties: { a: { enum: Array.from({ length: 400 }, (_, j) => `value-${i}-${j}`) } },
        },
      },
    }));
    expectError(
      await post(chat, { ...user("hi"), tools: large, response_format: { type: "json_object" } }),
      400,
      /too large together/,
      "response_format",
    );
    // Fields understood but not honoured are refused, never silently dropped.
    expectError(
      await post(chat, { ...user("hi"), response_format: { type: "yaml" } }),
      400,
      /json_schema/,
      "response_format.type",
    );
    // A schema keyword the constrained decoding would ignore is refused, naming it and where it is.
    expectError(
      await post(chat, {
        ...user("hi"),
        response_format: {
          type: "json_schema",
          json_schema: {
            name: "x",
            schema: { type: "object", properties: { a: { not: { type: "null" } } } },
          },
        },
      }),
      400,
      /"not" is not supported.*\/properties\/a/,
      "response_format.json_schema.schema",
    );
    // logit_bias: token ids as keys, values from -100 to 100.
    expectError(
      await post(chat, { ...user("hi"), logit_bias: { abc: 10 } }),
      400,
      /not a token id/,
      "logit_bias.abc",
    );
    expectError(
      await post(chat, { ...user("hi"), logit_bias: { "999999999": 10 } }),
      400,
      /not a token id/,
      "logit_bias.999999999",
    );
    expectError(await post(chat, { ...user("hi"), logit_bias: { "5": 101 } }), 400, /100/, "logit_bias.5");
    expectError(await post(chat, { ...user("hi"), top_logprobs: 2 }), 400, /logprobs: true/, "top_logprobs");
    // A known path asked with another method: 405 with the methods it takes.
    const wrongMethod = await fetch(chat);
    expectError({ status: wrongMethod.status, json: await wrongMethod.json() }, 405, /takes POST/);
    assert.equal(wrongMethod.headers.get("allow"), "POST");
    const modelsPost = await fetch(`${url}/v1/models/x/y`, { method: "POST" });
    expectError({ status: modelsPost.status, json: await modelsPost.json() }, 405, /takes GET/);
    assert.equal(modelsPost.headers.get("allow"), "GET, HEAD");
    // The tools are part of the prompt (as mistral_common puts them), whatever tool_choice says; a forced call
    // adds [TOOL_CALLS], which begins the answer.
    const plain = await post(`${url}/tokenize`, user("hi"));
    const noneChosen = await post(`${url}/tokenize`, { ...user("hi"), tools, tool_choice: "none" });
    const auto = await post(`${url}/tokenize`, { ...user("hi"), tools });
    const forced = await post(`${url}/tokenize`, { ...user("hi"), tools, tool_choice: "required" });
    assert.equal(noneChosen.status, 200);
    assert.deepEqual(noneChosen.json, auto.json);
    assert.deepEqual(auto.json.tokens.slice(0, 2), [1, 5]); // <s> [AVAILABLE_TOOLS]
    assert.ok(auto.json.count > plain.json.count + 10);
    assert.deepEqual(forced.json.tokens, [...auto.json.tokens, 9]);
    expectError(await post(chat, { ...user("hi"), model: "gpt-4o" }), 404, /"gpt-4o" does not exist/);
    // The name Ollama's API lists (`id:latest`) is the model on every route, as at Ollama.
    const listed = (await (await fetch(`${url}/api/tags`)).json()).models[0].name;
    assert.match(listed, /:latest$/);
    assert.equal((await post(chat, { ...user("hi"), model: listed })).status, 200);
    expectError(await post(chat, { ...user("hi"), model: `${listed}:latest` }), 404, /does not exist/);
    const three = [1, 2, 3].map(() => ({ type: "image_url", image_url: { url: image } }));
    expectError(
      await post(chat, user(three)),
      400,
      /3 images .* at most 2/,
      "messages[0].content[2].image_url",
    );
    const corrupt = `data:image/png;base64,${new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]).toBase64()}`;
    expectError(
      await post(chat, user([{ type: "image_url", image_url: corrupt }])),
      400,
      /./,
      "messages[0].content[0].image_url",
    );
    const notImage = `data:image/png;base64,${new TextEncoder().encode("hello world").toBase64()}`;
    expectError(await post(chat, user([{ type: "image_url", image_url: notImage }])), 400, /./);
    expectError(
      await post(chat, user([{ type: "image_url", image_url: "http://10.1.2.3/a.png" }])),
      400,
      /private/,
    );
    expectError(
      await post(chat, user([{ type: "image_url", image_url: "file:///etc/passwd" }])),
      400,
      /http\(s\) or data/,
    );
    // Too many bytes is too large an image, as too many pixels is.
    const heavy = `data:image/png;base64,${new Uint8Array(120_000).toBase64()}`;
    const tooHeavy = await post(chat, user([{ type: "image_url", image_url: heavy }]));
    expectError(tooHeavy, 413, /larger than the limit of 100000 bytes/, "messages[0].content[0].image_url");
    assert.equal(tooHeavy.json.error.code, "image_too_large");
    const big = await post(chat, user("x".repeat(300_000)));
    expectError(big, 413, /larger than 200000 bytes/);
    expectError(await post(chat, user("word ".repeat(600))), 400, /context is 512 tokens/, "messages");
    // More asked than the context leaves (agents ask 32000 with every request) is what it leaves, as llama.cpp's
    // server and Ollama answer: the answer may run to the context's end.
    const count = async (words: number) => {
      const counted = await post(`${url}/tokenize`, { messages: user("word ".repeat(words)).messages });
      assert.equal(counted.status, 200, JSON.stringify(counted.json));
      return counted.json.count as number;
    };
    const [at300, at400] = [await count(300), await count(400)];
    const words = 300 + Math.floor((506 - at300) * 100 / (at400 - at300));
    const long = await post(chat, { ...user("word ".repeat(words)), max_tokens: 32000 });
    assert.equal(long.status, 200, JSON.stringify(long.json));
    assert.ok(long.json.usage.prompt_tokens >= 500, JSON.stringify(long.json.usage));
    assert.ok(long.json.usage.total_tokens <= 512, JSON.stringify(long.json.usage));
    if (long.json.usage.total_tokens < 512) assert.equal(long.json.choices[0].finish_reason, "stop");
    // A text far beyond the context is refused from its start's estimate, before it is tokenized whole (60 MB of
    // random letters held the server 12 s): in chat and completions.
    const letters = Array.from({ length: 150_000 }, (_, i) => String.fromCharCode(97 + (i * 7919) % 26)).join(
      "",
    );
    expectError(
      await post(chat, user(letters)),
      400,
      /about \d+ tokens or more; this server's context is 512/,
      "messages",
    );
    expectError(
      await post(`${url}/v1/completions`, { prompt: letters, max_tokens: 1 }),
      400,
      /about \d+ tokens/,
      "prompt",
    );
    // /tokenize counts beyond the context (up to 2^20 tokens).
    assert.equal((await post(`${url}/tokenize`, { prompt: letters })).status, 200);
    expectError(await post(`${url}/detokenize`, { tokens: [1, 999999] }), 400, /999999/, "tokens[1]");
    // A client that drops the connection halfway through its body is a cancellation (499), not a server error.
    const requests = async (status: number) =>
      Number(
        (await (await fetch(`${url}/metrics`)).text())
          .match(
            new RegExp(`pixtral_requests_total\\{route="/v1/chat/completions",status="${status}"\\} (\\d+)`),
          )?.[1] ?? 0,
      );
    const [errorsBefore, cancelledBefore] = [await requests(500), await requests(499)];
    const { port } = new URL(url);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
    await conn.write(
      new TextEncoder().encode(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
          'Content-Length: 1000\r\n\r\n{"messages": [',
      ),
    );
    await new Promise((r) => setTimeout(r, 200));
    conn.close();
    for (let i = 0; i < 50 && await requests(499) === cancelledBefore; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(await requests(499), cancelledBefore + 1);
    assert.equal(await requests(500), errorsBefore);
    const missing = await fetch(`${url}/v1/nothing`);
    expectError({ status: missing.status, json: await missing.json() }, 404, /no route/);
  });
});

Deno.test("API keys: 401 without or with a wrong key, 200 with it; /, /health and /metrics stay open", async () => {
  await withServer({ apiKeys: ["sk-one", "sk-two"] }, async ({ url }) => {
    const chat = `${url}/v1/chat/completions`;
    expectError(await post(chat, user("hi")), 401, /Missing API key/);
    expectError(await post(chat, user("hi"), { authorization: "Bearer sk-three" }), 401, /Incorrect API key/);
    assert.equal((await post(chat, user("hi"), { authorization: "Bearer sk-two" })).status, 200);
    const models = await fetch(`${url}/v1/models`);
    assert.equal(models.status, 401);
    await models.body?.cancel();
    for (const path of ["/", "/health", "/metrics"]) {
      const open = await fetch(`${url}${path}`);
      assert.equal(open.status, 200, path);
      await open.body?.cancel();
    }
    // Ollama's CLI checks a server with HEAD /.
    assert.equal((await fetch(url, { method: "HEAD" })).status, 200);
    const tags = await fetch(`${url}/api/tags`);
    assert.equal(tags.status, 401);
    assert.match((await tags.json()).error, /Missing API key/);
  });
});

Deno.test("API keys come from flags, PIXTRAL_API_KEY and a file (comments skipped); a source without one is refused", async () => {
  const file = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(file, "# the team's keys\n\nsk-file \n  # old: sk-gone\n");
    assert.deepEqual(await apiKeys({ "api-key": ["sk-flag"], "api-key-file": file }, " sk-a, sk-b "), [
      "sk-flag",
      "sk-a",
      "sk-b",
      "sk-file",
    ]);
    assert.deepEqual(await apiKeys({}, undefined), []);
    await assert.rejects(apiKeys({}, ""), /PIXTRAL_API_KEY holds no API key/);
    // Comments are the file's: a key given otherwise is a key.
    assert.deepEqual(await apiKeys({ "api-key": ["#sk-hash"] }, undefined), ["#sk-hash"]);
    await Deno.writeTextFile(file, "\n# none yet\n");
    await assert.rejects(apiKeys({ "api-key-file": file }), /holds no API key/);
    await assert.rejects(apiKeys({}, " , "), /PIXTRAL_API_KEY holds no API key/);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("a model still loading answers 503 with Retry-After; one that failed to load, without", async () => {
  await withServer({}, async ({ url, service }) => {
    const engine = service.engine;
    try {
      service.engine = undefined;
      const loading = await post(`${url}/v1/chat/completions`, user("hi"));
      expectError(loading, 503, /the model is loading/);
      assert.equal(loading.headers.get("retry-after"), "5");
      service.failure = "out of memory";
      const failed = await post(`${url}/v1/chat/completions`, user("hi"));
      expectError(failed, 503, /the model failed to load: out of memory/);
      assert.equal(failed.headers.get("retry-after"), null);
    } finally {
      service.engine = engine;
      service.failure = undefined;
    }
  });
});

Deno.test("--max-tokens: a chat answer's length when its request gives none", async () => {
  await withServer({ maxTokens: 5 }, async ({ url }) => {
    const unasked = await post(`${url}/v1/chat/completions`, {
      messages: [{ role: "user", content: "hi" }],
      ignore_eos: true,
    });
    assert.equal(unasked.json.usage.completion_tokens, 5, JSON.stringify(unasked.json));
    assert.equal(unasked.json.choices[0].finish_reason, "length");
    // min_tokens asks for more than the default: the default gives way (a review's finding).
    const least = await post(`${url}/v1/chat/completions`, {
      messages: [{ role: "user", content: "hi" }],
      min_tokens: 9,
    });
    assert.equal(least.status, 200, JSON.stringify(least.json));
    assert.equal(least.json.usage.completion_tokens, 9);
    const asked = await post(`${url}/v1/chat/completions`, {
      ...user("hi"),
      ignore_eos: true,
      max_tokens: 7,
    });
    assert.equal(asked.json.usage.completion_tokens, 7);
  });
});

Deno.test("health, models, tokenize, detokenize and metrics answer in their documented shapes", async () => {
  await withServer({}, async ({ url, service }) => {
    const health = await (await fetch(`${url}/health`)).json();
    assert.deepEqual(health, { status: "ok", model: service.model.id });
    const models = await (await fetch(`${url}/v1/models`)).json();
    assert.equal(models.object, "list");
    assert.equal(models.data[0].id, service.model.id);
    assert.equal(models.data[0].max_context_length, 2048);
    assert.equal(models.data[0].max_model_len, 2048);
    // The card does not tell clients where the model's files are on the host.
    assert.equal(models.data[0].description, "Pixtral (params.json)");
    // Mistral's clients send tools only to models whose card says they take them.
    assert.deepEqual(models.data[0].capabilities, {
      completion_chat: true,
      completion_fim: false,
      function_calling: true,
      fine_tuning: false,
      vision: true,
    });
    const tokens = await post(`${url}/tokenize`, {
      prompt: "Hello, how are you?",
      add_special_tokens: false,
    });
    assert.deepEqual(tokens.json.tokens, [...service.tokenizer.encode("Hello, how are you?")]);
    assert.equal(tokens.json.count, tokens.json.tokens.length);
    const text = await post(`${url}/detokenize`, { tokens: tokens.json.tokens });
    assert.equal(text.json.prompt, "Hello, how are you?");
    // Every answer names its request, those made as Responses of their own (a held JSON answer) too.
    const chat = await post(`${url}/v1/chat/completions`, user("hi"));
    assert.match(chat.headers.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/);
    await (await fetch(`${url}/no/such/route`)).body?.cancel();
    const metrics = await (await fetch(`${url}/metrics`)).text();
    for (
      const name of [
        "pixtral_requests_total",
        "pixtral_prompt_tokens_total",
        "pixtral_generation_tokens_total",
        "pixtral_time_to_first_token_seconds_bucket",
        "pixtral_inter_token_latency_seconds_bucket",
        "pixtral_queue_depth",
        "pixtral_running_sequences",
        "pixtral_kv_cache_usage_ratio",
      ]
    ) {
      assert.match(metrics, new RegExp(`^${name}`, "m"), name);
    }
    // The pool's blocks as the engine counts them (idle: none held), and the process's memory.
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(metrics)?.[1]);
    const { kvBlocks } = service.engine!.stats();
    assert.ok(kvBlocks > 0);
    assert.equal(value("pixtral_kv_cache_blocks"), kvBlocks);
    assert.equal(value("pixtral_kv_cache_blocks_used"), 0);
    assert.ok(value("process_resident_memory_bytes") > value("process_heap_bytes"));
    assert.ok(value("process_heap_bytes") > 1e6);
    // By route: the API's requests apart from scrapes; a path no route has is "unmatched".
    assert.match(metrics, /^pixtral_requests_total\{route="\/v1\/chat\/completions",status="200"\} [1-9]/m);
    assert.match(metrics, /^pixtral_requests_total\{route="\/tokenize",status="200"\} [1-9]/m);
    assert.match(metrics, /^pixtral_requests_total\{route="unmatched",status="404"\} 1$/m);
  });
});

Deno.test("a WASM trap on the server's own thread stops the server (a supervisor starts it again)", async () => {
  await withServer({}, async ({ url, service, failed }) => {
    service.tokenizer.encode = () => {
      throw new WebAssembly.RuntimeError("unreachable");
    };
    const answer = await post(`${url}/tokenize`, { prompt: "hi" });
    assert.equal(answer.status, 500);
    assert.match(await failed, /the WASM module trapped \(unreachable\)/);
  });
});

Deno.test("token counters count as tokens come: a request cut short counts what it computed", async () => {
  await withServer({}, async ({ url }) => {
    const counter = async (name: string) => {
      const text = await (await fetch(`${url}/metrics`)).text();
      return Number(new RegExp(`^${name} (\\d+)`, "m").exec(text)?.[1] ?? 0);
    };
    const done = await post(`${url}/v1/chat/completions`, { ...user("hi"), max_tokens: 3, ignore_eos: true });
    assert.equal(await counter("pixtral_generation_tokens_total"), done.json.usage.completion_tokens);
    assert.equal(await counter("pixtral_prompt_tokens_total"), done.json.usage.prompt_tokens);
    assert.equal(await counter("pixtral_preemptions_total"), 0);
    // Latencies: one time to first token per request, and the gaps between each choice's own tokens.
    const [ttft, itl] = [
      await counter("pixtral_time_to_first_token_seconds_count"),
      await counter("pixtral_inter_token_latency_seconds_count"),
    ];
    await post(`${url}/v1/chat/completions`, { ...user("hi"), max_tokens: 4, n: 3, ignore_eos: true });
    assert.equal(await counter("pixtral_time_to_first_token_seconds_count"), ttft + 1);
    assert.equal(await counter("pixtral_inter_token_latency_seconds_count"), itl + 3 * 3);
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...user("hi"), max_tokens: 64, ignore_eos: true, stream: true }),
    });
    const reader = response.body!.getReader();
    let text = "";
    while ((text.match(/"content"/g) ?? []).length < 4) {
      text += new TextDecoder().decode((await reader.read()).value);
    }
    await reader.cancel();
    // At least the tokens streamed so far (the first chunk carries the role), fewer than asked.
    const counted = await counter("pixtral_generation_tokens_total") - 3 - 3 * 4;
    assert.ok(counted >= 3 && counted < 64, `${counted} tokens counted`);
    assert.equal(await counter("pixtral_prompt_tokens_total"), 3 * done.json.usage.prompt_tokens);
  });
});

Deno.test("a long non-streamed answer begins a few seconds after its first token: a client that leaves stops it, whatever its body's size", async () => {
  await withServer({}, async ({ url }) => {
    const running = async () => {
      const text = await (await fetch(`${url}/metrics`)).text();
      return Number(/^pixtral_running_sequences (\d+)/m.exec(text)?.[1]);
    };
    // An ignored field makes the body 200 KB: Deno reports no disconnect before a response begins for such
    // bodies (denoland/deno#21653).
    const body = { ...user("hi"), max_tokens: 1500, ignore_eos: true, padding: "x".repeat(200_000) };
    const controller = new AbortController();
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    assert.equal(response.status, 200);
    const reader = response.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    assert.match(first, /^ +$/, "a space each second while the answer is written");
    controller.abort();
    const until = Date.now() + 10_000;
    while (await running() > 0) {
      assert.ok(Date.now() < until, "the generation went on after its client left");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // A shorter answer, whole within the hold: plain JSON.
    const slow = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...body, max_tokens: 60 }),
    });
    const text = await slow.text();
    assert.equal(JSON.parse(text).usage.completion_tokens, 60);
  });
});

Deno.test("stop strings, n choices with seeds, and log-probabilities", async () => {
  await withServer({}, async ({ url, service }) => {
    const chat = `${url}/v1/chat/completions`;
    const base = { messages: [{ role: "user", content: "Tell me a story" }], max_tokens: 16, temperature: 0 };
    const full = (await post(chat, base)).json.choices[0].message.content as string;
    const stop = full.slice(4, 7);
    const cut = await post(chat, { ...base, stop: [stop] });
    assert.equal(cut.json.choices[0].finish_reason, "stop");
    assert.equal(cut.json.choices[0].message.content, full.slice(0, full.indexOf(stop)));
    const n = await post(chat, { ...base, n: 3, temperature: 1, seed: 5 });
    assert.equal(n.json.choices.length, 3);
    assert.deepEqual(n.json.choices.map((c: { index: number }) => c.index), [0, 1, 2]);
    const again = await post(chat, { ...base, n: 3, temperature: 1, seed: 5 });
    assert.deepEqual(again.json.choices, n.json.choices);
    // Seeds are 64-bit: s, s + 2³² and negative ones name different streams; n = 1 is the first of n; seed 5's
    // second choice is not seed 6's first.
    const text = async (seed: number, n = 1) =>
      (await post(chat, { ...base, n, temperature: 1, seed })).json.choices.map(
        (c: { message: { content: string } }) => c.message.content,
      );
    const texts = [await text(5), await text(6), await text(5 + 2 ** 32), await text(-5), await text(2 ** 63)]
      .map((t) => t[0]);
    assert.equal(texts[0], n.json.choices[0].message.content);
    assert.equal(new Set([...texts, n.json.choices[1].message.content]).size, 6);
    assert.deepEqual(await text(2 ** 63), [texts[4]]);
    expectError(await post(chat, { ...base, seed: 2 ** 64 }), 400, /64 bits/);
    const lp = await post(chat, { ...base, max_tokens: 3, logprobs: true, top_logprobs: 2 });
    const entries = lp.json.choices[0].logprobs.content;
    assert.equal(entries.length, 3);
    for (const e of entries) {
      assert.ok(e.logprob <= 0 && e.top_logprobs.length === 2);
      // Greedy: the chosen token is the most likely one.
      assert.equal(e.token, e.top_logprobs[0].token);
      assert.equal(e.logprob, e.top_logprobs[0].logprob);
    }
    assert.equal(service.engine!.stats().kvBlocksUsed, 0);
  });
});

Deno.test("edge cases: n choices against a full queue, empty stop strings, model ids with a slash, prefix", async () => {
  const config = serverConfig({
    servedName: "mistralai/Pixtral-12B-2409",
    engine: { prefillChunk: 64, maxQueue: 1, maxRunning: 1 },
  });
  await withServer(config, async ({ url, service }) => {
    const chat = `${url}/v1/chat/completions`;
    // Three choices cannot all queue: 429, and the ones that did start are cancelled with it.
    const busy = await post(chat, { ...user("hi"), n: 3 });
    expectError(busy, 429, /already waiting/);
    for (let i = 0; i < 100 && service.engine!.stats().running + service.engine!.stats().waiting > 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual([service.engine!.stats().running, service.engine!.stats().waiting], [0, 0]);
    const plain = await post(chat, { ...user("hi"), max_tokens: 3, temperature: 0 });
    const emptyStop = await post(chat, { ...user("hi"), max_tokens: 3, temperature: 0, stop: [""] });
    assert.equal(emptyStop.json.choices[0].message.content, plain.json.choices[0].message.content);
    const card = await (await fetch(`${url}/v1/models/mistralai/Pixtral-12B-2409`)).json();
    assert.equal(card.id, "mistralai/Pixtral-12B-2409");
    // By the name Ollama's API lists it under, as the other routes take it.
    const tagged = await (await fetch(`${url}/v1/models/mistralai/Pixtral-12B-2409:latest`)).json();
    assert.equal(tagged.id, "mistralai/Pixtral-12B-2409");
    expectError(
      await fetch(`${url}/v1/models/mistralai/Pixtral-12B-2409:v2`).then(async (r) => ({
        status: r.status,
        json: await r.json(),
      })),
      404,
      /does not exist/,
    );
    const prefixFirst = {
      messages: [
        { role: "user", content: "a" },
        { role: "assistant", content: "b", prefix: true },
        { role: "user", content: "c" },
      ],
    };
    expectError(await post(chat, prefixFirst), 400, /prefix/);
    // A conversation ending with an answer has it continued (Open WebUI's "continue", Ollama's and llama.cpp's
    // reading), as with prefix: true or vLLM's flags; prefix: false closes it, which stays a 400.
    const partial = [{ role: "user", content: "a" }, { role: "assistant", content: "Once upon" }];
    const greedy = { max_tokens: 4, temperature: 0, ignore_eos: true };
    const marked = await post(chat, { ...greedy, messages: [partial[0], { ...partial[1], prefix: true }] });
    assert.equal(marked.status, 200, JSON.stringify(marked.json));
    for (const extra of [{}, { continue_final_message: true }, { add_generation_prompt: false }]) {
      const continued = await post(chat, { ...greedy, ...extra, messages: partial });
      assert.equal(continued.status, 200, JSON.stringify(continued.json));
      assert.deepEqual(continued.json.choices, marked.json.choices);
      assert.equal(continued.json.usage.prompt_tokens, marked.json.usage.prompt_tokens);
    }
    const counts = await Promise.all(
      [partial, [partial[0], { ...partial[1], prefix: true }]].map((messages) =>
        post(`${url}/tokenize`, { messages })
      ),
    );
    assert.deepEqual(counts[0].json.tokens, counts[1].json.tokens);
    expectError(
      await post(chat, { ...greedy, messages: [partial[0], { ...partial[1], prefix: false }] }),
      400,
      /last message must be/,
    );
    expectError(
      await post(chat, {
        ...greedy,
        messages: partial,
        continue_final_message: true,
        add_generation_prompt: true,
      }),
      400,
      /cannot both be true/,
      "continue_final_message",
    );
    expectError(
      await post(chat, { ...greedy, messages: [partial[0]], continue_final_message: true }),
      400,
      /must be an assistant message/,
      "continue_final_message",
    );
    expectError(
      await post(chat, {
        ...greedy,
        messages: [partial[0], { ...partial[1], prefix: false }],
        continue_final_message: true,
      }),
      400,
      /prefix: false/,
      "continue_final_message",
    );
    // add_generation_prompt: false asks for nothing here (Pixtral's format has no generation prompt).
    const unchanged = await post(chat, { ...greedy, messages: [partial[0]], add_generation_prompt: false });
    assert.equal(unchanged.status, 200, JSON.stringify(unchanged.json));
    // An empty last answer continues nothing: the question is answered anew.
    const fresh = await post(chat, { ...greedy, messages: [partial[0]] });
    const emptied = await post(chat, {
      ...greedy,
      messages: [partial[0], { role: "assistant", content: "" }],
    });
    assert.deepEqual(emptied.json.choices, fresh.json.choices);
    // `model: null` means the served model; `safe_prompt` puts Mistral's guardrail prompt first.
    const safe = await post(chat, { ...user("hi"), max_tokens: 1, model: null, safe_prompt: true });
    assert.equal(safe.status, 200, JSON.stringify(safe.json));
    const guarded = await post(`${url}/tokenize`, {
      messages: [{ role: "system", content: SAFE_PROMPT }, { role: "user", content: "hi" }],
    });
    assert.equal(safe.json.usage.prompt_tokens, guarded.json.count);
    const counted = await post(`${url}/tokenize`, { ...user("hi"), safe_prompt: true });
    assert.deepEqual(counted.json.tokens, guarded.json.tokens);
    assert.ok(guarded.json.count > plain.json.usage.prompt_tokens + 20);
  });
});

Deno.test("fields inside messages and tools that are not understood are reported as ignored; Ollama's images refused", () => {
  const { ignored } = parseChatRequest({
    messages: [
      { role: "system", content: "s", cache: true },
      {
        role: "user",
        content: [
          { type: "text", text: "hi", cache_control: { type: "ephemeral" } },
          { type: "image_url", image_url: { url: "data:,", detail: "low", format: "png" } },
        ],
      },
      { role: "tool", tool_call_id: "abcdefghi", name: "f", content: "ok" },
    ],
    tools: [{
      type: "function",
      function: { name: "f", parameters: { type: "object", x: 1 } },
      cache_control: 1,
    }],
    custom: 1,
  });
  assert.deepEqual(ignored, [
    "custom",
    "messages[0].cache",
    "messages[1].content[0].cache_control",
    "messages[1].content[1].image_url.format",
    "tools[0].cache_control",
  ]);
  // Found however many other fields were dropped before it (the log list is capped at 20).
  const chatty = Array.from(
    { length: 25 },
    (_, i) => ({ role: i % 2 ? "assistant" : "user", content: "x", id: i }),
  );
  assert.throws(
    () =>
      parseChatRequest({
        messages: [...chatty, { role: "user", content: "and this?", images: ["iVBORw0KGgo="] }],
      }),
    (err: RequestError) => err.param === "messages[25].images",
  );
  assert.throws(
    () =>
      parseChatRequest({ messages: [{ role: "user", content: "what is this?", images: ["iVBORw0KGgo="] }] }),
    (err: RequestError) =>
      err.param === "messages[0].images" && /content, as parts \{"type": "image_url"/.test(err.message),
  );
});

Deno.test("a full queue is a 429 before the request's images are decoded", async () => {
  const full = await loadTokenizer(fixture("tekken-full.json"), { cache: false });
  let waiting = 20;
  class Busy extends ScriptedEngine {
    override stats() {
      return { ...super.stats(), waiting, maxWaiting: 20 };
    }
  }
  const { service, counts } = countingDecodes(engineLessService(full));
  const app = createApp({ ...service, engine: new Busy([...full.encode("Hi")]) });
  const ask = () =>
    app.request("/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...user([{ type: "image_url", image_url: { url: image } }]), model: "tiny" }),
    });
  const refused = await ask();
  assert.equal(refused.status, 429);
  assert.equal((await refused.json()).error.code, "server_busy");
  assert.equal(counts.decodes, 0);
  waiting = 19;
  const answered = await ask();
  assert.equal(answered.status, 200);
  assert.equal(counts.decodes, 1);
});

Deno.test("a compressed body (gzip, deflate) is read; another encoding is a 415; a bomb stops at the size limit", async () => {
  const full = await loadTokenizer(fixture("tekken-full.json"), { cache: false });
  const app = createApp(
    { ...engineLessService(full), engine: new ScriptedEngine([...full.encode("Hi")]) },
    { maxBodyBytes: 100_000 },
  );
  const pack = async (text: string, format: CompressionFormat) =>
    new Uint8Array(
      await new Response(new Blob([text]).stream().pipeThrough(new CompressionStream(format))).arrayBuffer(),
    );
  const send = (body: Uint8Array<ArrayBuffer>, encoding: string) =>
    app.request("/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": encoding },
      body,
    });
  const request = JSON.stringify({ ...user("Hello"), model: "tiny" });
  for (const encoding of ["gzip", "deflate"] as const) {
    const res = await send(await pack(request, encoding), encoding);
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal((await res.json()).choices[0].message.content, "Hi");
  }
  const zstd = await send(new TextEncoder().encode(request), "zstd");
  assert.equal(zstd.status, 415);
  assert.match((await zstd.json()).error.message, /Content-Encoding "zstd" is not taken/);
  const garbled = await send(new TextEncoder().encode(request), "gzip");
  assert.equal(garbled.status, 400);
  assert.match((await garbled.json()).error.message, /not valid gzip/);
  // Deno's DecompressionStream reads a zlib body cut short as the part that came (here a whole request, since
  // what is cut is trailing spaces and the checksum).
  const padded = await pack(request + " ".repeat(2000), "deflate");
  for (const body of [padded.slice(0, -2), padded.slice(0, -12)]) {
    const cut = await send(body, "deflate");
    assert.equal(cut.status, 400);
    assert.match(
      (await cut.json()).error.message,
      /not valid deflate: it ends before its compressed data does$/,
    );
  }
  const gzipped = await pack(request, "gzip");
  const followed = await send(new Uint8Array([...gzipped, ...gzipped]), "gzip");
  assert.equal(followed.status, 400);
  assert.match((await followed.json()).error.message, /not valid gzip: more data follows the end/);
  // 10 MB of spaces packs into some 10 kB: it is refused once 100 kB have come out.
  const bomb = await pack(" ".repeat(10_000_000) + request, "gzip");
  assert.ok(bomb.length < 100_000);
  const refused = await send(bomb, "gzip");
  assert.equal(refused.status, 413);
});

Deno.test("a refused request's log line says why", async () => {
  const app = createApp(
    engineLessService(await loadTokenizer(fixture("tekken-full.json"), { cache: false })),
  );
  const lines: string[] = [];
  const print = console.log;
  console.log = (line: unknown) => void lines.push(String(line));
  try {
    const res = await app.request("/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "a" }], temperature: "hot" }),
    });
    assert.equal(res.status, 400);
    await res.body?.cancel();
  } finally {
    console.log = print;
  }
  const request = lines.map((line) => JSON.parse(line)).find((line) => line.msg === "request");
  assert.equal(request?.status, 400);
  assert.match(request?.error, /^temperature: /);
});

Deno.test("an error that echoes the request is cut: a 100 KB model name gives a short 404", async () => {
  const app = createApp(
    engineLessService(await loadTokenizer(fixture("tekken-full.json"), { cache: false })),
  );
  const res = await app.request("/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "A".repeat(100_000), messages: [{ role: "user", content: "a" }] }),
  });
  assert.equal(res.status, 404);
  const { error } = await res.json();
  assert.ok(error.message.length < 2100, `${error.message.length} characters`);
  assert.match(error.message, /^the model "AAAA/);
  assert.match(error.message, /\(\d+ characters\)$/);
});
