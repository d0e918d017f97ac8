/**
 * The official OpenAI and Mistral npm clients against a real server on loopback (tiny-pixtral, f32): text,
 * images by data URI and by URL, two images, streaming and not, usage checked against /tokenize.
 */
import { Mistral } from "@mistralai/mistralai";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { AddressAllowList } from "../functions/images/address.ts";
import { fixture } from "./helpers.ts";
import { dataUrl, post, withServer } from "./api_helpers.ts";

const image = await dataUrl("golden/images/chat_a_32x48.png");
const image2 = await dataUrl("golden/images/chat_b_48x16.png");

Deno.test("OpenAI client: text and images, streamed and not, with usage that matches /tokenize", async () => {
  await withServer({}, async ({ url, service }) => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused" });
    const cases: OpenAI.Chat.ChatCompletionMessageParam[][] = [
      [{ role: "user", content: "Hello, how are you?" }],
      [{
        role: "user",
        content: [{ type: "text", text: "What is this?" }, { type: "image_url", image_url: { url: image } }],
      }],
      [{ role: "system", content: "Be brief." }, {
        role: "user",
        content: [
          { type: "image_url", image_url: { url: image } },
          { type: "text", text: "Compare" },
          { type: "image_url", image_url: { url: image2, detail: "high" } },
        ],
      }],
    ];
    for (const messages of cases) {
      const whole = await client.chat.completions.create({
        model: service.model.id,
        messages,
        max_tokens: 12,
        temperature: 0,
      });
      const counted = await post(`${url}/tokenize`, { messages });
      assert.equal(whole.usage?.prompt_tokens, counted.json.count);
      const choice = whole.choices[0];
      assert.ok(choice.finish_reason === "length" || choice.finish_reason === "stop");
      assert.ok(whole.usage!.completion_tokens >= 1 && whole.usage!.completion_tokens <= 12);

      const stream = await client.chat.completions.create({
        model: service.model.id,
        messages,
        max_tokens: 12,
        temperature: 0,
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
      assert.equal(text, choice.message.content);
      assert.equal(finish, choice.finish_reason);
      assert.deepEqual(usage, whole.usage);
    }
  });
});

Deno.test("Mistral client: chat.complete and chat.stream with an image given as a plain URL string", async () => {
  await withServer({}, async ({ url, service }) => {
    const client = new Mistral({ serverURL: url, apiKey: "unused" });
    const messages = [{
      role: "user" as const,
      content: [{ type: "text" as const, text: "Describe" }, { type: "image_url" as const, imageUrl: image }],
    }];
    const whole = await client.chat.complete({
      model: service.model.id,
      messages,
      maxTokens: 10,
      temperature: 0,
    });
    const content = whole.choices![0].message!.content;
    assert.equal(typeof content, "string");
    let text = "";
    const usages = [];
    for await (
      const event of await client.chat.stream({
        model: service.model.id,
        messages,
        maxTokens: 10,
        temperature: 0,
      })
    ) {
      text += event.data.choices[0].delta.content ?? "";
      if (event.data.usage) usages.push(event.data.usage);
    }
    assert.equal(text, content);
    // As Mistral's API streams it: the usage once, with the last finish (its client has no stream_options).
    assert.deepEqual(usages, [whole.usage]);
    assert.equal(
      whole.usage!.promptTokens,
      (await post(`${url}/tokenize`, {
        messages: [{
          role: "user",
          content: [{ type: "text", text: "Describe" }, { type: "image_url", image_url: image }],
        }],
      })).json.count,
    );
    const models = await client.models.list();
    const card = models.data![0];
    assert.ok("id" in card && card.id === service.model.id);
  });
});

Deno.test("image URLs: fetched from an allowed loopback host, refused without the allow-list", async () => {
  const png = await Deno.readFile(fixture("golden/images/chat_a_32x48.png"));
  const images = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response(png, { headers: { "content-type": "image/png" } }),
  );
  const imageUrl = `http://127.0.0.1:${images.addr.port}/a.png`;
  const body = (model: string) => ({
    model,
    messages: [{
      role: "user",
      content: [{ type: "image_url", image_url: { url: imageUrl } }, { type: "text", text: "?" }],
    }],
    max_tokens: 4,
    temperature: 0,
  });
  try {
    await withServer({}, async ({ url, service }) => {
      const refused = await post(`${url}/v1/chat/completions`, body(service.model.id));
      assert.equal(refused.status, 400);
      assert.match(refused.json.error.message, /private, loopback/);
      assert.equal(refused.json.error.param, "messages[0].content[0].image_url");
    });
    const allowed = {
      images: {
        ...(await import("./api_helpers.ts")).serverConfig().images,
        allow: new AddressAllowList(["127.0.0.1"]),
      },
    };
    await withServer(allowed, async ({ url, service }) => {
      const byUrl = await post(`${url}/v1/chat/completions`, body(service.model.id));
      assert.equal(byUrl.status, 200);
      const byData = await post(`${url}/v1/chat/completions`, {
        ...body(service.model.id),
        messages: [{
          role: "user",
          content: [{ type: "image_url", image_url: { url: image } }, { type: "text", text: "?" }],
        }],
      });
      assert.deepEqual(byUrl.json.choices, byData.json.choices);
      assert.deepEqual(byUrl.json.usage, byData.json.usage);
    });
  } finally {
    await images.shutdown();
  }
});

