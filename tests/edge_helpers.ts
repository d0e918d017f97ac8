/**
 * The edge deployment on loopback: GPU hosts as `pixtral serve` child processes over tiny-pixtral, and the built
 * gateway bundle run by Deno (in this process) or by workerd (npm `workerd`, a child process).
 */
import workerd from "workerd";
import { buildEdge, WASM_NAME } from "../scripts/build_edge.ts";
import { TINY } from "./api_helpers.ts";
import { lines } from "./helpers.ts";

export const SECRET = "edge-test-secret-0123456789";
const CLI = new URL("../cli/pixtral.ts", import.meta.url).pathname;

export interface Host {
  url: string;
  /** Kills the process at once (SIGKILL): connections drop mid-stream, as when a machine dies. */
  kill(): Promise<void>;
}

/** A GPU host: `pixtral serve` over tiny-pixtral in f32, with the internal routes; resolves once it serves. */
export async function startHost(flags: string[] = []): Promise<Host> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...["run", "--unstable-no-legacy-abort", "-A", CLI, "serve", "--model", TINY, "--port", "0"],
      ...["--quant", "f32", "--vision-quant", "f32", "--activations", "f32", "--kv", "f32", "--ctx", "2048"],
      ...["--prefill-chunk", "64", ...flags],
    ],
    env: { PIXTRAL_INTERNAL_SECRET: SECRET, PIXTRAL_LOG_LEVEL: "info" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  child.stderr.pipeTo(new WritableStream()).catch(() => {});
  const log = lines(child.stdout);
  let url: string | undefined;
  // Read by hand: leaving a for-await loop would close the pipe.
  for (let next = await log.next(); !next.done; next = await log.next()) {
    const entry = JSON.parse(next.value);
    if (entry.msg === "listening") url = entry.url;
    if (entry.msg === "ready") break;
    if (entry.level === "error") throw new Error(`the GPU host failed to start: ${next.value}`);
  }
  if (!url) throw new Error("the GPU host exited before serving");
  // The rest of the log is read and dropped, so that the child never blocks on a full pipe.
  const drained = (async () => {
    while (!(await log.next()).done);
  })();
  let killed = false;
  return {
    url,
    async kill() {
      if (!killed) child.kill("SIGKILL");
      killed = true;
      await child.status;
      await drained;
    },
  };
}

export interface Bundle {
  dir: string;
  files: { path: string; bytes: number; gzipBytes: number }[];
}

export async function buildBundle(): Promise<Bundle> {
  const dir = await Deno.makeTempDir({ prefix: "pixtral-edge-" });
  const { files } = await buildEdge(dir);
  return { dir, files };
}

export interface Gateway {
  url: string;
  stop(): Promise<void>;
}

/** The bundle under Deno, in this process, with `env` as its bindings. */
export async function denoGateway(bundle: Bundle, env: Record<string, string>): Promise<Gateway> {
  const { default: worker } = await import(`file://${bundle.dir}/edge.js`);
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request) => worker.fetch(request, env),
  );
  return { url: `http://127.0.0.1:${server.addr.port}`, stop: () => server.shutdown() };
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** The binary npm `workerd` installed for this platform. */
export const WORKERD = (workerd as unknown as { default: string }).default;

/**
 * The bundle under workerd with `env` as text bindings; `started` is when the process was spawned. `main` names
 * another module of the bundle's folder to run instead of edge.js.
 */
export async function workerdGateway(
  bundle: Bundle,
  env: Record<string, string>,
  main = "edge.js",
): Promise<Gateway & { started: number }> {
  const port = freePort();
  const bindings = Object.entries(env).map(([name, text]) =>
    `(name = ${JSON.stringify(name)}, text = ${JSON.stringify(text)})`
  );
  const config = `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .gateway),
    # The default outbound network allows public addresses only; the GPU hosts here are on loopback.
    (name = "internet", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:${port}", http = (), service = "main")],
);
const gateway :Workerd.Worker = (
  modules = [
    (name = "${main}", esModule = embed "${main}"),
    (name = "${WASM_NAME}", wasm = embed "${WASM_NAME}"),
  ],
  compatibilityDate = "2025-09-01",
  bindings = [${bindings.join(", ")}],
);
`;
  await Deno.writeTextFile(`${bundle.dir}/workerd.capnp`, config);
  const started = performance.now();
  const child = new Deno.Command(WORKERD, {
    args: ["serve", `${bundle.dir}/workerd.capnp`],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = Promise.all([child.stdout, child.stderr].map((s) => new Response(s).text()));
  return {
    url: `http://127.0.0.1:${port}`,
    started,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      const [stdout, stderr] = await output;
      if (/Uncaught|Error:/.test(stderr)) console.error(`workerd: ${stdout}\n${stderr}`);
    },
  };
}

/** Polls `url` until it answers (any status): how long a fresh gateway takes to its first response. */
export async function firstResponse(url: string, timeoutMs = 30_000): Promise<Response> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    try {
      return await fetch(url);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}
