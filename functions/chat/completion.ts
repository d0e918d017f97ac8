/**
 * Running a prepared chat on the engine and shaping the result as OpenAI's chat completion: one JSON response,
 * or server-sent events in OpenAI's chunk format ending with `data: [DONE]`. Several choices (`n`) run
 * concurrently; text is released token by token, cut at stop strings. What follows [TOOL_CALLS] is read as calls, each
 * reported when its name is written and its arguments as they come (CallReader), and whole when the choice ends.
 */
import { Channel } from "../../runtime/engine/channel.ts";
import {
  type Engine,
  EngineBusyError,
  type FinishReason,
  mix32,
  samplerSeed,
  type TokenEvent,
} from "../../runtime/engine/engine.ts";
import type { Tokenizer } from "../../runtime/tokenizer/tokenizer.ts";
import type { Service } from "../service.ts";
import { log } from "../../runtime/log.ts";
import { clipped } from "../errors.ts";
import type { PreparedChat } from "./prepare.ts";
import { TextAssembler } from "./text.ts";
import { newToolCallId, parseToolCalls, type ToolCallOut } from "./tools.ts";
import { type CallDelta, CallReader } from "./call_reader.ts";

export interface LogprobEntry {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

/** A prompt token's entry: the first has no log-probability (nothing comes before it). */
export type PromptEntry = Omit<LogprobEntry, "logprob" | "top_logprobs"> & {
  logprob: number | null;
  top_logprobs: LogprobEntry["top_logprobs"] | null;
};

/** How a choice ended: the engine's reasons, or "tool_calls" when it stopped after calling functions. */
export type ChoiceFinish = FinishReason | "tool_calls";

export interface ChoiceResult {
  index: number;
  text: string;
  toolCalls?: ToolCallOut[];
  finish: ChoiceFinish;
  /** The stop string that ended the answer, if one did. */
  stopSequence?: string;
  /** Prompt tokens the prefix cache gave this choice. */
  cachedTokens?: number;
  /** Tokens the model generated, the stop token included (as vLLM counts them). */
  tokens: number;
  logprobs?: LogprobEntry[];
  /** The prompt's tokens with their log-probabilities, when asked for. */
  prompt?: PromptEntry[];
  /**
   * Calls max_tokens cut short after they began, as far as they went, and the text before them: the answer as
   * the streams that send calls as they begin leave it (Responses', Messages'); `text` has what the calls wrote.
   */
  cutCalls?: { calls: ToolCallOut[]; text: string };
}

/**
 * What a choice reports as it goes: text deltas with their tokens' log-probabilities, calls (each begun with its id
 * and name, then its arguments as they come), then how it ended.
 */
export type ChoiceUpdate =
  | { index: number; text: string; logprobs?: LogprobEntry[]; prompt?: PromptEntry[] }
  | { index: number; toolCall: CallDelta }
  | ChoiceEnd;

/** How a choice ended. `tokens`: its generated tokens, as its usage counts them. */
interface ChoiceEnd {
  index: number;
  finish: ChoiceFinish;
  tokens: number;
  stopSequence?: string;
  cachedTokens?: number;
  /** The calls, whole, when the answer made some (the streams that send calls whole send them then). */
  toolCalls?: ToolCallOut[];
  /**
   * What the model wrote after [TOOL_CALLS] when it is no list of calls (cut by max_tokens): text, which the
   * answer whole has after its text. A stream sends it as text unless it sent the calls as they began and
   * max_tokens cut them (they then stand as far as they went).
   */
  callText?: string;
  /** Whether calls were reported as they began (`toolCall` updates) before the writing broke off. */
  callsBegun?: boolean;
  /** The calls max_tokens cut short after they began, as far as they went (see ChoiceResult). */
  cutCalls?: ToolCallOut[];
}

function tokenEntry(tokenizer: Tokenizer, id: number, logprob: number) {
  const bytes = [...tokenizer.tokenBytes(id)];
  return { token: new TextDecoder().decode(new Uint8Array(bytes)), logprob, bytes };
}

function logprobEntry(tokenizer: Tokenizer, event: TokenEvent): LogprobEntry | undefined {
  if (event.logprob === undefined) return undefined;
  return {
    ...tokenEntry(tokenizer, event.id, event.logprob),
    top_logprobs: (event.top ?? []).map((t) => tokenEntry(tokenizer, t.id, t.logprob)),
  };
}

/**
 * Choice i's sampler seed (32 bits, as the internal wire carries it): the request's own stream for the first,
 * so that n = 1 and the first of n agree, then streams mixed from it, so that seed s's
 * second choice is not seed s + 1's first.
 */
export function choiceSeed(seed: number, i: number): number {
  const own = samplerSeed(seed);
  if (i === 0) return own;
  return mix32((own + Math.imul(i, 0x9e3779b9)) >>> 0);
}

interface Choice {
  prepared: PreparedChat;
  stream: AsyncGenerator<TokenEvent, FinishReason>;
}

/** Starts `n` generations of each prompt; any failure to start cancels those already started. */
function start(engine: Engine, prompts: PreparedChat[], signal: AbortSignal, cancel: () => void) {
  const streams: Choice[] = [];
  try {
    for (const prepared of prompts) {
      for (let i = 0; i < prepared.n; i++) {
        const seed = prepared.request.sampling.seed;
        const sampling = {
          ...prepared.request.sampling,
          seed: seed === undefined ? undefined : choiceSeed(seed, i),
        };
        streams.push({ prepared, stream: engine.generate({ ...prepared.request, sampling }, signal) });
      }
    }
  } catch (err) {
    cancel(); // the choices already started: their generators never ran, so only the signal reaches them
    throw err;
  }
  return streams;
}

async function runChoice(
  service: Service,
  index: number,
  stream: AsyncGenerator<TokenEvent, FinishReason>,
  prepared: PreparedChat,
  report: (u: ChoiceUpdate) => void,
  /**
   * Each token generated, as it comes (`stop`: the stop token that ended the choice), with the prompt tokens the
   * prefix cache gave (known from the first).
   */
  onToken: (stop: boolean, cached: number) => void,
): Promise<ChoiceResult> {
  const { tokenizer } = service;
  // A choice reports its first token even when nothing of it shows yet (calls held back, a stop string's
  // beginning, part of a character): a stream then starts, and a client that leaves is noticed.
  let reported = false;
  const update = (u: ChoiceUpdate) => {
    reported = true;
    report(u);
  };
  const text = new TextAssembler(tokenizer.decoder(), prepared.stop, prepared.request.minTokens);
  // The calls' JSON, once [TOOL_CALLS] came (at once for a forced call): never cut by stops; a list after each
  // [TOOL_CALLS] if the model writes it again. The reader passes each call on as it is written.
  let calls = prepared.tools?.forced ? tokenizer.decoder() : undefined;
  const lists: string[] = [""];
  const reader = prepared.tools && new CallReader(prepared.tools.names, prepared.tools.single, newToolCallId);
  const writeCalls = (piece: string) => {
    lists[lists.length - 1] += piece;
    for (const toolCall of reader!.push(piece)) update({ index, toolCall });
  };
  let tokens = 0, full = "", cachedTokens: number | undefined;
  let prompt: PromptEntry[] | undefined;
  let finish: ChoiceFinish;
  const logprobs: LogprobEntry[] = [];
  const release = (delta: string) => {
    full += delta;
    if (delta) update({ index, text: delta });
  };
  while (true) {
    const next = await stream.next();
    if (next.done) {
      finish = next.value;
      if (finish === "stop") {
        tokens++;
        onToken(true, cachedTokens ?? 0);
      }
      break;
    }
    if (next.value.prompt) {
      const ids = prepared.request.ids;
      prompt = [
        { ...tokenEntry(tokenizer, ids[0], 0), logprob: null, top_logprobs: null },
        ...next.value.prompt.map((p, i) => ({
          ...tokenEntry(tokenizer, ids[i + 1], p.logprob),
          top_logprobs: (p.top ?? []).map((t) => tokenEntry(tokenizer, t.id, t.logprob)),
        })),
      ];
      update({ index, text: "", prompt });
    }
    if (next.value.cached) cachedTokens = next.value.cached;
    // The stop token, sent only to carry the prompt's log-probabilities or cached tokens: the finish counts it.
    if (next.value.stop) continue;
    tokens++;
    onToken(false, cachedTokens ?? 0);
    const entry = logprobEntry(tokenizer, next.value);
    if (entry) logprobs.push(entry);
    if (next.value.id === prepared.tools?.callsId) {
      if (!calls) {
        release(text.finish());
        calls = tokenizer.decoder();
      } else if (lists.at(-1)!.trim()) {
        writeCalls(calls.flush());
        lists.push("");
        reader!.next();
      }
    }
    if (calls) {
      writeCalls(calls.push(next.value.id));
      if (entry || !reported) update({ index, text: "", logprobs: entry ? [entry] : undefined });
      continue;
    }
    const delta = text.push(next.value.id);
    full += delta;
    if (delta || entry || !reported) update({ index, text: delta, logprobs: entry ? [entry] : undefined });
    if (text.stopped) {
      await stream.return("stop");
      finish = "stop";
      break;
    }
  }
  let toolCalls: ToolCallOut[] | undefined;
  let callText: string | undefined;
  let cutCalls: ChoiceResult["cutCalls"];
  if (calls) {
    writeCalls(calls.flush());
    const read = reader!.calls;
    if (reader!.complete) {
      toolCalls = read.map(({ id, name, arguments: args }) => ({
        id,
        type: "function",
        function: { name, arguments: args },
      }));
    } else {
      // Calls the grammar did not check (tools too large for one grammar, or a grammar that failed to compile),
      // in a form the reader does not follow (a lone object, keys in another order, a key more, arguments as JSON
      // text), must name the tools, and come alone if asked to.
      const parsed = lists.map((list) => parseToolCalls(list, prepared.tools!.names));
      toolCalls = parsed.every((list) => list !== undefined) ? parsed.flat() : undefined;
      if (toolCalls && prepared.tools!.single && toolCalls.length > 1) toolCalls = undefined;
      // Those the reader began keep their ids and what was passed on of them, which the whole must go on from
      // (else they are no calls: a name given twice, numbers Python prints otherwise); the rest is passed on.
      const agrees = toolCalls?.every((out, call) => {
        const begun = read[call];
        return !begun || (begun.name === out.function.name &&
          (begun.whole || out.function.arguments.startsWith(begun.arguments)));
      });
      if (!agrees) toolCalls = undefined;
      toolCalls?.forEach((out, call) => {
        const begun = read[call];
        const args = out.function.arguments;
        if (!begun) {
          update({ index, toolCall: { call, id: out.id, name: out.function.name, arguments: "" } });
          update({ index, toolCall: { call, arguments: args } });
          return;
        }
        out.id = begun.id;
        if (begun.whole) out.function.arguments = begun.arguments;
        else if (args.length > begun.arguments.length) {
          update({ index, toolCall: { call, arguments: args.slice(begun.arguments.length) } });
        }
      });
    }
    if (toolCalls) {
      // Complete calls are what the client acts on, even if whitespace after them ran into max_tokens (as vLLM).
      finish = "tool_calls";
    } else {
      // Not a list of calls (cut short by max_tokens, or malformed): the client gets what the model wrote, as
      // text, or (the Messages, Responses and chat APIs) the calls max_tokens cut as far as they went.
      callText = lists.join("");
      if (finish === "length" && reader!.calls.length) {
        const calls = reader!.calls.map(({ id, name, arguments: args }): ToolCallOut => ({
          id,
          type: "function",
          function: { name, arguments: args },
        }));
        cutCalls = { calls, text: full };
        log.info("max_tokens cut the model's tool calls: they stand as far as they went", {
          calls: calls.length,
        });
      } else {
        log.warn("the model's tool calls are not a JSON list of calls; returned as text", { text: callText });
      }
      full += callText;
    }
  } else release(text.finish());
  // A stop string met in the text before calls, or in the last flush after max_tokens, did not end the answer.
  const stopSequence = finish === "stop" ? text.matched : undefined;
  const ended = {
    finish,
    tokens,
    ...(stopSequence === undefined ? {} : { stopSequence }),
    ...(cachedTokens === undefined ? {} : { cachedTokens }),
  };
  update({
    index,
    ...ended,
    ...(toolCalls ? { toolCalls } : {}),
    ...(callText === undefined ? {} : { callText, callsBegun: reader!.calls.length > 0 }),
    ...(cutCalls ? { cutCalls: cutCalls.calls } : {}),
  });
  return {
    index,
    text: full,
    toolCalls,
    ...ended,
    logprobs: logprobs.length ? logprobs : undefined,
    ...(prompt ? { prompt } : {}),
    ...(cutCalls ? { cutCalls } : {}),
  };
}

export interface CompletionRun {
  /** Updates of every choice, interleaved as they come, then the results. */
  updates: AsyncGenerator<ChoiceUpdate, ChoiceResult[]>;
  /** Stops the choices now, even while `updates` waits for one (a generator's return would wait for it). */
  cancel(): void;
}

/**
 * Runs the choices of each prompt (`n` each, numbered on from one prompt to the next); cancelling `signal` (or
 * abandoning `updates`) stops them and frees their memory. When they end, one log line (`generation`, with the
 * request's id) says what they read and wrote and how long it took: the request's own line is written when its
 * status goes, before a stream's tokens.
 */
export function runCompletion(
  service: Service,
  prompts: PreparedChat[],
  signal: AbortSignal,
  requestId: string,
): CompletionRun & {
  /** Prompt tokens the prefix cache gave, once every choice has its first token (undefined before). */
  cached(): number | undefined;
} {
  const controller = new AbortController();
  const abort = () => controller.abort();
  signal.addEventListener("abort", abort);
  if (signal.aborted) abort();
  let streams: Choice[];
  try {
    streams = start(service.engine!, prompts, controller.signal, abort);
  } catch (err) {
    signal.removeEventListener("abort", abort);
    throw err;
  }
  for (const { request, n } of prompts) {
    if (request.lora !== undefined) service.metrics.loraRequests.inc({ adapter: request.lora }, n);
  }
  const channel = new Channel<ChoiceUpdate, ChoiceResult[]>();
  const began = performance.now();
  // The request's first token is its time to first token; the gaps between each choice's own tokens are inter-token
  // latencies (choices of one step arrive together: gaps across choices would read as ~0).
  let prompted = false, first: number | undefined;
  const last: (number | undefined)[] = streams.map(() => undefined);
  // Counted as they come, so that a request cut short counts what it computed.
  const onToken = (choice: number, stop: boolean, cached: number) => {
    made[choice]++;
    read[choice] = cached;
    service.metrics.generationTokens.inc({}, 1);
    if (!prompted) service.metrics.promptTokens.inc({}, promptTokens(prompts));
    prompted = true;
    if (stop) return;
    const now = performance.now();
    if (first === undefined) service.metrics.timeToFirstToken.observe((now - began) / 1000);
    if (last[choice] !== undefined) service.metrics.interTokenLatency.observe((now - last[choice]!) / 1000);
    first ??= now;
    last[choice] = now;
  };
  // Each choice's tokens as they come, and how it ended once it did: a request cut short reports what it made.
  const made = streams.map(() => 0);
  const read: (number | undefined)[] = streams.map(() => undefined);
  const ended: (Counted & { finish: ChoiceFinish })[] = [];
  const logged = (outcome: Record<string, unknown>) => {
    const end = performance.now(), tokens = made.reduce((n, t) => n + t, 0);
    service.metrics.generationDuration.observe((end - began) / 1000);
    // Tokens after each choice's first, over the time since the request's first: the decoding speed.
    const after = tokens - made.filter((t) => t > 0).length;
    log.info("generation", {
      id: requestId,
      prompt_tokens: promptTokens(prompts),
      cached_tokens: ended.length === streams.length ? cachedTokens(prompts, ended) : undefined,
      images: prompts.reduce((n, p) => n + p.request.images.length, 0),
      choices: streams.length,
      completion_tokens: tokens,
      ...outcome,
      ttft_ms: first === undefined ? undefined : Math.round(first - began),
      ms: Math.round(end - began),
      tokens_per_s: first !== undefined && after > 0 && end > first
        ? Math.round(after / ((end - first) / 1000) * 10) / 10
        : undefined,
    });
  };
  Promise.all(
    streams.map((s, i) =>
      runChoice(
        service,
        i,
        s.stream,
        s.prepared,
        (u) => channel.push(u),
        (stop, cached) => onToken(i, stop, cached),
      )
        .then((result) => {
          ended.push(result);
          service.metrics.choicesFinished.inc({ finish: result.finish });
          return result;
        }, (err) => {
          throw located(err, s.prepared);
        })
    ),
  )
    .then((results) => {
      logged({ finish: [...new Set(results.map((r) => r.finish))].join(",") });
      channel.close(results);
    }, (err) => {
      // Stopped by the client (it left, or the route gave up on the updates) rather than by a failure; turned
      // away by a full queue (a 429: load, not a fault).
      const finish = controller.signal.aborted
        ? "cancelled"
        : err instanceof EngineBusyError
        ? "rejected"
        : "error";
      controller.abort();
      // The choices that had not ended (those that had are counted by how they ended).
      service.metrics.choicesFinished.inc({ finish }, streams.length - ended.length);
      const message = err instanceof Error ? err.message : String(err);
      logged(finish === "error" ? { error: clipped(message) } : { finish });
      channel.fail(err);
    });
  async function* updates(): AsyncGenerator<ChoiceUpdate, ChoiceResult[]> {
    try {
      return yield* channel.drain();
    } finally {
      signal.removeEventListener("abort", abort);
      controller.abort();
    }
  }
  const cached = () =>
    read.includes(undefined)
      ? undefined
      : cachedTokens(prompts, read.map((cachedTokens, index) => ({ index, cachedTokens })));
  return { updates: updates(), cancel: abort, cached };
}

/**
 * An error about one of the request's images found by the engine (a GPU host behind a gateway decodes them), with
 * the image's place in the request as its `param`, as a direct host names it.
 */
function located(err: unknown, prepared: PreparedChat): unknown {
  const image = (err as { image?: number } | undefined)?.image;
  if (err instanceof Error && image !== undefined) {
    (err as Error & { param?: string }).param ??= prepared.imageParams?.[image];
  }
  return err;
}

function promptTokens(prompts: PreparedChat[]): number {
  return prompts.reduce((n, p) => n + p.request.ids.length, 0);
}

type Counted = Pick<ChoiceResult, "index" | "tokens" | "cachedTokens">;

/**
 * Prompt tokens the prefix cache gave: for each prompt, what the choice given the fewest had (the others of its
 * `n` took what that one read).
 */
export function cachedTokens(
  prompts: PreparedChat[],
  results: Pick<ChoiceResult, "index" | "cachedTokens">[],
): number {
  let start = 0, total = 0;
  for (const { n } of prompts) {
    const own = results.filter((r) => r.index >= start && r.index < start + n);
    if (own.length) total += Math.min(...own.map((r) => r.cachedTokens ?? 0));
    start += n;
  }
  return total;
}

/** OpenAI's usage, with the cached prompt tokens as OpenAI (and vLLM) report them. */
export function usage(prompts: PreparedChat[], results: Counted[]) {
  const completion = results.reduce((n, r) => n + r.tokens, 0);
  const prompt = promptTokens(prompts);
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cachedTokens(prompts, results) },
  };
}