/** A 24-bit BMP of width x height, a gradient (no encoder needed). */
function bmp(width: number, height: number): Uint8Array {
  const row = Math.ceil((width * 3) / 4) * 4;
  const bytes = new Uint8Array(54 + row * height);
  const view = new DataView(bytes.buffer);
  bytes.set([0x42, 0x4d]);
  view.setUint32(2, bytes.length, true);
  view.setUint32(10, 54, true);
  view.setUint32(14, 40, true);
  view.setInt32(18, width, true);
  view.setInt32(22, height, true);
  view.setUint16(26, 1, true);
  view.setUint16(28, 24, true);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) bytes.fill((x + y) & 255, 54 + y * row + 3 * x, 54 + y * row + 3 * x + 3);
  }
  return bytes;
}

Deno.test("/tokenize counts images as the chat request's image_resize lays them out; detail takes any value", async () => {
  // 1040x17 at most 1024 px: 16.74 px high, 17 rounded (2 rows, mistral) and 16 floored (1 row, hf).
  const url = `data:image/bmp;base64,${bmp(1040, 17).toBase64()}`;
  await withServer({}, async ({ url: base }) => {
    const request = (image_resize: string, detail: unknown) => ({
      messages: [{
        role: "user",
        content: [{ type: "image_url", image_url: { url, detail } }, "x"].map((p) =>
          typeof p === "string" ? { type: "text", text: p } : p
        ),
      }],
      image_resize,
      max_tokens: 1,
    });
    const breaks = (ids: number[]) => ids.filter((id) => id === 12 || id === 13).length;
    for (const [mode, rows] of [["mistral", 2], ["hf", 1]] as const) {
      const counted = await post(`${base}/tokenize`, request(mode, null));
      assert.equal(counted.status, 200, JSON.stringify(counted.json));
      assert.equal(breaks(counted.json.tokens), rows, mode);
      for (const detail of ["original", "HIGH", null, "auto"]) {
        const chat = await post(`${base}/v1/chat/completions`, request(mode, detail));
        assert.equal(chat.status, 200, `${detail}: ${JSON.stringify(chat.json)}`);
        assert.equal(chat.json.usage.prompt_tokens, counted.json.count, `${mode} ${detail}`);
      }
    }
    const bogus = await post(`${base}/tokenize`, request("bogus", null));
    assert.equal(bogus.status, 400);
    assert.equal(bogus.json.error.param, "image_resize");
    // Ollama's images beside the content: refused here as in chat, not counted as if absent.
    const ollama = await post(`${base}/tokenize`, {
      messages: [{ role: "user", content: "x", images: ["AAAA"] }],
    });
    assert.deepEqual([ollama.status, ollama.json.error.param], [400, "messages[0].images"]);
  });
});
