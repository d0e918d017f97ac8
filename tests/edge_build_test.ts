/**
 * `deno task build`: the edge bundle builds within Workers' size limit, loads in Deno without a file system for
 * the WASM, and answers clear errors when it is not configured or no GPU host answers. Also the DNS-over-HTTPS
 * resolver that image URL checks use where the runtime has no DNS API.
 */
import assert from "node:assert/strict";
import { dohResolver } from "../functions/images/resolve.ts";
import { buildBundle } from "./edge_helpers.ts";
import { DEAD_URL } from "./helpers.ts";

Deno.test("the edge bundle builds small enough for Workers and answers clear errors before it can serve", async () => {
  const bundle = await buildBundle();
  try {
    const names = bundle.files.map((f) => f.path.split("/").pop());
    assert.deepEqual(names, ["edge.js", "pixtral_wasm_bg.wasm"]);
    const gzip = bundle.files.reduce((n, f) => n + f.gzipBytes, 0);
    assert.ok(gzip < 3 * 2 ** 20, `${gzip} bytes compressed: over the Workers free plan's 3 MiB`);

    const { default: worker } = await import(`file://${bundle.dir}/edge.js`);
    const unconfigured: Response = await worker.fetch(new Request("http://edge.test/v1/models"), {
      PIXTRAL_GPU_HOSTS: "",
    });
    assert.equal(unconfigured.status, 500);
    const body = await unconfigured.json();
    assert.equal(body.error.code, "gateway_misconfigured");
    assert.match(body.error.message, /set PIXTRAL_GPU_HOSTS/);
    // Anthropic's clients get Anthropic's shape.
    const messages: Response = await worker.fetch(
      new Request("http://edge.test/v1/messages", { method: "POST", body: "{}" }),
      { PIXTRAL_GPU_HOSTS: "" },
    );
    assert.equal(messages.status, 500);
    const anthropic = await messages.json();
    assert.equal(anthropic.type, "error");
    assert.equal(anthropic.error.type, "api_error");
    assert.match(anthropic.error.message, /set PIXTRAL_GPU_HOSTS/);

    const env = { PIXTRAL_GPU_HOSTS: DEAD_URL, PIXTRAL_INTERNAL_SECRET: "x".repeat(20) };
    for (let attempt = 0; attempt < 2; attempt++) {
      const res: Response = await worker.fetch(new Request("http://edge.test/health"), env);
      assert.equal(res.status, 503);
      assert.equal(res.headers.get("retry-after"), "1");
      const { error } = await res.json();
      assert.equal(error.code, "engine_unavailable");
      assert.ok(error.message.startsWith("no GPU host is ready: GPU host 1 of 1: "), error.message);
      assert.ok(!error.message.includes(DEAD_URL), "the host's address stays in the logs");
    }
  } finally {
    await Deno.remove(bundle.dir, { recursive: true });
  }
});

Deno.test("DNS over HTTPS: A and AAAA answers, CNAME records dropped, a failing resolver gives no address", async () => {
  const asked: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const url = new URL(req.url);
    asked.push(
      `${url.searchParams.get("name")} ${url.searchParams.get("type")} ${req.headers.get("accept")}`,
    );
    if (url.searchParams.get("name") === "broken.test") return new Response("oops", { status: 500 });
    const answers = url.searchParams.get("type") === "A"
      ? [{ type: 5, data: "cdn.example." }, { type: 1, data: "10.1.2.3" }]
      : [{ type: 28, data: "fd00::1" }];
    return Response.json({ Status: 0, Answer: answers });
  });
  try {
    const resolve = dohResolver(`http://127.0.0.1:${server.addr.port}/dns-query`);
    assert.deepEqual(await resolve("images.test"), ["10.1.2.3", "fd00::1"]);
    assert.deepEqual(asked.sort(), [
      "images.test A application/dns-json",
      "images.test AAAA application/dns-json",
    ]);
    assert.deepEqual(await resolve("broken.test"), []);
  } finally {
    await server.shutdown();
  }
});
