/**
 * Image preprocessing speed: encoded bytes in, normalized float32 [3, H, W] out, one thread, against Pillow,
 * OpenCV and mistral_common in a Python subprocess that times itself (bench/images_peers.py, Debian's
 * python3-pil and python3-opencv) and sharp (native libvips) in this process. Prints a table of the best
 * of N runs in milliseconds of CPU time (user + system; for these single-threaded pipelines it equals wall
 * time on an idle machine, and other work on a shared machine disturbs it far less) and the ratio to Pillow.
 *
 * The patcher and the peers take turns for several rounds, and each keeps its best round.
 *
 *   deno task bench:images [--runs N] [--rounds R]
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { CLIP_MEAN, CLIP_STD, preprocessImage, readImageHeader } from "../runtime/images/preprocess.ts";
import { loadWasm } from "../runtime/wasm.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: { runs: { type: "string", default: "5" }, rounds: { type: "string", default: "3" } },
});
const runs = Number(flags.runs);
const rounds = Number(flags.rounds);
const PEERS = new URL("./images_peers.py", import.meta.url).pathname;
const PYTHON = "/usr/bin/python3";

async function time(fn: () => Promise<unknown>): Promise<number> {
  await fn(); // warm-up: V8 tiers the WASM up on first use
  await fn();
  const times = [];
  for (let i = 0; i < runs; i++) {
    const start = process.cpuUsage();
    await fn();
    const used = process.cpuUsage(start);
    times.push((used.user + used.system) / 1000);
  }
  return Math.min(...times);
}

async function python(args: string[]): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command(PYTHON, { args: [PEERS, ...args] }).output();
  if (code !== 0) throw new Error(`${PEERS} ${args[0]} failed: ${new TextDecoder().decode(stderr)}`);
  return new TextDecoder().decode(stdout);
}

/** sharp (libvips) doing the same: white background, cubic resize to the mistral grid, normalize in JS. */
async function sharpPipeline(): Promise<((bytes: Uint8Array) => Promise<Float32Array>) | undefined> {
  try {
    const sharp = (await import("sharp")).default;
    sharp.concurrency(1);
    sharp.cache(false);
    return async (bytes) => {
      const { width, height } = await readImageHeader(bytes);
      const [w, h] = targetSize(width, height);
      const rgb = await sharp(bytes).flatten({ background: "#ffffff" }).resize(w, h, {
        kernel: "cubic",
        fit: "fill",
      })
        .raw().toBuffer();
      const out = new Float32Array(3 * w * h);
      for (let c = 0; c < 3; c++) {
        const scale = 1 / (255 * CLIP_STD[c]), bias = -CLIP_MEAN[c] / CLIP_STD[c];
        for (let i = 0; i < w * h; i++) out[c * w * h + i] = rgb[i * 3 + c] * scale + bias;
      }
      return out;
    };
  } catch (err) {
    console.error(`sharp unavailable: ${(err as Error).message}`);
    return undefined;
  }
}

function targetSize(width: number, height: number): [number, number] {
  const ratio = Math.max(width / 1024, height / 1024);
  const round = (v: number) => (ratio > 1 ? Math.round(v / ratio) : v);
  return [Math.ceil(round(width) / 16) * 16, Math.ceil(round(height) / 16) * 16];
}

const dir = await Deno.makeTempDir({ prefix: "pixtral-images-bench-" });
try {
  console.error("writing the benchmark images...");
  await python(["generate", dir]);
  const files = ["photo_4000x3000.jpg", "photo_2048x1536.jpg", "photo_1024x768.jpg", "rgba_1000x1000.png"]
    .map((name) => `${dir}/${name}`);
  await loadWasm();
  const sharp = await sharpPipeline();
  type Row = { mistral: number; hf: number; f16: number; sharp: number };
  type Peers = { pillow: number; opencv: number; mistral_common: number };
  const ours = new Map<string, Row>();
  const peers = new Map<string, Peers>();
  const best = <T extends Record<string, number>>(old: T | undefined, now: T): T =>
    old ? Object.fromEntries(Object.entries(now).map(([k, v]) => [k, Math.min(v, old[k])])) as T : now;
  for (let round = 1; round <= rounds; round++) {
    for (const file of files) {
      console.error(`round ${round}/${rounds}: timing ${file.slice(dir.length + 1)} (patcher, sharp)...`);
      const bytes = await Deno.readFile(file);
      ours.set(
        file,
        best(ours.get(file), {
          mistral: await time(() => preprocessImage(bytes)),
          hf: await time(() => preprocessImage(bytes, { resize: "hf" })),
          f16: await time(() => preprocessImage(bytes, { dtype: "f16" })),
          sharp: sharp ? await time(() => sharp(bytes)) : NaN,
        }),
      );
    }
    console.error(`round ${round}/${rounds}: timing the Python peers...`);
    for (const line of (await python(["time", String(runs), ...files])).trim().split("\n")) {
      const { file, pillow, opencv, mistral_common } = JSON.parse(line);
      peers.set(file, best(peers.get(file), { pillow, opencv, mistral_common }));
    }
  }
  const ms = (v: number) => (Number.isNaN(v) ? "n/a" : v.toFixed(1));
  console.log(`best of ${runs} runs x ${rounds} rounds, CPU ms; ratio: ours / Pillow (below 1: faster)\n`);
  console.log(
    "| image | ours (mistral) | ours (hf) | ours (mistral, f16) | Pillow (HF path) | OpenCV | mistral_common " +
      "| sharp | ratio mistral | ratio hf |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const file of files) {
    const row = ours.get(file)!, peer = peers.get(file)!;
    const cells = [row.mistral, row.hf, row.f16, peer.pillow, peer.opencv, peer.mistral_common, row.sharp]
      .map(ms);
    const ratios = [row.mistral / peer.pillow, row.hf / peer.pillow].map((r) => r.toFixed(2));
    console.log(`| ${file.slice(dir.length + 1)} | ${[...cells, ...ratios].join(" | ")} |`);
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
