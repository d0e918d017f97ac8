/**
 * POST /v1/completions: OpenAI's legacy text completions, as vLLM, llama.cpp's server and Ollama serve them, for
 * clients that write their own prompts (evaluation harnesses, code completion). One prompt or a list, `n` choices
 * each, streamed as server-sent events or not.
 */
import { Hono } from "hono";
import { log } from "../../runtime/log.ts";
import { type LogprobEntry, type PromptEntry, runCompletion, usage } from "../chat/completion.ts";
import { preparePrompt, promptsOf } from "../chat/raw_prompt.ts";
import { parseCompletionRequest } from "../schema/completions.ts";
import type { Service } from "../service.ts";
import { readJson, requireEngine, requireModel } from "./common.ts";
import { patientJson } from "./patient.ts";
import { eventStream } from "./sse.ts";

/**
 * Where each token's text starts in a choice's text: its bytes decoded as a stream, so that a character split
 * across tokens starts where its first byte's token does, and text held back (a stop string's beginning) counts.
 */
class Offsets {
  readonly #decoder = new TextDecoder();
  constructor(private length: number) {}

  next(bytes: number[]): number {
    const at = this.length;
    this.length += this.#decoder.decode(new Uint8Array(bytes), { stream: true }).length;
    return at;
  }
}

/**
 * Log-probabilities in the legacy shape: per token its text, its log-probability, the most likely tokens
 * (the chosen one among them, as vLLM reports it) and where it starts in the choice's text.
 */
function legacyLogprobs(entries: (LogprobEntry | PromptEntry)[], offsets: Offsets) {
  const text_offset = entries.map((e) => offsets.next(e.bytes));
  return {
    tokens: entries.map((e) => e.token),
    token_logprobs: entries.map((e) => e.logprob),
    // Keyed by text, which several tokens can share (parts of a character): the first, most likely, stays.
    top_logprobs: entries.map((e) => {
      if (e.logprob === null || e.top_logprobs === null) return null;
      const top: Record<string, number> = { [e.token]: e.logprob };
      for (const t of e.top_logprobs) top[t.token] ??= t.logprob;
      return top;
    }),
    text_offset,
  };
}

export function completionRoutes(service: Service): Hono {
  return new Hono().post("/v1/completions", async (c) => {
    const { request, ignored } = parseCompletionRequest(await readJson(c));
    if (ignored.length) log.info("ignoring unknown request fields", { fields: ignored, path: c.req.path });
    const lora = requireModel(service, request.model);
    requireEngine(service);
    const prompts = promptsOf(request.prompt);
    const prepared = prompts.map((prompt, i) =>
      preparePrompt(request, prompt, prompts.length > 1 ? `prompt[${i}]` : "prompt", service)
    );
    const signal = c.req.raw.signal;
    const run = runCompletion(service, prepared, signal, c.get("requestId"));
    const id = `cmpl-${crypto.randomUUID().replaceAll("-", "")}`;
    const head = {
      id,
      object: "text_completion",
      created: Math.floor(Date.now() / 1000),
      model: lora ?? service.model.id,
    };
    const n = request.n ?? 1;
    // Choice i answers prompt i / n; with echo its text begins with that prompt.
    const echo = (index: number) => request.echo ? prepared[Math.floor(index / n)].text : "";

    if (!request.stream) {
      return await patientJson(run, {
        id,
        request: c.req.raw,
        answer: (choices) => ({
          ...head,
          choices: choices.map((r) => ({
            index: r.index,
            text: echo(r.index) + r.text,
            // Echoed, the prompt's tokens come first, from offset 0.
            logprobs: r.logprobs || r.prompt
              ? legacyLogprobs(
                [...r.prompt ?? [], ...r.logprobs ?? []],
                new Offsets(r.prompt ? 0 : echo(r.index).length),
              )
              : null,
            finish_reason: r.finish,
          })),
          usage: usage(prepared, choices),
        }),
      });
    }

    const includeUsage = request.stream_options?.include_usage ?? false;
    /** Per choice, where its next token's text starts; each choice's first event carries the echo. */
    const offsets = new Map<number, Offsets>();
    return await eventStream(run, {
      id,
      request: c.req.raw,
      events(u) {
        if ("toolCall" in u) return []; // no tools here
        let text = "";
        const scored = "prompt" in u ? u.prompt : undefined;
        if (!offsets.has(u.index)) {
          text = echo(u.index);
          offsets.set(u.index, new Offsets(scored ? 0 : text.length));
        }
        if ("text" in u) text += u.text;
        return [{
          ...head,
          choices: [{
            index: u.index,
            text,
            logprobs: scored || ("logprobs" in u && u.logprobs)
              ? legacyLogprobs(
                [...scored ?? [], ...("logprobs" in u ? u.logprobs ?? [] : [])],
                offsets.get(u.index)!,
              )
              : null,
            finish_reason: "finish" in u ? u.finish : null,
          }],
          ...(includeUsage ? { usage: null } : {}),
        }];
      },
      end: (choices) => includeUsage ? [{ ...head, choices: [], usage: usage(prepared, choices) }] : [],
    });
  });
}
