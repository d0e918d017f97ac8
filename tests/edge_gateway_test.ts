/**
 * The built edge bundle in front of two GPU hosts (`pixtral serve` child processes over tiny-pixtral, f32), driven
 * with the OpenAI client: under Deno and under workerd it answers exactly as a GPU host does (content, token
 * log-probabilities and bytes, usage, prompt ids), and when a host is killed mid-run no accepted request is
 * lost: requests that had no token yet finish on the other host, streams already started end with an error
 * event, never silently cut short.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import type { HostStatus } from "../runtime/engine/wire.ts";
import { dataUrl, post } from "./api_helpers.ts";
import { fixture } from "./helpers.ts";
import {
  buildBundle,
  denoGateway,
  firstResponse,
  SECRET,
  startHost,
  workerdGateway,
} from "./edge_helpers.ts";

const image = await dataUrl("golden/images/chat_a_32x48.png");
const image2 = await dataUrl("golden/images/chat_b_48x16.png");
const KEY = "edge-client-key";

const conversations: OpenAI.Chat.ChatCompletionMessageParam[][] = [
  [{ role: "user", content: "Hello, how are you?" }],
  [{ role: "system", content: "Be brief." }, {
    role: "user",
    content: [
      { type: "image_url", image_url: { url: image } },
      { type: "text", text: "Compare" },
      { type: "image_url", image_url: { url: image2 } },
    ],
  }],
];

async function streamed(client: OpenAI, params: OpenAI.Chat.ChatCompletionCreateParamsNonStreaming) {
  const stream = await client.chat.completions.create({
    ...params,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "", finish: string | null = null, usage;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta.content ?? "";
      finish = c.finish_reason ?? finish;
    }
  }
  return { text, finish, usage };
}

/** The gateway answers as the GPU host itself does, streamed and not, with log-probabilities. */
async function assertSameAnswers(gatewayUrl: string, hostUrl: string) {
  const direct = new OpenAI({ baseURL: `${hostUrl}/v1`, apiKey: "unused", maxRetries: 0 });
  const edge = new OpenAI({ baseURL: `${gatewayUrl}/v1`, apiKey: KEY, maxRetries: 0 });
  for (const messages of conversations) {
    const params = {
      model: "mistral",
      messages,
      max_tokens: 8,
      temperature: 0,
      logprobs: true,
      top_logprobs: 2,
    } as const;
    const want = await direct.chat.completions.create(params);
    const got = await edge.chat.completions.create(params);
    assert.deepEqual(got.choices, want.choices);
    assert.deepEqual(got.usage, want.usage);
    assert.equal(got.choices[0].logprobs?.content?.length, want.usage?.completion_tokens);
    assert.deepEqual(await streamed(edge, params), await streamed(direct, params));
    const viaHost = await post(`${hostUrl}/tokenize`, { messages });
    const viaEdge = await post(`${gatewayUrl}/tokenize`, { messages }, { authorization: `Bearer ${KEY}` });
    assert.deepEqual([viaEdge.status, viaEdge.json], [200, viaHost.json]);
  }
}

