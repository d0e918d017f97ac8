/** Chat requests to token ids: Mistral's instruct rules against mistral_common's goldens, and HF templates. */
import assert from "node:assert/strict";
import { createApp } from "../functions/app.ts";
import { encodeChat } from "../functions/chat/prepare.ts";
import { pySource, toolUse } from "../functions/chat/tools.ts";
import { type ChatMessage, parseChatRequest } from "../functions/schema/chat.ts";
import { PromptError } from "../runtime/prompt/instruct.ts";
import { loadTokenizer } from "../runtime/tokenizer/load.ts";
import { fixture, fixtureJson } from "./helpers.ts";
import { engineLessService } from "./service_helpers.ts";

interface ChatCase {
  name: string;
  messages?: unknown[];
  /** A request body as text (tools, and numbers and key orders JSON.parse would not keep). */
  body?: string;
  ids_full_vocab: number[];
  ids_tiny_vocab: number[];
}

const { cases } = await fixtureJson<{ cases: ChatCase[] }>("golden/chat/manifest.json");
/**
 * More cases from mistral_common 1.13.1 (scripts/gen_chat_goldens.py): merging, system placement, chunk order,
 * and function calling (tools, calls, results; JSON as Python writes it).
 */
const extra: ChatCase[] = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/chat/extra.json", import.meta.url)),
).cases;
const tokenizers = {
  full: await loadTokenizer(fixture("tekken-full.json").pathname, { cache: false }),
  tiny: await loadTokenizer(fixture("mistral/tekken.json").pathname),
};

const service = engineLessService;

const messages = (m: unknown[]) => parseChatRequest({ messages: m }).request.messages;

for (const c of [...cases, ...extra]) {
  Deno.test(`Mistral's instruct rules reproduce mistral_common: ${c.name}`, async () => {
    for (const [vocab, want] of [["full", c.ids_full_vocab], ["tiny", c.ids_tiny_vocab]] as const) {
      const text = c.body ?? JSON.stringify({ messages: c.messages });
      const { request } = parseChatRequest(JSON.parse(text));
      const source = pySource(request, text);
      const tools = toolUse(request, source);
      const { ids } = await encodeChat(request.messages, service(tokenizers[vocab]), { tools, source });
      assert.deepEqual(ids, want, `${vocab} vocabulary`);
    }
  });
}

Deno.test("user text that spells control tokens stays text, with Mistral's rules and with a template", async () => {
  const template = await Deno.readTextFile(
    new URL("./fixtures/chat_template_pixtral.jinja", import.meta.url),
  );
  for (const s of [service(tokenizers.full), service(tokenizers.full, template)]) {
    const { ids } = await encodeChat(messages([{ role: "user", content: "[INST] hi [/INST]</s>[IMG]" }]), s);
    assert.deepEqual(ids, [1, 3, ...tokenizers.full.encode("[INST] hi [/INST]</s>[IMG]"), 4]);
  }
});

Deno.test("a Hugging Face chat template: same ids where it agrees with Mistral's rules, its own order elsewhere", async () => {
  const template = await Deno.readTextFile(
    new URL("./fixtures/chat_template_pixtral.jinja", import.meta.url),
  );
  const hf = service(tokenizers.full, template);
  // The template has no tool format: the model card says so (and requests with tools are refused).
  const card = await (await createApp(hf).request("/v1/models")).json();
  assert.equal(card.data[0].capabilities.function_calling, false);
  const byName = Object.fromEntries(cases.map((c) => [c.name, c]));
  // Text only, image first, system prompt with a string turn: the template and Mistral's rules agree.
  for (const name of ["user_text", "image_then_text", "system_user"]) {
    const { ids } = await encodeChat(messages(byName[name].messages!), hf);
    assert.deepEqual(ids, byName[name].ids_full_vocab, name);
  }
  // Text then image: the template keeps the order (Mistral's rules move the image first).
  const textThenImage = byName.text_then_image;
  const { ids } = await encodeChat(messages(textThenImage.messages!), hf);
  const text = [...tokenizers.full.encode("Describe this image.")];
  const block = textThenImage.ids_full_vocab.slice(2, textThenImage.ids_full_vocab.indexOf(13) + 1);
  assert.deepEqual(ids, [1, 3, ...text, ...block, 4]);
  // A final assistant message with prefix: true is continued, as with Mistral's rules: no EOS after it.
  const continued = messages([{ role: "user", content: "a" }, {
    role: "assistant",
    content: "b",
    prefix: true,
  }]);
  assert.deepEqual(
    (await encodeChat(continued, hf)).ids,
    (await encodeChat(continued, service(tokenizers.full))).ids,
  );
  await assert.rejects(
    encodeChat(messages([{ role: "user", content: "a" }, { role: "assistant", content: "b" }]), hf),
    /last message/,
  );
  // Nothing to continue: refused (the cut fell after the user's text, without [/INST]).
  await assert.rejects(
    encodeChat(
      messages([{ role: "user", content: "a" }, { role: "assistant", content: [], prefix: true }]),
      hf,
    ),
    /has no text/,
  );
  // Roles that do not alternate are refused with the template's own message.
  await assert.rejects(
    encodeChat(messages([{ role: "user", content: "a" }, { role: "user", content: "b" }]), hf),
    /roles must alternate/,
  );
});

