/**
 * `pixtral batch`: requests in OpenAI's batch file format run through the model without a server, as vLLM's
 * run_batch runs them: each line `{"custom_id", "method": "POST", "url", "body"}`, each result line `{"id",
 * "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`. The requests go through the same
 * routes as over HTTP (startServer without a port), many at once, so the engine batches them on the GPU.
 */
import { lines } from "../runtime/lines.ts";
import { Progress } from "../runtime/progress.ts";
import { parseFlags, positiveInt, UsageError } from "./args.ts";
import { SERVE_FLAGS, serverConfig, startServer, usage as serveUsage } from "./serve.ts";

/** serve's flags that say how to listen, which a batch does not. */
const LISTENING = ["port", "host", "api-key", "api-key-file", "cors", "internal-secret", "grace"] as const;

export const usage = `pixtral batch --input FILE --output FILE [flags]

Runs requests in OpenAI's batch file format through the model, as vLLM's run_batch does: each input line is
{"custom_id": ID, "method": "POST", "url": URL, "body": REQUEST} with URL /v1/chat/completions, /v1/completions
or /v1/responses; each output line, in the input's order, is {"id", "custom_id", "response": {"status_code",
"request_id", "body"}, "error"}, the body what the server would answer (an error object for a refused request).
A line that cannot be run (not JSON, another URL, a stream, a custom_id already used) gets "response": null and
"error": {"code", "message"}. Requests run together and are batched on the GPU.

  --input FILE              the requests, one JSON object a line (- for stdin)
  --output FILE             the results (- for stdout)
  --concurrency N           requests in flight at once (default 64)

The model, images and defaults take serve's flags:
${
  serveUsage.split("\n").filter((line) =>
    line.startsWith("  --") && !LISTENING.some((f) => line.startsWith(`  --${f} `))
  ).join("\n")
}`;

const URLS = new Set(["/v1/chat/completions", "/v1/completions", "/v1/responses"]);

interface Line {
  custom_id: string;
  url: string;
  body: Record<string, unknown>;
}

/** A result line. */
interface Result {
  id: string;
  custom_id: string | null;
  response: { status_code: number; request_id: string; body: unknown } | null;
  error: { code: string; message: string } | null;
}

/** Why a line cannot be run, or the request it holds. */
function parseLine(text: string, seen: Map<string, number>, number: number): Line | Result {
  const fail = (code: string, message: string, customId: string | null = null): Result => ({
    id: resultId(),
    custom_id: customId,
    response: null,
    error: { code, message: `line ${number}: ${message}` },
  });
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return fail("invalid_json", (err as Error).message);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return fail("invalid_request", "a line must be a JSON object");
  }
  const { custom_id: id, method, url, body } = value as Record<string, unknown>;
  if (typeof id !== "string" || !id) return fail("invalid_request", "custom_id must be a non-empty string");
  const earlier = seen.get(id);
  if (earlier !== undefined) return fail("duplicate_custom_id", `custom_id "${id}" is line ${earlier}'s`, id);
  seen.set(id, number);
  if (method !== "POST") return fail("invalid_request", 'method must be "POST"', id);
  if (typeof url !== "string" || !URLS.has(url)) {
    return fail("invalid_url", `url must be one of ${[...URLS].join(", ")}`, id);
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return fail("invalid_request", "body must be a JSON object", id);
  }
  if ((body as Record<string, unknown>).stream === true) {
    return fail("invalid_request", "stream is not supported in a batch: each result is one JSON body", id);
  }
  return { custom_id: id, url, body: body as Record<string, unknown> };
}

const resultId = () => `batch_req_${crypto.randomUUID().replaceAll("-", "")}`;

export async function batch(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, {
    ...SERVE_FLAGS,
    input: { type: "string" },
    output: { type: "string" },
    concurrency: { type: "string" },
  });
  const listening = LISTENING.find((flag) => flags[flag] !== undefined);
  if (listening) throw new UsageError(`--${listening} has no meaning for a batch, which opens no port`);
  if (flags.input === undefined) throw new UsageError("--input FILE is required (- for stdin)");
  if (flags.output === undefined) throw new UsageError("--output FILE is required (- for stdout)");
  const concurrency = positiveInt("--concurrency", flags.concurrency) ?? 64;
  const { input, output, concurrency: _, ...serveFlags } = flags;
  const config = await serverConfig(serveFlags);
  // Checked before the model loads: a typo should not cost a load.
  const source = input === "-" ? Deno.stdin.readable : (await openFile(input, { read: true })).readable;
  const sink = output === "-"
    ? Deno.stdout.writable
    : (await openFile(output, { write: true, create: true, truncate: true })).writable;
  const server = await startServer({ ...config, apiKeys: [] }, false);
  const writer = sink.getWriter();
  try {
    await server.ready;
    if (server.service.failure) throw new Error(`the model failed to load: ${server.service.failure}`);
    const summary = await runBatch(server.fetch, lines(source), concurrency, async (result) => {
      await writer.write(new TextEncoder().encode(JSON.stringify(result) + "\n"));
    });
    const statuses = Object.entries(summary).map(([status, n]) => `${n} ${status}`).join(", ");
    console.error(`pixtral batch: ${statuses || "no requests"}`);
  } finally {
    await writer.close().catch(() => {});
    await server.shutdown();
  }
}

async function openFile(path: string, options: Deno.OpenOptions): Promise<Deno.FsFile> {
  try {
    return await Deno.open(path, options);
  } catch (err) {
    throw new UsageError(`${path}: ${(err as Error).message}`);
  }
}

/**
 * Runs every line through `fetch`, at most `concurrency` at once, and hands the results to `write` in the input's
 * order. Returns how many results had each status (or error code).
 */
export async function runBatch(
  fetch: (request: Request) => Promise<Response>,
  lines: AsyncIterable<string>,
  concurrency: number,
  write: (result: Result) => void | Promise<void>,
): Promise<Record<string, number>> {
  const summary: Record<string, number> = {};
  const progress = new Progress({ label: "batch", unit: "items" });
  const seen = new Map<string, number>();
  const finished = new Map<number, Result>();
  const running = new Set<Promise<void>>();
  let next = 0, count = 0, number = 0;
  const flush = async () => {
    for (let result; (result = finished.get(next)) !== undefined; next++) {
      finished.delete(next);
      await write(result);
      const key = result.response ? String(result.response.status_code) : result.error!.code;
      summary[key] = (summary[key] ?? 0) + 1;
      progress.add(1);
    }
  };
  try {
    for await (const text of lines) {
      number++;
      if (!text.trim()) continue;
      const index = count++;
      progress.setTotal(count);
      const line = parseLine(text, seen, number);
      const task = ("error" in line ? Promise.resolve(line) : answer(fetch, line)).then((result) => {
        finished.set(index, result);
      });
      const done = task.then(flush).finally(() => running.delete(done));
      running.add(done);
      if (running.size >= concurrency) await Promise.race(running);
    }
    await Promise.all(running);
    progress.finish();
  } catch (err) {
    progress.fail(err);
    throw err;
  }
  return summary;
}

/** One request through the routes, its answer as a result line. */
async function answer(fetch: (request: Request) => Promise<Response>, line: Line): Promise<Result> {
  const response = await fetch(
    new Request(`http://batch${line.url}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(line.body),
    }),
  );
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return {
    id: resultId(),
    custom_id: line.custom_id,
    response: {
      status_code: response.status,
      request_id: response.headers.get("x-request-id") ?? (body as { id?: string })?.id ?? resultId(),
      body,
    },
    error: null,
  };
}