Deno.test("edge gateway: the bundle under Deno and workerd, two GPU hosts, one killed mid-run", async (t) => {
  const bundle = await buildBundle();
  // a runs two sequences at a time, so that a burst of requests leaves some waiting in its queue.
  // Both serve a LoRA adapter per request, which requests through the gateway name as their model.
  const lora = ["--lora-module", `ft=${new URL("./fixtures/lora/plain", import.meta.url).pathname}`];
  const hosts = await Promise.all([startHost(["--max-running", "2", ...lora]), startHost(lora)]);
  const [a, b] = hosts;
  const env = {
    PIXTRAL_GPU_HOSTS: hosts.map((h) => h.url).join(","),
    PIXTRAL_INTERNAL_SECRET: SECRET,
    PIXTRAL_API_KEY: KEY,
  };
  const gateway = await denoGateway(bundle, env);
  try {
    await t.step("under Deno: the API key is the edge's; answers equal the GPU host's", async () => {
      const refused = await post(`${gateway.url}/v1/chat/completions`, { messages: [] });
      assert.equal(refused.status, 401);
      await assertSameAnswers(gateway.url, b.url);
      const adapted = {
        model: "ft",
        messages: [{ role: "user", content: "Hi" }],
        temperature: 0,
        max_tokens: 6,
      };
      const [viaGateway, fromHost, unadapted] = await Promise.all([
        post(`${gateway.url}/v1/chat/completions`, adapted, { authorization: `Bearer ${KEY}` }),
        post(`${b.url}/v1/chat/completions`, adapted),
        post(`${b.url}/v1/chat/completions`, { ...adapted, model: "mistral" }),
      ]);
      assert.equal(viaGateway.status, 200, JSON.stringify(viaGateway.json));
      assert.equal(viaGateway.json.model, "ft");
      assert.deepEqual(viaGateway.json.choices, fromHost.json.choices);
      assert.notDeepEqual(fromHost.json.choices, unadapted.json.choices);
      const listedModels = await fetch(`${gateway.url}/v1/models`, {
        headers: { authorization: `Bearer ${KEY}` },
      })
        .then((r) => r.json());
      assert.deepEqual(listedModels.data.map((m: { id: string }) => m.id), ["mistral", "ft"]);
      // Ollama's model list as the host gives it: parameters, size and format of the weights.
      const [edgeTags, hostTags] = await Promise.all([
        fetch(`${gateway.url}/api/tags`, { headers: { authorization: `Bearer ${KEY}` } }).then((r) =>
          r.json()
        ),
        fetch(`${b.url}/api/tags`).then((r) => r.json()),
      ]);
      assert.ok(hostTags.models[0].size > 0);
      const listed = (tags: { models: { size: number; details: unknown }[] }) =>
        tags.models.map(({ size, details }) => ({ size, details }));
      assert.deepEqual(listed(edgeTags), listed(hostTags));
      // The gateway reads an image's header only: a file whose data is broken is refused by the host decoding it.
      const png = await Deno.readFile(fixture("golden/images/chat_a_32x48.png"));
      const broken = `data:image/png;base64,${png.subarray(0, png.length - 40).toBase64()}`;
      const withBroken = {
        model: "mistral",
        messages: [{
          role: "user",
          content: [{ type: "image_url", image_url: { url: broken } }, { type: "text", text: "x" }],
        }],
        max_tokens: 2,
      };
      const refusedImage = await post(`${gateway.url}/v1/chat/completions`, withBroken, {
        authorization: `Bearer ${KEY}`,
      });
      assert.equal(refusedImage.status, 400, JSON.stringify(refusedImage.json));
      assert.equal(refusedImage.json.error.type, "invalid_request_error");
      assert.match(refusedImage.json.error.message, /corrupt|truncated|end/i);
      // As the GPU host answers it directly: the image's place in the request, and its code.
      const hostRefused = await post(`${b.url}/v1/chat/completions`, withBroken);
      assert.deepEqual(refusedImage.json.error, hostRefused.json.error);
      assert.equal(refusedImage.json.error.param, "messages[0].content[0].image_url");
      assert.equal(refusedImage.json.error.code, "invalid_image");
      // The Responses API's names for it too.
      const input = [{
        role: "user",
        content: [{ type: "input_image", image_url: broken }, { type: "input_text", text: "x" }],
      }];
      const [viaEdge, viaHost] = await Promise.all([
        post(`${gateway.url}/v1/responses`, { model: "mistral", input, max_output_tokens: 2 }, {
          authorization: `Bearer ${KEY}`,
        }),
        post(`${b.url}/v1/responses`, { model: "mistral", input, max_output_tokens: 2 }),
      ]);
      assert.equal(viaEdge.status, 400, JSON.stringify(viaEdge.json));
      assert.deepEqual(viaEdge.json.error, viaHost.json.error);
      assert.match(viaEdge.json.error.param, /^input\[0\]\.content\[0\]/);
      // Function calling: the output format, its trigger and the banned [TOOL_CALLS] travel to the host.
      const direct = new OpenAI({ baseURL: `${b.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const edge = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: KEY, maxRetries: 0 });
      const tools = [{
        type: "function" as const,
        function: {
          name: "pick",
          parameters: { type: "object", properties: { a: { enum: ["x", "y"] } }, required: ["a"] },
        },
      }];
      for (const tool_choice of ["required", "auto", "none"] as const) {
        const params = {
          model: "mistral",
          messages: [{ role: "user" as const, content: "Pick one." }],
          tools,
          tool_choice,
          temperature: 0,
          max_tokens: 120,
        };
        const [want, got] = await Promise.all([direct, edge].map((c) => c.chat.completions.create(params)));
        const shape = (r: typeof want) =>
          r.choices.map((c) => ({
            finish: c.finish_reason,
            content: c.message.content,
            calls: c.message.tool_calls?.map((call) => call.type === "function" && call.function),
          }));
        assert.deepEqual(shape(got), shape(want), tool_choice);
        if (tool_choice === "required") assert.equal(got.choices[0].finish_reason, "tool_calls");
      }
      // Text completions: the prompt tokenized at the edge, the same answer, the prompt's log-probabilities too.
      const completion = {
        model: "mistral",
        prompt: ["Once upon", "a time"],
        max_tokens: 6,
        temperature: 0,
        echo: true,
        logprobs: 1,
      };
      const [want, got] = await Promise.all(
        [direct, edge].map((c) => c.completions.create({ ...completion, stream: false })),
      );
      assert.deepEqual(got.choices, want.choices);
      assert.deepEqual(got.usage, want.usage);
      assert.equal(got.choices[0].logprobs?.token_logprobs?.[0], null); // the prompt's first token
      // The Responses API, whole and streamed through the gateway.
      const request = { model: "mistral", input: "Pick one.", max_output_tokens: 6, temperature: 0 };
      const [wanted, whole, streamed] = await Promise.all([
        direct.responses.create(request),
        edge.responses.create(request),
        edge.responses.stream(request).finalResponse(),
      ]);
      for (const r of [whole, streamed]) {
        assert.equal(r.output_text, wanted.output_text);
        assert.equal(r.status, wanted.status);
        assert.deepEqual(r.usage, wanted.usage);
      }
    });

    await t.step("under workerd: starts, then answers as the GPU host does", async () => {
      const worker = await workerdGateway(bundle, env);
      try {
        const health = await firstResponse(`${worker.url}/health`);
        assert.equal(health.status, 200, await health.clone().text());
        await health.body?.cancel();
        await assertSameAnswers(worker.url, a.url);
      } finally {
        await worker.stop();
      }
    });

    await t.step("a client that goes away frees the sequence on the GPU host", async () => {
      const controller = new AbortController();
      const res = await fetch(`${gateway.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
        body: JSON.stringify({
          messages: [{ role: "user", content: "Go on for a long time." }],
          max_tokens: 1000,
          stream: true,
        }),
        signal: controller.signal,
      });
      const reader = res.body!.getReader();
      await reader.read();
      const load = async () => {
        const stats = await Promise.all(hosts.map(async (h) => {
          const res = await fetch(`${h.url}/internal/v1/status`, {
            headers: { authorization: `Bearer ${SECRET}` },
          });
          return (await res.json() as HostStatus).stats!;
        }));
        return stats.reduce((n, s) => n + s.running + s.waiting + s.kvBlocksUsed, 0);
      };
      assert.ok(await load() > 0, "the sequence runs on a host");
      controller.abort();
      await reader.closed.catch(() => {});
      for (let i = 0; i < 100 && await load() > 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(await load(), 0, "the GPU host still holds the sequence");
    });

    await t.step("a host killed mid-run: no accepted request is lost or silently cut", async () => {
      const direct = new OpenAI({ baseURL: `${b.url}/v1`, apiKey: "unused", maxRetries: 0 });
      const edge = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: KEY, maxRetries: 3 });
      const params = (i: number) => ({
        model: "mistral",
        messages: [{ role: "user" as const, content: `Request number ${i % 2}: tell me a story.` }],
        max_tokens: 10,
        temperature: 0,
      });
      const references = await Promise.all([0, 1].map((i) => direct.chat.completions.create(params(i))));
      const wanted = (i: number) => references[i % 2].choices[0];
      const metric = (text: string, name: string) =>
        Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? 0);
      const firstTokens = async () =>
        metric(await (await fetch(`${a.url}/metrics`)).text(), "pixtral_time_to_first_token_seconds_count");
      const before = await firstTokens();
      interface Outcome {
        text: string;
        finish: string | null;
        error?: Error;
      }
      const stream = async (i: number): Promise<Outcome> => {
        let text = "";
        try {
          const stream = await edge.chat.completions.create({ ...params(i), stream: true });
          let finish: string | null = null;
          for await (const chunk of stream) {
            text += chunk.choices[0]?.delta.content ?? "";
            finish = chunk.choices[0]?.finish_reason ?? finish;
          }
          return { text, finish };
        } catch (err) {
          return { text, finish: null, error: err as Error };
        }
      };
      const whole = async (i: number): Promise<Outcome> => {
        const res = await edge.chat.completions.create(params(i));
        return { text: res.choices[0].message.content ?? "", finish: res.choices[0].finish_reason };
      };
      // Twelve streams: a, which runs two sequences at a time, gets several waiting in its queue, so that some
      // still wait when it is killed even if the machine is slow to act on the metrics read below.
      const results = Array.from({ length: 12 }, (_, i) => stream(i));

      // Kill host a once a stream of this burst produced tokens there while others wait in its queue; a
      // request sent just before goes to whichever host the gateway picks, and must succeed either way.
      let killed = false;
      for (let i = 0; i < 1000 && !killed; i++) {
        const text = await (await fetch(`${a.url}/metrics`)).text();
        const started = metric(text, "pixtral_time_to_first_token_seconds_count") - before;
        if (started >= 1 && metric(text, "pixtral_queue_depth") >= 1) {
          results.push(whole(results.length), stream(results.length + 1));
          await new Promise((r) => setTimeout(r, 5));
          await a.kill();
          killed = true;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.ok(killed, "host a never had started and waiting requests at once");

      const outcomes = await Promise.all(results);
      outcomes.forEach((o, i) => {
        const want = wanted(i);
        if (o.error) {
          // Only a stream that had started on the killed host may fail, with an error event saying so.
          assert.ok(o.error instanceof OpenAI.APIError, `request ${i}: ${o.error}`);
          assert.match(o.error.message, /GPU host failed after \d+ tokens/, `request ${i}`);
          assert.ok(want.message.content!.startsWith(o.text), `request ${i}: a prefix of the answer`);
        } else {
          assert.equal(o.text, want.message.content, `request ${i}`);
          assert.equal(o.finish, want.finish_reason, `request ${i}`);
        }
      });
      const failed = outcomes.filter((o) => o.error).length;
      assert.ok(failed >= 1, "no stream was running on the killed host");
      const metrics =
        await (await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } }))
          .text();
      assert.ok(
        metric(metrics, "pixtral_gateway_retries_total") >= 1,
        "no request was moved to the other host",
      );

      // The pool goes on with the host left.
      const after = await edge.chat.completions.create(params(0));
      assert.equal(after.choices[0].message.content, wanted(0).message.content);
    });

    await t.step("with no GPU host left, /health is a 503 that names no host address", async () => {
      assert.equal((await fetch(`${gateway.url}/health`)).status, 200);
      await b.kill();
      // Statuses are asked again once 2 s old.
      let health: { status: number; json: { status: string; error?: string } } | undefined;
      for (let i = 0; i < 60 && health?.status !== 503; i++) {
        await new Promise((r) => setTimeout(r, 100));
        const res = await fetch(`${gateway.url}/health`);
        health = { status: res.status, json: await res.json() };
      }
      assert.equal(health?.status, 503);
      assert.equal(health?.json.status, "unavailable");
      assert.match(health!.json.error!, /GPU host 1 of 2: .*GPU host 2 of 2: /);
      assert.ok(!health!.json.error!.includes("127.0.0.1"), health!.json.error);
    });
  } finally {
    await gateway.stop();
    await Promise.all(hosts.map((h) => h.kill()));
    await Deno.remove(bundle.dir, { recursive: true });
  }
});