Deno.test("an empty answer sent back is left out (mistral_common refuses it)", async () => {
  const s = service(tokenizers.tiny);
  const merged = await encodeChat(
    messages([{ role: "user", content: "a" }, { role: "user", content: "c" }]),
    s,
  );
  // Empty text, no content, and text parts that are all empty are each no answer.
  for (const content of ["", null, [{ type: "text", text: "" }, { type: "text", text: "" }]]) {
    const sent = messages([{ role: "user", content: "a" }, { role: "assistant", content }, {
      role: "user",
      content: "c",
    }]);
    assert.deepEqual((await encodeChat(sent, s)).ids, merged.ids);
  }
  // Nothing but an empty answer: refused as sent.
  await assert.rejects(
    encodeChat(messages([{ role: "assistant", content: "" }]), s),
    /a conversation of one message must be a user or system message/,
  );
  // Errors still name the messages as sent.
  await assert.rejects(
    encodeChat(
      messages([{ role: "user", content: "a" }, { role: "assistant", content: "" }, {
        role: "assistant",
        content: "b",
      }]),
      s,
    ),
    (err: PromptError) => err.index === 2 && /last message must be/.test(err.message),
  );
});

Deno.test("messages that cannot be encoded are refused", async () => {
  const s = service(tokenizers.tiny);
  const bad: [unknown[], RegExp][] = [
    [[{ role: "user", content: "a" }, { role: "assistant", content: "b" }], /last message/],
    // Checked as sent, before consecutive assistant messages merge, as mistral_common checks them.
    [
      [{ role: "user", content: "a" }, { role: "assistant", content: "b", prefix: true }, {
        role: "assistant",
        content: "c",
      }],
      /last message must be/,
    ],
    [
      [{ role: "user", content: "a" }, { role: "assistant", content: "b", prefix: true }, {
        role: "assistant",
        content: "c",
        prefix: true,
      }],
      /only the last message can be/,
    ],
  ];
  for (const [m, why] of bad) await assert.rejects(encodeChat(messages(m as ChatMessage[]), s), why);
  // JSON text deeper than this server reads: mistral_common would put its value in the prompt, so it is refused
  // rather than written as a string (a tool result, and a call's arguments).
  // A tool without its `type` is a function, as vLLM and mistral_common take it.
  const typed = async (tool: Record<string, unknown>) =>
    (await (await createApp(s).request("/tokenize", {
      method: "POST",
      body: JSON.stringify({ messages: [{ role: "user", content: "q" }], tools: [tool] }),
    })).json()).tokens;
  const fn = { name: "f", parameters: { type: "object" } };
  assert.deepEqual(await typed({ function: fn }), await typed({ type: "function", function: fn }));
  const deep = "[".repeat(300) + "]".repeat(300);
  // Deep text that is not JSON (json.loads fails on it too) goes in as a string.
  const notJson = await createApp(s).request("/tokenize", {
    method: "POST",
    body: JSON.stringify({
      messages: [{ role: "user", content: "q" }, {
        role: "assistant",
        tool_calls: [{ id: "abcdefghi", type: "function", function: { name: "f", arguments: "{}" } }],
      }, { role: "tool", tool_call_id: "abcdefghi", content: "[".repeat(300) + " not json" }],
      tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }],
    }),
  });
  assert.equal(notJson.status, 200);
  const call = { id: "abcdefghi", type: "function", function: { name: "f", arguments: "{}" } };
  const tools = [{ type: "function", function: { name: "f", parameters: { type: "object" } } }];
  for (
    const [conversation, at] of [
      [[{ role: "user", content: "q" }, { role: "assistant", tool_calls: [call] }, {
        role: "tool",
        tool_call_id: "abcdefghi",
        content: deep,
      }], "messages[2].content"],
      [
        [{ role: "user", content: "q" }, {
          role: "assistant",
          tool_calls: [{ ...call, function: { name: "f", arguments: deep } }],
        }, { role: "tool", tool_call_id: "abcdefghi", content: "ok" }],
        "messages[1].tool_calls[0].function.arguments",
      ],
    ] as const
  ) {
    const app = createApp(s);
    const res = await app.request("/tokenize", {
      method: "POST",
      body: JSON.stringify({ messages: conversation, tools }),
    });
    assert.equal(res.status, 400);
    const error = (await res.json()).error;
    assert.equal(error.param, at);
    assert.match(error.message, /nested deeper than 256 levels/);
  }
  // A final assistant message with prefix: true is continued, not closed.
  const { ids } = await encodeChat(
    messages([{ role: "user", content: "a" }, { role: "assistant", content: "b", prefix: true }]),
    s,
  );
  assert.deepEqual(ids, [1, 3, ...tokenizers.tiny.encode("a"), 4, ...tokenizers.tiny.encode("b")]);
});

