/**
 * One cold start, run as its own process by tokenizer_report.ts: load a tokenizer, encode one short text, and
 * print how long that took since the process started and how much memory it added.
 *
 *   deno run -A bench/tokenizer_start.ts (ours|tiktoken|microsoft) TEKKEN_JSON
 */
const [which, path] = Deno.args;
const before = Deno.memoryUsage();
const loadStart = performance.now();
let ids: ArrayLike<number>;
if (which === "ours") {
  const { loadTokenizer } = await import("../runtime/tokenizer/mod.ts");
  ids = (await loadTokenizer(path)).encode("Hello, world!");
} else {
  const { microsoftPeer, readTekkenRanks, tiktokenPeer } = await import("../tests/tokenizer_peers.ts");
  const ranks = await readTekkenRanks(path);
  ids = (which === "tiktoken" ? tiktokenPeer(ranks) : microsoftPeer(ranks)).encode("Hello, world!");
}
const ready = performance.now(); // milliseconds since the process started
const after = Deno.memoryUsage();
console.log(JSON.stringify({
  readyMs: ready,
  loadMs: ready - loadStart,
  rssMB: (after.rss - before.rss) / 2 ** 20,
  heapMB: (after.heapUsed + after.external - before.heapUsed - before.external) / 2 ** 20,
  ids: Array.from(ids),
}));
