/**
 * LoRA adapters served per request over HTTP (`pixtral serve --lora-module NAME=PATH`): a request whose `model`
 * names one gets the answer of the model merged with it; the model lists show them beside the model.
 */
import assert from "node:assert/strict";
import { startServer } from "../cli/serve.ts";
import { post, serverConfig, withServer } from "./api_helpers.ts";

const PLAIN = new URL("./fixtures/lora/plain", import.meta.url).pathname;
const model = (extra: Record<string, unknown>) => ({ model: { ...serverConfig().model, ...extra } });

async function answers(url: string, name: string) {
  const chat = await post(`${url}/v1/chat/completions`, {
    model: name,
    messages: [{ role: "user", content: "Describe a cat." }],
    temperature: 0,
    max_tokens: 8,
  });
  const completion = await post(`${url}/v1/completions`, {
    model: name,
    prompt: "Once upon a time",
    temperature: 0,
    max_tokens: 8,
  });
  assert.equal(chat.status, 200, JSON.stringify(chat.json));
  assert.equal(completion.status, 200, JSON.stringify(completion.json));
  return { chat: chat.json, completion: completion.json };
}

Deno.test("serve --lora-module: requests naming the adapter get the merged model's answers, others the model's", async () => {
  let mergedAnswers: Awaited<ReturnType<typeof answers>> | undefined;
  await withServer(
    model({ lora: [PLAIN] }),
    async ({ url }) => {
      mergedAnswers = await answers(url, "mistral");
    },
  );
  let baseAnswers: Awaited<ReturnType<typeof answers>> | undefined;
  await withServer({}, async ({ url }) => {
    baseAnswers = await answers(url, "mistral");
  });

  await withServer(model({ loraModules: [`ft=${PLAIN}`] }), async ({ url }) => {
    const models = await (await fetch(`${url}/v1/models`)).json();
    assert.deepEqual(models.data.map((m: { id: string }) => m.id), ["mistral", "ft"]);
    assert.equal(models.data[1].parent, "mistral");
    assert.equal(models.data[1].type, "fine-tuned");
    assert.equal((await (await fetch(`${url}/v1/models/ft`)).json()).root, "mistral");

    const [adapted, base] = [await answers(url, "ft"), await answers(url, "mistral")];
    assert.equal(adapted.chat.model, "ft");
    assert.equal(adapted.completion.model, "ft");
    assert.equal(base.chat.model, "mistral");
    const text = (a: typeof adapted) => [a.chat.choices[0].message.content, a.completion.choices[0].text];
    assert.deepEqual(text(adapted), text(mergedAnswers!));
    assert.deepEqual(text(base), text(baseAnswers!));
    assert.notDeepEqual(text(adapted), text(base));

    // Anthropic's and the Responses API name it too.
    const messages = await post(`${url}/v1/messages`, {
      model: "ft",
      max_tokens: 8,
      temperature: 0,
      messages: [{ role: "user", content: "Describe a cat." }],
    });
    assert.equal(messages.status, 200, JSON.stringify(messages.json));
    assert.equal(messages.json.model, "ft");
    assert.equal(messages.json.content[0].text, adapted.chat.choices[0].message.content);
    const responses = await post(`${url}/v1/responses`, {
      model: "ft",
      max_output_tokens: 8,
      temperature: 0,
      input: "Describe a cat.",
    });
    assert.equal(responses.status, 200, JSON.stringify(responses.json));
    assert.equal(responses.json.model, "ft");

    // Ollama's API lists it and answers under its name too.
    const tags = await (await fetch(`${url}/api/tags`)).json();
    assert.deepEqual(tags.models.map((m: { name: string }) => m.name), ["mistral:latest", "ft:latest"]);
    assert.equal(tags.models[1].details.parent_model, "mistral:latest");
    const ollama = await post(`${url}/api/chat`, {
      model: "FT:latest", // Ollama matches names in any case
      messages: [{ role: "user", content: "Describe a cat." }],
      stream: false,
      options: { temperature: 0, num_predict: 8 },
    });
    assert.equal(ollama.status, 200, JSON.stringify(ollama.json));
    assert.equal(ollama.json.message.content, adapted.chat.choices[0].message.content);

    const unknown = await post(`${url}/v1/chat/completions`, {
      model: "other",
      messages: [{ role: "user", content: "hi" }],
    });
    assert.equal(unknown.status, 404);
    assert.match(unknown.json.error.message, /LoRA adapters \["ft"\]/);
    // Three chats, a completion, a message and a response named it.
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /^pixtral_lora_requests_total\{adapter="ft"\} 5$/m);
  });
});

Deno.test("serve --lora-module: refused at start-up without a base model, under a taken name, or when only a merge applies it", async () => {
  const fails = async (extra: Record<string, unknown>, why: RegExp) => {
    const server = await startServer(serverConfig(model(extra))).catch((err) => err as Error);
    if (server instanceof Error) return assert.match(server.message, why);
    try {
      await server.ready;
      assert.match(server.service.failure ?? "", why);
    } finally {
      await server.shutdown();
    }
  };
  // Without --model, the base model is the one a PEFT adapter names; mistral-finetune's name none.
  await fails({ model: undefined, loraModules: [`ft=${PLAIN}/../mistral`] }, /does not name its base model/);
  await fails({ loraModules: [`mistral=${PLAIN}`] }, /the model itself is served under that name/);
  await fails({ loraModules: [`a=${PLAIN}`, `a=${PLAIN}`] }, /two adapters are named "a"/);
  await fails({ loraModules: [`p=${PLAIN}/../peft`] }, /replaces whole tensors.*--lora/);
});