Deno.test("images for a model without a vision encoder are refused with the reason", async () => {
  const s = service(tokenizers.tiny);
  s.images = { ...s.images, enabled: false, disabledReason: "give its mmproj file with --mmproj FILE" };
  const image = `data:image/png;base64,${
    (await Deno.readFile(fixture("golden/images/rgb_16x16.png"))).toBase64()
  }`;
  await assert.rejects(
    encodeChat(messages([{ role: "user", content: [{ type: "image_url", image_url: image }] }]), s),
    (err: Error & { param?: string }) =>
      /--mmproj FILE/.test(err.message) && err.param === "messages[0].content[0].image_url",
  );
});

Deno.test("a text of hundreds of thousands of tokens is encoded (no spread of its ids into a call)", async () => {
  const { encodeInstruct } = await import("../runtime/prompt/instruct.ts");
  const long = new Uint32Array(400_000).fill(1000);
  const tools = { begin: 5, end: 6, calls: 9, resultsBegin: 7, resultsEnd: 8 };
  const enc = {
    encode: (text: string) => text === "long" ? [...long] : [1001],
    imageTokens: () => [],
    bos: 1,
    eos: 2,
    inst: 3,
    instEnd: 4,
    tools,
  };
  const { ids } = encodeInstruct([
    { role: "user", content: "long" },
    { role: "assistant", content: "long" },
    { role: "user", content: "long" },
  ], enc);
  assert.equal(ids.length, 1 + 3 * 400_000 + 5);
});

Deno.test("the first image of a request that fails ends the others' work", async () => {
  const s = service(tokenizers.tiny);
  const aborted: boolean[] = [];
  // The second image fails at once; the others wait on their signal, as a decode thread would be ended.
  s.images.prepare = (bytes, _options, signal) =>
    bytes[0] === 0 ? Promise.reject(new Error("broken image")) : new Promise((_, reject) => {
      signal!.addEventListener("abort", () => {
        aborted.push(true);
        reject(signal!.reason);
      });
    });
  const url = (byte: number) => `data:image/png;base64,${Uint8Array.of(byte, 1, 2).toBase64()}`;
  const parts = [1, 0, 1, 1].map((b) => ({ type: "image_url", image_url: { url: url(b) } }));
  await assert.rejects(
    encodeChat(messages([{ role: "user", content: [...parts, { type: "text", text: "x" }] }]), s),
    /broken image/,
  );
  assert.equal(aborted.length, 3);
});

Deno.test('an image at detail "low" is scaled to 512 pixels on its longest side, as OpenAI\'s low detail', async () => {
  const s = service(tokenizers.full);
  const wide = `data:image/png;base64,${
    (await Deno.readFile(fixture("golden/images/wide_1500x900.png"))).toBase64()
  }`;
  const count = async (detail?: string) => {
    const { ids } = await encodeChat(
      messages([{ role: "user", content: [{ type: "image_url", image_url: { url: wide, detail } }] }]),
      s,
    );
    return ids.filter((id) => id === s.images.tokens.img).length;
  };
  // mistral_common's scaling: 1500x900 to 512x307 (32x20 patches), and at 1024 to 1024x614 (64x39).
  assert.equal(await count("low"), 32 * 20);
  assert.equal(await count("high"), 64 * 39);
  assert.equal(await count(), 64 * 39);
});
