/**
 * Tokenizer benchmark, printed as a table: encode and decode MB/s per kind of text (English, other Latin
 * languages, CJK, mixed scripts, source code) for this tokenizer and two peers loaded with the same Tekken ranks
 * and pattern in the same process (npm `tiktoken`, Rust tiktoken in WASM; `@microsoft/tiktokenizer`), then cold
 * start (process start to first encode) and memory, each in a fresh process.
 *
 * Every text is one the tokenizers have not seen: each run starts from a fresh tokenizer (ours rebuilt from its
 * cache bytes, Microsoft's with an empty piece cache; tiktoken keeps none). Runs alternate between tokenizers
 * and the best of ROUNDS is kept, which damps the noise of a shared machine. Ids must be identical.
 *
 *   deno task bench:tokenizer [--mb-per-kind 1] [--rounds 6]
 */
import { parseArgs } from "node:util";
import { loadTokenizer, Tokenizer } from "../runtime/tokenizer/mod.ts";
import { corpus, TEXT_KINDS } from "../tests/tokenizer_corpus.ts";
import { microsoftPeer, type Peer, readTekkenRanks, tiktokenPeer } from "../tests/tokenizer_peers.ts";
import { printTable } from "./table.ts";

const { values: flags } = parseArgs({
  options: { "mb-per-kind": { type: "string", default: "1" }, rounds: { type: "string", default: "6" } },
});
const BYTES = Number(flags["mb-per-kind"]) * 1e6;
const ROUNDS = Number(flags.rounds);
const JSON_PATH = new URL("../../shared/fixtures/tiny-pixtral/tekken-full.json", import.meta.url).pathname;
const utf8 = new TextEncoder();

const ours = await loadTokenizer(JSON_PATH, { cache: false });
const image = ours.toCache();
const ranks = await readTekkenRanks(JSON_PATH);
const peers: Peer[] = [tiktokenPeer(ranks), microsoftPeer(ranks)];
const names = ["ours", ...peers.map((p) => p.name)];

function time(f: () => void): number {
  const start = performance.now();
  f();
  return (performance.now() - start) / 1000;
}

const rows: string[][] = [];
const totals = { bytes: 0, encode: names.map(() => 0), decode: names.map(() => 0) };
for (const kind of TEXT_KINDS) {
  const text = await corpus(kind, BYTES);
  const bytes = utf8.encode(text).length;
  const want = Array.from(ours.encode(text));
  for (const peer of peers) {
    peer.reset();
    const got = peer.encode(text);
    if (got.length !== want.length || want.some((id, i) => got[i] !== id)) {
      throw new Error(
        `${peer.name} gives other ids than ours on ${kind}: the comparison would be meaningless`,
      );
    }
  }
  const encode = names.map(() => Infinity);
  const decode = names.map(() => Infinity);
  for (let round = 0; round < ROUNDS; round++) {
    const fresh = await Tokenizer.fromCache(image);
    encode[0] = Math.min(encode[0], time(() => fresh.encode(text)));
    decode[0] = Math.min(decode[0], time(() => fresh.decode(want)));
    fresh.free();
    peers.forEach((peer, i) => {
      peer.reset();
      encode[i + 1] = Math.min(encode[i + 1], time(() => peer.encode(text)));
      decode[i + 1] = Math.min(decode[i + 1], time(() => peer.decode(want)));
    });
  }
  totals.bytes += bytes;
  encode.forEach((t, i) => totals.encode[i] += t);
  decode.forEach((t, i) => totals.decode[i] += t);
  rows.push(row(kind, bytes, encode, decode));
}
rows.push(row("all", totals.bytes, totals.encode, totals.decode));

function row(kind: string, bytes: number, encode: number[], decode: number[]): string[] {
  const mbps = (t: number) => (bytes / 1e6 / t).toFixed(1);
  const fastestPeer = Math.min(...encode.slice(1));
  return [
    kind,
    (bytes / 1e6).toFixed(2),
    ...encode.map(mbps),
    `${(fastestPeer / encode[0]).toFixed(1)}x`,
    ...decode.map(mbps),
  ];
}

printTable(
  [
    "text",
    "MB",
    ...names.map((n) => `encode ${n}`),
    "ours / fastest peer",
    ...names.map((n) => `decode ${n}`),
  ],
  rows,
);

// Cold start and memory, each tokenizer in a fresh process. Ours reads the binary cache beside a copy of the
// JSON, recorded after the file settled as a model's tokenizer file has; "ours, no cache" parses the JSON.
const dir = await Deno.makeTempDir();
const copy = `${dir}/tekken.json`;
await Deno.copyFile(JSON_PATH, copy);
await new Promise((resolve) => setTimeout(resolve, 3100));
(await loadTokenizer(copy)).free();
const START = new URL("./tokenizer_start.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

async function coldStart(which: string, path: string) {
  const start = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--config", CONFIG, START, which, path],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  const wall = performance.now() - start;
  await reader.cancel();
  await child.status;
  return { wall, ...JSON.parse(out) };
}

const starts: string[][] = [];
for (
  const [label, which, path] of [
    ["ours (binary cache)", "ours", copy],
    ["ours (no cache: JSON)", "ours", JSON_PATH],
    [peers[0].name, "tiktoken", JSON_PATH],
    [peers[1].name, "microsoft", JSON_PATH],
  ]
) {
  const runs = [];
  for (let i = 0; i < ROUNDS; i++) runs.push(await coldStart(which, path));
  const best = runs.reduce((a, b) => (a.wall < b.wall ? a : b));
  starts.push([
    label,
    best.wall.toFixed(0),
    best.loadMs.toFixed(0),
    best.rssMB.toFixed(1),
    best.heapMB.toFixed(1),
  ]);
}
await Deno.remove(dir, { recursive: true });
console.log();
printTable([
  "tokenizer",
  "spawn to first encode, ms",
  "of which loading, ms",
  "RSS added, MB",
  "JS heap added, MB",
], starts);
