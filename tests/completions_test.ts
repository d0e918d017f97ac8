/**
 * POST /v1/completions over HTTP on the tiny model, with the OpenAI client: text and token-id prompts, lists of
 * prompts with n choices each, echo, legacy log-probabilities, streams, and the errors of what it cannot do.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { GREEDY } from "../runtime/engine/engine.ts";
import { post, withServer } from "./api_helpers.ts";

Deno.test("text completions: prompts as text or ids, lists with n each, echo, logprobs, streamed or not", async () => {
  await withServer({}, async ({ url, service }) => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused" });
    const { tokenizer } = service;
    const model = service.model.id;
    const prompt = "The capital of France is";
    const ids = [tokenizer.special("<s>"), ...tokenizer.encode(prompt)];
    // What the engine answers for those ids, greedily.
    const direct = async (ids: number[], maxTokens: number) => {
      const stream = service.engine!.generate({ ids, images: [], sampling: GREEDY, maxTokens, stopIds: [2] });
      const out: number[] = [];
      for await (const event of stream) out.push(event.id);
      return tokenizer.decode(out);
    };

    const one = await client.completions.create({ model, prompt, temperature: 0, max_tokens: 6 });
    assert.equal(one.object, "text_completion");
    assert.match(one.id, /^cmpl-/);
    assert.equal(one.choices.length, 1);
    assert.equal(one.choices[0].text, await direct(ids, 6));
    assert.equal(one.choices[0].finish_reason, "length");
    assert.deepEqual(one.usage, {
      prompt_tokens: ids.length,
      completion_tokens: 6,
      total_tokens: ids.length + 6,
      prompt_tokens_details: { cached_tokens: 0 },
    });
    // The prompt counts as /tokenize counts it.
    assert.equal((await post(`${url}/tokenize`, { prompt })).json.count, ids.length);
    // Unasked, max_tokens is OpenAI's 16.
    const unasked = await client.completions.create({ model, prompt, temperature: 0 });
    assert.equal(unasked.usage!.completion_tokens, 16);
    // Ids are taken as they are: the same prompt written as ids answers the same.
    const byIds = await client.completions.create({
      model,
      prompt: ids,
      temperature: 0,
      max_tokens: 6,
    });
    assert.equal(byIds.choices[0].text, one.choices[0].text);

    // A list of prompts, n choices each, numbered on; each as it is alone.
    const other = "Once upon a time";
    const list = await client.completions.create({
      model,
      prompt: [prompt, other],
      n: 2,
      temperature: 0,
      max_tokens: 6,
    });
    assert.deepEqual(list.choices.map((c) => c.index), [0, 1, 2, 3]);
    const alone = await direct([tokenizer.special("<s>"), ...tokenizer.encode(other)], 6);
    assert.deepEqual(list.choices.map((c) => c.text), [
      one.choices[0].text,
      one.choices[0].text,
      alone,
      alone,
    ]);
    assert.equal(list.usage!.prompt_tokens, ids.length + 1 + tokenizer.encode(other).length);

    // echo puts the prompt first; logprobs: per token its text, log-probability, the most likely and the offset.
    const echoed = await client.completions.create({
      model,
      prompt,
      temperature: 0,
      max_tokens: 6,
      echo: true,
    });
    assert.equal(echoed.choices[0].text, prompt + one.choices[0].text);
    const scored = await client.completions.create({
      model,
      prompt,
      temperature: 0,
      max_tokens: 6,
      logprobs: 3,
    });
    const lp = scored.choices[0].logprobs!;
    assert.equal(lp.tokens!.length, 6);
    assert.equal(lp.token_logprobs!.length, 6);
    assert.ok(lp.token_logprobs!.every((v) => v <= 0));
    assert.equal(lp.text_offset![0], 0);
    for (let i = 1; i < 6; i++) {
      assert.equal(lp.text_offset![i], lp.text_offset![i - 1] + lp.tokens![i - 1].length);
    }
    lp.top_logprobs!.forEach((top, i) => {
      const values = Object.values(top);
      assert.ok(values.length >= 1 && values.length <= 4, JSON.stringify(top));
      // Greedy: the chosen token is the most likely one (the GPU's and the host's arithmetic differ in the last
      // digits).
      assert.ok(Math.abs(Math.max(...values) - lp.token_logprobs![i]) < 1e-4, JSON.stringify(top));
    });

    // Streamed log-probabilities are the same, offsets included (a character split across tokens, text held
    // back for a stop string's beginning).
    for (const stop of [undefined, ["( a", "e t"]]) {
      const params = { model, prompt: ["a", "b"], n: 2, temperature: 0, max_tokens: 8, logprobs: 1, stop };
      const whole = await client.completions.create(params);
      const parts = new Map<number, { tokens: string[]; token_logprobs: number[]; text_offset: number[] }>();
      for await (const chunk of await client.completions.create({ ...params, stream: true })) {
        for (const c of chunk.choices) {
          const part = parts.get(c.index) ?? { tokens: [], token_logprobs: [], text_offset: [] };
          parts.set(c.index, part);
          part.tokens.push(...c.logprobs?.tokens ?? []);
          part.token_logprobs.push(...c.logprobs?.token_logprobs ?? []);
          part.text_offset.push(...c.logprobs?.text_offset ?? []);
        }
      }
      for (const c of whole.choices) {
        const { tokens, token_logprobs, text_offset } = c.logprobs!;
        assert.deepEqual(parts.get(c.index), { tokens, token_logprobs, text_offset }, `choice ${c.index}`);
      }
    }

    // Streamed: the same text, usage at the end when asked.
    const stream = await client.completions.create({
      model,
      prompt: [prompt, other],
      temperature: 0,
      max_tokens: 6,
      echo: true,
      stream: true,
      stream_options: { include_usage: true },
    });
    const texts = ["", ""];
    const finishes: (string | null)[] = [null, null];
    let usage;
    for await (const chunk of stream) {
      assert.equal(chunk.object, "text_completion");
      for (const c of chunk.choices) {
        texts[c.index] += c.text;
        finishes[c.index] ??= c.finish_reason;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    assert.deepEqual(texts, [echoed.choices[0].text, other + alone]);
    assert.deepEqual(finishes, ["length", "length"]);
    assert.equal(usage!.completion_tokens, 12);
  });
});

Deno.test("logit_bias moves the choice: -100 bans a token, 100 makes one the answer, in chat and completions", async () => {
  await withServer({}, async ({ url, service }) => {
    const messages = [{ role: "user", content: "hi" }];
    const chat = async (logit_bias?: Record<string, number>) => {
      const res = await post(`${url}/v1/chat/completions`, {
        messages,
        max_tokens: 4,
        temperature: 0,
        logprobs: true,
        logit_bias,
      });
      assert.equal(res.status, 200, JSON.stringify(res.json));
      return res.json.choices[0].logprobs.content;
    };
    const free = await chat();
    // The greedy first token, from the engine itself.
    const ids = (await post(`${url}/tokenize`, { messages })).json.tokens;
    const [first] = await Array.fromAsync(
      service.engine!.generate({ ids, images: [], sampling: GREEDY, maxTokens: 1, stopIds: [2] }),
    );
    assert.deepEqual(free[0].bytes, [...service.tokenizer.tokenBytes(first.id)]);
    // Banned, another token comes first; the log-probabilities stay the model's own.
    const banned = await chat({ [String(first.id)]: -100 });
    assert.notDeepEqual(banned[0].bytes, free[0].bytes);
    assert.ok(banned[0].logprob < free[0].logprob);
    // A bias of 100 on one token makes every token it, even sampled.
    const res = await post(`${url}/v1/completions`, {
      prompt: [1, 1100, 1101],
      max_tokens: 5,
      temperature: 0.9,
      seed: 3,
      logit_bias: { "1234": 100 },
    });
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.equal(res.json.choices[0].text, service.tokenizer.decode(Array(5).fill(1234)));
  });
});

Deno.test("vLLM's ignore_eos, min_tokens and stop_token_ids, in chat and completions", async () => {
  await withServer({}, async ({ url, service }) => {
    const complete = async (body: Record<string, unknown>) => {
      const res = await post(`${url}/v1/completions`, { prompt: [1, 1100, 1101], temperature: 0, ...body });
      assert.equal(res.status, 200, JSON.stringify(res.json));
      return { tokens: res.json.usage.completion_tokens, finish: res.json.choices[0].finish_reason };
    };
    // The end-of-sequence token (id 2) made the answer: it stops at once, unless ignored or not yet allowed.
    const eos = { logit_bias: { "2": 100 }, max_tokens: 6 };
    assert.deepEqual(await complete(eos), { tokens: 1, finish: "stop" });
    assert.deepEqual(await complete({ ...eos, ignore_eos: true }), { tokens: 6, finish: "length" });
    assert.deepEqual(await complete({ ...eos, min_tokens: 3 }), { tokens: 4, finish: "stop" });
    assert.deepEqual(await complete({ ...eos, min_tokens: 6 }), { tokens: 6, finish: "length" });
    // Another token ends it too; min_tokens holds it back (sampled, in runs of steps after).
    const other = { logit_bias: { "1234": 100 }, max_tokens: 12, stop_token_ids: [1234] };
    assert.deepEqual(await complete(other), { tokens: 1, finish: "stop" });
    assert.deepEqual(await complete({ ...other, min_tokens: 5, temperature: 1, seed: 2 }), {
      tokens: 6,
      finish: "stop",
    });
    // min_tokens holds back stop strings too (as vLLM): a stop string in the first tokens' text does not count.
    const [word] = service.tokenizer.encode(" hello");
    const piece = service.tokenizer.decode([word]);
    const repeat = { logit_bias: { [String(word)]: 100 }, max_tokens: 8, stop: [piece] };
    const cut = await post(`${url}/v1/completions`, { prompt: [1, 1100], temperature: 0, ...repeat });
    assert.equal(cut.json.choices[0].text, "");
    const held = await post(`${url}/v1/completions`, {
      prompt: [1, 1100],
      temperature: 0,
      ...repeat,
      min_tokens: 3,
    });
    assert.equal(held.json.choices[0].text, piece.repeat(3));
    assert.equal(held.json.choices[0].finish_reason, "stop");
    const chat = await post(`${url}/v1/chat/completions`, {
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 4,
      logit_bias: { "2": 100 },
      ignore_eos: true,
    });
    assert.equal(chat.json.usage.completion_tokens, 4);
    assert.equal(chat.json.choices[0].finish_reason, "length");
  });
});

Deno.test("echo with logprobs scores the prompt: each token given those before it, as the model's own", async () => {
  await withServer({}, async ({ url, service }) => {
    const completions = `${url}/v1/completions`;
    const ask = async (body: Record<string, unknown>) => {
      const res = await post(completions, { temperature: 0, ...body });
      assert.equal(res.status, 200, JSON.stringify(res.json));
      return res.json;
    };
    // 150 tokens: three prefill chunks of 64 on this server.
    const text = service.tokenizer.vocabSize - 1000;
    const ids = [1, ...Array.from({ length: 149 }, (_, i) => 1000 + ((i * 7919) % text))];
    const scored = await ask({ prompt: ids, echo: true, logprobs: 1, max_tokens: 1 });
    const lp = scored.choices[0].logprobs;
    assert.equal(lp.tokens.length, ids.length + 1);
    assert.equal(lp.token_logprobs[0], null);
    assert.equal(lp.top_logprobs[0], null);
    assert.equal(scored.usage.prompt_tokens, ids.length);
    // Each equals the log-probability the sampler reports for that token when a bias makes it the answer
    // (prefill logits of every row against the last row's, through other kernels).
    for (const k of [1, 2, 63, 64, 65, 100, 149]) {
      const forced = await ask({
        prompt: ids.slice(0, k),
        logprobs: 0,
        max_tokens: 1,
        logit_bias: { [ids[k]]: 100 },
      });
      const want = forced.choices[0].logprobs.token_logprobs[0];
      assert.ok(
        Math.abs(lp.token_logprobs[k] - want) < 1e-3,
        `position ${k}: ${lp.token_logprobs[k]} vs ${want}`,
      );
      // The most likely token is listed with its log-probability, no lower than the prompt token's.
      assert.ok(Math.max(...Object.values(lp.top_logprobs[k]) as number[]) >= lp.token_logprobs[k] - 1e-6);
    }
    // With more alternatives, the same scores and the same best (the first chunk's 64 rows again).
    const three =
      (await ask({ prompt: ids.slice(0, 64), echo: true, logprobs: 3, max_tokens: 1 })).choices[0];
    for (let k = 1; k < 64; k++) {
      assert.equal(three.logprobs.token_logprobs[k], lp.token_logprobs[k]);
      // The prompt's token and the 3 best, keyed by text (which tokens can share).
      const alternatives = Object.values(three.logprobs.top_logprobs[k]) as number[];
      assert.ok(alternatives.length >= 1 && alternatives.length <= 4, `position ${k}`);
      for (const [token, v] of Object.entries(lp.top_logprobs[k])) {
        assert.equal(three.logprobs.top_logprobs[k][token], v);
      }
      assert.equal(Math.max(...alternatives), Math.max(...Object.values(lp.top_logprobs[k]) as number[]));
    }
    // Asked again (its blocks now in the prefix cache), the same: the whole prompt is computed each time.
    assert.deepEqual(
      (await ask({ prompt: ids, echo: true, logprobs: 1, max_tokens: 1 })).choices,
      scored.choices,
    );
    // Streamed, the same; and when the first token stops the answer, the prompt's scores still come.
    const stopped = await ask({
      prompt: "Hi there",
      echo: true,
      logprobs: 0,
      max_tokens: 3,
      logit_bias: { "2": 100 },
    });
    assert.equal(stopped.choices[0].finish_reason, "stop");
    assert.equal(stopped.choices[0].text, "Hi there");
    assert.equal(stopped.choices[0].logprobs.tokens.length, stopped.usage.prompt_tokens);
    assert.equal(stopped.usage.completion_tokens, 1);
    const res = await fetch(completions, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        prompt: ids,
        echo: true,
        logprobs: 1,
        max_tokens: 3,
        temperature: 0,
        stream: true,
      }),
    });
    const events = (await res.text()).split("\n\n").filter((e) => e.startsWith("data: {"))
      .map((e) => JSON.parse(e.slice(6)).choices[0]);
    const whole = (await ask({ prompt: ids, echo: true, logprobs: 1, max_tokens: 3 })).choices[0];
    assert.equal(events.map((e) => e.text).join(""), whole.text);
    for (const key of ["tokens", "token_logprobs", "text_offset"]) {
      assert.deepEqual(events.flatMap((e) => e.logprobs?.[key] ?? []), whole.logprobs[key], key);
    }
    // Scoring the prompt changes nothing of the answer, bit for bit: the first token comes from the prompt's last
    // row as it would without echo (its last chunk, 22 rows, goes through the tiled kernel otherwise).
    const plain = (await ask({ prompt: ids, logprobs: 1, max_tokens: 3 })).choices[0];
    for (const key of ["tokens", "token_logprobs", "top_logprobs"]) {
      assert.deepEqual(whole.logprobs[key].slice(ids.length), plain.logprobs[key], key);
    }
  });
});

Deno.test("text completions refuse what they cannot do, naming the field", async () => {
  await withServer({}, async ({ url, service }) => {
    const completions = `${url}/v1/completions`;
    const expect = async (body: unknown, status: number, message: RegExp, param?: string) => {
      const res = await post(completions, body);
      assert.equal(res.status, status, JSON.stringify(res.json));
      assert.match(res.json.error.message, message);
      if (param !== undefined) assert.equal(res.json.error.param, param);
    };
    await expect({ prompt: "a", suffix: "b" }, 400, /suffix/, "suffix");
    // Prompts x n choices must fit an empty queue (a 429 would never clear); 16 of them do.
    await expect(
      { prompt: ["a", "b"], n: 9, max_tokens: 1 },
      400,
      /2 prompts with n = 9 ask for 18 choices/,
      "n",
    );
    assert.equal(
      (await post(completions, { prompt: ["a", "b"], n: 8, max_tokens: 1 })).json.choices.length,
      16,
    );
    await expect({ prompt: "a", echo: true, logprobs: 21 }, 400, /logprobs/, "logprobs");
    await expect({ prompt: "a", max_tokens: 3, min_tokens: 4 }, 400, /min_tokens/, "min_tokens");
    await expect(
      { prompt: "a", min_tokens: 2, response_format: { type: "json_object" } },
      400,
      /min_tokens/,
      "min_tokens",
    );
    await expect({ prompt: "a", stop_token_ids: [999_999_999] }, 400, /vocabulary/, "stop_token_ids[0]");
    // A format ends with the end-of-sequence token (xgrammar aborted on a matcher without one).
    await expect(
      { prompt: "a", ignore_eos: true, response_format: { type: "json_object" } },
      400,
      /ignore_eos/,
      "ignore_eos",
    );
    const chat = `${url}/v1/chat/completions`;
    const tools = [{ type: "function", function: { name: "f", parameters: { type: "object" } } }];
    const messages = [{ role: "user", content: "hi" }];
    for (const tool_choice of ["required", "auto"]) {
      const res = await post(chat, { messages, tools, tool_choice, ignore_eos: true });
      assert.equal(res.status, 400, JSON.stringify(res.json));
      assert.equal(res.json.error.param, "ignore_eos");
    }
    // [TOOL_CALLS] is the tool choice's own: banned under "none", the calls' start under "auto".
    for (const tool_choice of ["none", "auto"]) {
      const calls = service.tokenizer.special("[TOOL_CALLS]");
      const res = await post(chat, { messages, tools, tool_choice, stop_token_ids: [calls] });
      assert.equal(res.status, 400, JSON.stringify(res.json));
      assert.equal(res.json.error.param, "stop_token_ids[0]");
    }
    await expect({ prompt: "a", best_of: 3 }, 400, /best_of/, "best_of");
    await expect({ prompt: "a", logit_bias: { "-1": 5 } }, 400, /not a token id/, "logit_bias.-1");
    await expect({ prompt: [] }, 400, /prompt/, "prompt");
    await expect({ prompt: 5 }, 400, /prompt/, "prompt");
    await expect({ prompt: Array(17).fill("a") }, 400, /at most 16/, "prompt");
    await expect({ prompt: [1, 1.5] }, 400, /token id/, "prompt[1]");
    await expect({ prompt: [[1], []] }, 400, /at least one/, "prompt[1]");
    await expect({ prompt: [1, 999_999_999] }, 400, /not in the vocabulary/, "prompt[1]");
    await expect({ prompt: [[1, 2], [1, 999_999_999]] }, 400, /not in the vocabulary/, "prompt[1][1]");
    await expect({ prompt: ["a", [1, 2]] }, 400, /only strings or only lists/, "prompt[0]");
    // An [IMG] token with no image to fill it.
    await expect({ prompt: [1, service.images.tokens.img] }, 400, /\[IMG\]/);
    // More asked than the context leaves is what it leaves; a prompt that leaves nothing is refused.
    const full = Array(service.engine!.contextLength).fill(1091);
    await expect({ prompt: full, max_tokens: 1 }, 400, /context/, "prompt");
    await expect({ prompt: "a", model: "gpt-4" }, 404, /does not exist/);
    await expect({ prompt: "a", stream_options: { include_usage: true } }, 400, /stream/, "stream_options");
    // Still serving.
    assert.equal((await post(completions, { prompt: "a", max_tokens: 1 })).status, 200);
  });
});
