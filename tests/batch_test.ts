/** `pixtral batch`: OpenAI's batch file format through the model, in order, with the server's answers. */
import assert from "node:assert/strict";
import { runBatch } from "../cli/batch.ts";
import { dataUrl, post, TINY, withServer } from "./api_helpers.ts";
import { pixtral } from "./helpers.ts";

const chat = (content: unknown, maxTokens: number) => ({
  messages: [{ role: "user", content }],
  max_tokens: maxTokens,
  temperature: 0,
});

Deno.test("pixtral batch: each line's answer is the server's, in the input's order; bad lines are named", async () => {
  const image = await dataUrl("golden/images/gradient_64x48.png");
  const bodies = {
    text: chat("Hello there", 6),
    image: chat([{ type: "image_url", image_url: { url: image } }, { type: "text", text: "What is it?" }], 4),
    completion: { prompt: "Once upon", max_tokens: 3, temperature: 0 },
  };
  const lines = [
    { custom_id: "text", method: "POST", url: "/v1/chat/completions", body: bodies.text },
    { custom_id: "image", method: "POST", url: "/v1/chat/completions", body: bodies.image },
    { custom_id: "completion", method: "POST", url: "/v1/completions", body: bodies.completion },
    "{not json",
    { custom_id: "embed", method: "POST", url: "/v1/embeddings", body: {} },
    {
      custom_id: "bad",
      method: "POST",
      url: "/v1/chat/completions",
      body: { ...bodies.text, max_tokens: -1 },
    },
    { custom_id: "text", method: "POST", url: "/v1/chat/completions", body: bodies.text },
    {
      custom_id: "stream",
      method: "POST",
      url: "/v1/chat/completions",
      body: { ...bodies.text, stream: true },
    },
  ];
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/in.jsonl`,
      lines.map((l) => typeof l === "string" ? l : JSON.stringify(l)).join("\n") + "\n\n",
    );
    const { code, stderr } = await pixtral([
      "batch",
      "--model",
      TINY,
      "--input",
      `${dir}/in.jsonl`,
      "--output",
      `${dir}/out.jsonl`,
    ]).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    const results = (await Deno.readTextFile(`${dir}/out.jsonl`)).trimEnd().split("\n").map((l) =>
      JSON.parse(l)
    );
    assert.deepEqual(
      results.map((r) => [r.custom_id, r.response?.status_code ?? r.error.code]),
      [
        ["text", 200],
        ["image", 200],
        ["completion", 200],
        [null, "invalid_json"],
        ["embed", "invalid_url"],
        ["bad", 400],
        ["text", "duplicate_custom_id"],
        ["stream", "invalid_request"],
      ],
    );
    assert.ok(results.every((r) => /^batch_req_[0-9a-f]{32}$/.test(r.id)));
    assert.match(results[3].error.message, /^line 4: /);
    assert.equal(results[5].response.body.error.param, "max_tokens");
    // What the server answers the same requests (greedy), over HTTP.
    await withServer({}, async ({ url }) => {
      for (
        const [i, [path, body]] of [["/v1/chat/completions", bodies.text], [
          "/v1/chat/completions",
          bodies.image,
        ], ["/v1/completions", bodies.completion]].entries()
      ) {
        const served = (await post(`${url}${path}`, body)).json;
        const batched = results[i].response.body;
        assert.deepEqual(batched.choices, served.choices);
        assert.deepEqual(batched.usage, served.usage);
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pixtral batch: flags that say how to listen, and missing files, are usage errors", async () => {
  const run = async (...args: string[]) => {
    const { code, stderr } = await pixtral(["batch", ...args]).output();
    return { code, stderr: new TextDecoder().decode(stderr) };
  };
  const port = await run("--input", "-", "--output", "-", "--port", "8080");
  assert.equal(port.code, 2);
  assert.match(port.stderr, /--port has no meaning for a batch/);
  const missing = await run("--output", "-");
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--input FILE is required/);
  const absent = await run("--input", "/nonexistent/in.jsonl", "--output", "-");
  assert.equal(absent.code, 2);
  assert.match(absent.stderr, /\/nonexistent\/in\.jsonl/);
});

Deno.test("runBatch: at most `concurrency` requests at once, results in the input's order whatever ends first", async () => {
  let running = 0, most = 0;
  const fetch = async (request: Request) => {
    const { n } = await request.json();
    running++;
    most = Math.max(most, running);
    // Later lines end first.
    await new Promise((resolve) => setTimeout(resolve, 40 - n));
    running--;
    return Response.json({ n });
  };
  async function* input() {
    for (let n = 0; n < 30; n++) {
      yield JSON.stringify({ custom_id: `r${n}`, method: "POST", url: "/v1/completions", body: { n } });
    }
  }
  const written: string[] = [];
  const summary = await runBatch(fetch, input(), 4, (result) => {
    written.push(result.custom_id!);
  });
  assert.deepEqual(written, Array.from({ length: 30 }, (_, n) => `r${n}`));
  assert.equal(most, 4);
  assert.deepEqual(summary, { 200: 30 });
});
