/**
 * Encode speed on single pieces of 1 KB to 1 MB (letters with no space, one pre-tokenized piece each): random
 * a-z and one letter repeated, MB/s per length. The merge of a long piece goes through a bucket queue by rank,
 * so MB/s should stay roughly flat as the piece grows; tiktoken's loop (npm `tiktoken`, Rust in WASM) rescans
 * the piece for every merge, quadratic, so it runs only up to 10 KB and on a tenth of the bytes. No piece cache
 * holds pieces this long, so rounds repeat the same text; the best of ROUNDS is kept. Ids must equal tiktoken's
 * where it runs.
 *
 *   deno run --allow-read --allow-env bench/tokenizer_long_pieces.ts [--rounds 3]
 */
import { parseArgs } from "node:util";
import { loadTokenizer } from "../runtime/tokenizer/mod.ts";
import { readTekkenRanks, tiktokenPeer } from "../tests/tokenizer_peers.ts";
import { printTable } from "./table.ts";

const { values: flags } = parseArgs({ options: { rounds: { type: "string", default: "3" } } });
const ROUNDS = Number(flags.rounds);
const JSON_PATH = new URL("../../shared/fixtures/tiny-pixtral/tekken-full.json", import.meta.url).pathname;
const LENGTHS = [1e3, 1e4, 1e5, 1e6];
const PEER_MAX = 1e4;
/** Bytes encoded per timing, made of several pieces at the shorter lengths. */
const BYTES_PER_RUN = 1e6;
const PEER_BYTES_PER_RUN = 1e5;

const ours = await loadTokenizer(JSON_PATH, { cache: false });
const peer = tiktokenPeer(await readTekkenRanks(JSON_PATH));

let seed = 1;
function randomLetters(n: number): string {
  const codes = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    codes[i] = 97 + (seed >>> 16) % 26;
  }
  return new TextDecoder().decode(codes);
}

const KINDS: [string, (n: number, i: number) => string][] = [
  ["random a-z", (n) => randomLetters(n)],
  // Lengths differ by one per piece so each is new to the tokenizer.
  ["'a' repeated", (n, i) => "a".repeat(n - i)],
];

function mbps(encode: (text: string) => ArrayLike<number>, text: string): number {
  let best = Infinity;
  for (let round = 0; round < ROUNDS; round++) {
    const start = performance.now();
    encode(text);
    best = Math.min(best, (performance.now() - start) / 1000);
  }
  return text.length / 1e6 / best;
}

/** `bytes` worth of pieces of `length` letters, separated by a digit (a piece of its own). */
function text(make: (n: number, i: number) => string, length: number, bytes: number): string {
  return Array.from({ length: Math.max(1, Math.round(bytes / length)) }, (_, i) => make(length, i)).join("0");
}

const rows: string[][] = [];
for (const [kind, make] of KINDS) {
  for (const length of LENGTHS) {
    const ourSpeed = mbps((t) => ours.encode(t), text(make, length, BYTES_PER_RUN));
    let peerSpeed = NaN;
    if (length <= PEER_MAX) {
      const small = text(make, length, PEER_BYTES_PER_RUN);
      const want = Array.from(peer.encode(small));
      const got = ours.encode(small);
      if (got.length !== want.length || want.some((id, i) => got[i] !== id)) {
        throw new Error(`${peer.name} gives other ids than ours on ${kind} x ${length}`);
      }
      peerSpeed = mbps((t) => peer.encode(t), small);
    }
    rows.push([
      kind,
      length >= 1e6 ? `${length / 1e6} MB` : `${length / 1e3} KB`,
      ourSpeed.toFixed(2),
      Number.isNaN(peerSpeed) ? "(quadratic)" : peerSpeed.toFixed(2),
      Number.isNaN(peerSpeed) ? "" : `${(ourSpeed / peerSpeed).toFixed(1)}x`,
    ]);
  }
}

printTable(["piece", "length", "encode ours, MB/s", `encode ${peer.name}, MB/s`, "ours / tiktoken"], rows);
