/**
 * POST /v1/completions: OpenAI's legacy text completions, as vLLM, llama.cpp's server and Ollama serve them, for
 * clients that write their own prompts (evaluation harnesses, code completion). One prompt or a list, `n` choices
 * each, streamed as server-sent events or not.
 */
import { Hono } from "hono";
import { log } from "../../runtime/log.ts";
import { type LogprobEntry, runCompletion, usage } from "../chat/completion.ts";
import { preparePrompt, promptsOf } from "../chat/raw_prompt.ts";
import { parseCompletionRequest } from "../schema/completions.ts";
import type { Service } from "../service.ts";
import { readJson, requireEngine, requireModel } from "./common.ts";
import { eventStream, results } from "./sse.ts";

/**
 * Log-probabilities in the legacy shape: per token its text, its log-probability, the most likely tokens
 * (the chosen one among them, as vLLM reports it) and where it starts in the choice's text.
 */
function legacyLogprobs(entries: LogprobEntry[], start: number) {
  const text_offset: number[] = [];
  let at = start;
  for (const e of entries) {
    text_offset.push(at);
    at += e.token.length;
  }
  return {
    tokens: entries.map((e) => e.token),
    token_logprobs: entries.map((e) => e.logprob),
    // Keyed by text, which several tokens can share (parts of a character): the first, most likely, stays.
    top_logprobs: entries.map((e) => {
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
    requireModel(service, request.model);
    requireEngine(service);
    const prompts = promptsOf(request.prompt);
    const prepared = prompts.map((prompt, i) =>
      preparePrompt(request, prompt, prompts.length > 1 ? `prompt[${i}]` : "prompt", service)
    );
    const signal = c.req.raw.signal;
    const run = runCompletion(service, prepared, signal);
    const id = `cmpl-${crypto.randomUUID().replaceAll("-", "")}`;
    const head = {
      id,
      object: "text_completion",
      created: Math.floor(Date.now() / 1000),
      model: service.model.id,
    };
    const n = request.n ?? 1;
    // Choice i answers prompt i / n; with echo its text begins with that prompt.
    const echo = (index: number) => request.echo ? prepared[Math.floor(index / n)].text : "";

    if (!request.stream) {
      const choices = await results(run);
      return c.json({
        ...head,
        choices: choices.map((r) => ({
          index: r.index,
          text: echo(r.index) + r.text,
          logprobs: r.logprobs ? legacyLogprobs(r.logprobs, echo(r.index).length) : null,
          finish_reason: r.finish,
        })),
        usage: usage(prepared, choices),
      });
    }

    const includeUsage = request.stream_options?.include_usage ?? false;
    /** Per choice, the length of its text so far (where its next token's text starts). */
    const sent = new Map<number, number>();
    return await eventStream(run, {
      id,
      signal,
      event(u) {
        if ("toolCalls" in u) return undefined; // no tools here
        let text = "";
        if (!sent.has(u.index)) sent.set(u.index, (text = echo(u.index)).length);
        const start = sent.get(u.index)!;
        if ("text" in u) {
          text += u.text;
          sent.set(u.index, start + u.text.length);
        }
        return {
          ...head,
          choices: [{
            index: u.index,
            text,
            logprobs: "logprobs" in u && u.logprobs ? legacyLogprobs(u.logprobs, start) : null,
            finish_reason: "finish" in u ? u.finish : null,
          }],
          ...(includeUsage ? { usage: null } : {}),
        };
      },
      end: (choices) => includeUsage ? [{ ...head, choices: [], usage: usage(prepared, choices) }] : [],
    });
  });
}
