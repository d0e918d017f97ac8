/**
 * Load benchmark of the HTTP API on the tiny model: requests/s, time to first token and inter-token latency at
 * 1, 8 and 32 concurrent streams, and the HTTP layer's own cost per streamed token, measured against calling the
 * engine directly with the same requests in the same process. Prints a markdown table.
 *
 *   deno run -A --unstable-no-legacy-abort bench/http_load.ts [--requests N] [--tokens N] [--model PATH]
 */
import { parseArgs } from "node:util";
import { serverConfig } from "../tests/api_helpers.ts";
import { startServer } from "../cli/serve.ts";
import { GREEDY } from "../runtime/engine/engine.ts";

const { values } = parseArgs({
  options: { requests: { type: "string" }, tokens: { type: "string" }, model: { type: "string" } },
});
const TOKENS = Number(values.tokens ?? 16);
const config = serverConfig();
config.model = { model: values.model ?? config.model.model, ctx: 8192 };
config.engine = { maxRunning: 64 };
const server = await startServer(config);
await server.ready;
const { url, service } = server;
const engine = service.engine!;
const body = JSON.stringify({
  model: service.model.id,
  messages: [{ role: "user", content: "Write a long story about a lighthouse keeper." }],
  max_tokens: TOKENS,
  temperature: 0,
  stream: true,
  // With log-probabilities every token gets its own event, even one that completes no character yet.
  logprobs: true,
});
const prompt = [
  ...(await (await fetch(`${url}/tokenize`, {
    method: "POST",
    body: JSON.stringify({
      messages: [{ role: "user", content: "Write a long story about a lighthouse keeper." }],
    }),
  })).json()).tokens,
];

interface Sample {
  ttft: number;
  gaps: number[];
  tokens: number;
}

async function viaHttp(): Promise<Sample> {
  const start = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, { method: "POST", body });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let ttft = 0, last = 0, tokens = 0, buffered = "";
  const gaps: number[] = [];
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += value;
    let end;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      if (!event.startsWith("data: {") || !event.includes('"logprob"')) continue;
      const now = performance.now();
      if (tokens === 0) ttft = now - start;
      else gaps.push(now - last);
      last = now;
      tokens++;
    }
  }
  return { ttft, gaps, tokens };
}

async function direct(): Promise<Sample> {
  const start = performance.now();
  let ttft = 0, last = 0, tokens = 0;
  const gaps: number[] = [];
  for await (
    const _ of engine.generate({
      ids: prompt,
      images: [],
      sampling: GREEDY,
      maxTokens: TOKENS,
      stopIds: [service.tokenizer.special("</s>")],
      topLogprobs: 0,
    })
  ) {
    const now = performance.now();
    if (tokens === 0) ttft = now - start;
    else gaps.push(now - last);
    last = now;
    tokens++;
  }
  return { ttft, gaps, tokens };
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

async function level(concurrency: number, run: () => Promise<Sample>) {
  const requests = Number(values.requests ?? Math.max(concurrency * 2, 4));
  let next = 0;
  const samples: Sample[] = [];
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next++ < requests) samples.push(await run());
  }));
  const seconds = (performance.now() - start) / 1000;
  const gaps = samples.flatMap((s) => s.gaps);
  return {
    rps: samples.length / seconds,
    tokensPerSecond: samples.reduce((n, s) => n + s.tokens, 0) / seconds,
    ttft50: percentile(samples.map((s) => s.ttft), 0.5),
    ttft99: percentile(samples.map((s) => s.ttft), 0.99),
    itl50: percentile(gaps, 0.5),
    itl99: percentile(gaps, 0.99),
  };
}

const rows = [
  "| streams | path | requests/s | tokens/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |",
  "| --- | --- | --- | --- | --- | --- | --- | --- |",
];
const f = (x: number) => x.toFixed(1);
for (const concurrency of [1, 8, 32]) {
  for (const [path, run] of [["HTTP", viaHttp], ["engine", direct]] as const) {
    const r = await level(concurrency, run);
    rows.push(
      `| ${concurrency} | ${path} | ${r.rps.toFixed(2)} | ${f(r.tokensPerSecond)} | ${f(r.ttft50)} | ${
        f(r.ttft99)
      } | ` +
        `${f(r.itl50)} | ${f(r.itl99)} |`,
    );
  }
}
console.log(rows.join("\n"));
await server.shutdown();
