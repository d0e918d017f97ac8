/**
 * `deno task bench:edge`: the edge bundle's size and cold start against Cloudflare Workers' limits.
 *
 * Cold start is the time from starting a fresh runtime process (workerd, or `deno serve`) to the first response
 * of the gateway, which at its first request asks the GPU host for its status and downloads and loads the
 * tokenizer. The GPU host here is a stand-in on loopback serving Pixtral 12B's real tokenizer (the full Tekken
 * vocabulary of the fixtures, 131 072 ids), so the tokenizer is full size. Each runtime is also timed with an
 * empty worker (a module answering "ok"): the difference is what the gateway itself costs.
 *
 *   deno task bench:edge [ROUNDS]
 */
import { WIRE_MAGIC } from "../runtime/engine/wire.ts";
import { Tokenizer } from "../runtime/tokenizer/tokenizer.ts";
import { loadWasm } from "../runtime/wasm.ts";
import { buildBundle, firstResponse, workerdGateway } from "../tests/edge_helpers.ts";
import { fixture } from "../tests/helpers.ts";

const ROUNDS = Number(Deno.args[0] ?? 5);
const SECRET = "bench-secret-0123456789";
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (x: number) => x.toFixed(0).padStart(6);

console.log("building the bundle...");
const bundle = await buildBundle();
await Deno.writeTextFile(`${bundle.dir}/empty.js`, `export default { fetch: () => new Response("ok") };\n`);

console.log("building the full Tekken tokenizer (Pixtral 12B's vocabulary)...");
await loadWasm();
const json = await Deno.readFile(fixture("tekken-full.json"));
let started = performance.now();
const full = await Tokenizer.fromTekkenJson(json);
const parseMs = performance.now() - started;
const blob = new Uint8Array(full.toCache());
started = performance.now();
(await Tokenizer.fromCache(blob)).free();
const fromCacheMs = performance.now() - started;
const sha256 = [...new Uint8Array(await crypto.subtle.digest("SHA-256", blob))]
  .map((b) => b.toString(16).padStart(2, "0")).join("");
const wasmBytes = await Deno.readFile(new URL("../wasm/pkg/pixtral_wasm_bg.wasm", import.meta.url));
started = performance.now();
await WebAssembly.compile(wasmBytes);
const compileMs = performance.now() - started;

const status = {
  wire: WIRE_MAGIC,
  ready: true,
  model: { id: "pixtral-12b", aliases: [], created: 0, demo: false, description: "stand-in for the bench" },
  contextLength: 131072,
  stats: { waiting: 0, running: 0, kvUsage: 0, kvBlocks: 8192, kvBlocksUsed: 0 },
  vocabSize: full.vocabSize,
  images: {
    enabled: true,
    maxImages: 8,
    maxBytes: 10485760,
    maxPixels: 50000000,
    fetchUrls: true,
    timeoutMs: 10000,
    maxRedirects: 3,
    resize: "mistral",
    maxImageSize: 1024,
    patchSize: 16,
    tokens: { img: 10, imgBreak: 12, imgEnd: 13 },
  },
  defaults: { temperature: 0.7, topP: 1 },
  tokenizer: sha256,
};
const host = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
  if (req.headers.get("authorization") !== `Bearer ${SECRET}`) return new Response("no", { status: 401 });
  const path = new URL(req.url).pathname;
  if (path === "/internal/v1/status") return Response.json(status);
  if (path === "/internal/v1/tokenizer") return new Response(blob);
  return new Response("not found", { status: 404 });
});
const env = {
  PIXTRAL_GPU_HOSTS: `http://127.0.0.1:${host.addr.port}`,
  PIXTRAL_INTERNAL_SECRET: SECRET,
};

type Runtime = { url: string; started: number; stop(): Promise<void> };
type Start = () => Promise<Runtime>;

/** A module served by `deno serve` in a child process, as Deno Deploy runs an edge bundle. */
function spawnServe(module: string, env: Record<string, string>): Promise<Runtime> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  const started = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...["serve", "--unstable-no-legacy-abort", "--allow-net", "--allow-env", "--allow-read"],
      ...["--host", "127.0.0.1", "--port", String(port), module],
    ],
    env,
    stdout: "null",
    stderr: "null",
  }).spawn();
  return Promise.resolve({
    url: `http://127.0.0.1:${port}`,
    started,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
    },
  });
}
async function coldStart(start: Start): Promise<number> {
  const runtime = await start();
  try {
    const res = await firstResponse(`${runtime.url}/health`);
    const elapsed = performance.now() - runtime.started;
    if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
    await res.body?.cancel();
    return elapsed;
  } finally {
    await runtime.stop();
  }
}

const runtimes: [string, Start, Start][] = [
  ["workerd", () => workerdGateway(bundle, {}, "empty.js"), () => workerdGateway(bundle, env)],
  [
    "deno serve",
    () => spawnServe(`${bundle.dir}/empty.js`, {}),
    () => spawnServe(`${bundle.dir}/edge.js`, env),
  ],
];
const rows: string[] = [];
for (const [name, empty, gateway] of runtimes) {
  const times = { empty: [] as number[], gateway: [] as number[] };
  for (let round = 0; round < ROUNDS; round++) {
    times.empty.push(await coldStart(empty));
    times.gateway.push(await coldStart(gateway));
    console.log(`${name} round ${round + 1}/${ROUNDS}`);
  }
  const [e, g] = [median(times.empty), median(times.gateway)];
  rows.push(
    `| ${name.padEnd(10)} | ${ms(e)} | ${ms(g)} | ${ms(g - e)} | ${(g / e).toFixed(2).padStart(5)} |`,
  );
}
await host.shutdown();
await Deno.remove(bundle.dir, { recursive: true });

const kib = (n: number) => `${(n / 1024).toFixed(0)} KiB`;
console.log(`
Bundle (dist/, gzip as Workers count it; limit 3 MiB free, 10 MiB paid):
${
  bundle.files.map((f) => `  ${f.path.split("/").pop()}: ${kib(f.bytes)}, gzip ${kib(f.gzipBytes)}`).join(
    "\n",
  )
}
  total gzip: ${kib(bundle.files.reduce((n, f) => n + f.gzipBytes, 0))}

In-process costs (Deno, this machine):
  WebAssembly.compile of the module:            ${compileMs.toFixed(1)} ms
  tokenizer from its binary form (${(blob.length / 2 ** 20).toFixed(1)} MiB):    ${fromCacheMs.toFixed(1)} ms
  (tokenizer from tekken.json instead:          ${parseMs.toFixed(0)} ms)

Cold start, process start to first response, median of ${ROUNDS} (ms):
| runtime    |  empty | gateway |  diff | ratio |
| ---------- | ------ | ------- | ----- | ----- |
${rows.join("\n")}`);
