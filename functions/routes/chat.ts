/** POST /v1/chat/completions: OpenAI's and Mistral's chat API, streamed as server-sent events or not. */
import { Hono } from "hono";
import { log } from "../../runtime/log.ts";
import { type ChoiceUpdate, runCompletion, usage } from "../chat/completion.ts";
import { chatConversation } from "../chat/history.ts";
import { prepareChat } from "../chat/prepare.ts";
import { renamed } from "../chat/responses.ts";
import { pySource, type ToolCallOut } from "../chat/tools.ts";
import { customInput } from "../chat/custom_tools.ts";
import { type ChatRequest, parseChatRequest, RequestError } from "../schema/chat.ts";
import type { Service } from "../service.ts";
import { readJsonText, requireEngine, requireModel } from "./common.ts";
import { patientJson } from "./patient.ts";
import { eventStream } from "./sse.ts";

/** Calls as the chat API reports them: a custom tool's as `{type: "custom", custom: {name, input}}`. */
function customCalls(chat: ChatRequest) {
  const custom = new Set((chat.tools ?? []).flatMap((t) => "custom" in t ? [t.function.name] : []));
  return (calls: ToolCallOut[]) =>
    calls.map((call) =>
      custom.has(call.function.name)
        ? {
          id: call.id,
          type: "custom" as const,
          custom: { name: call.function.name, input: customInput(call.function.arguments) },
        }
        : call
    );
}

function completionId(): string {
  return `chatcmpl-${crypto.randomUUID().replaceAll("-", "")}`;
}

export function chatRoutes(service: Service): Hono {
  return new Hono().post("/v1/chat/completions", async (c) => {
    const { body: json, text } = await readJsonText(c);
    const { request: chat, ignored } = parseChatRequest(json);
    if (ignored.length) log.info("ignoring unknown request fields", { fields: ignored, path: c.req.path });
    const lora = requireModel(service, chat.model);
    requireEngine(service);
    if (chat.stream_options && !chat.stream) {
      throw new RequestError("stream_options is only allowed with stream: true", "stream_options");
    }
    const signal = c.req.raw.signal;
    const { request, source, param } = chatConversation(chat, pySource(chat, text));
    const prepared = await prepareChat(request, service, signal, source).catch((err) => {
      throw param ? renamed(err, param, []) : err;
    });
    const shown = customCalls(request);
    const run = runCompletion(service, [prepared], signal, c.get("requestId"));
    const id = completionId(), created = Math.floor(Date.now() / 1000);
    const model = lora ?? service.model.id;
    const head = { id, object: "chat.completion.chunk", created, model };

    if (!chat.stream) {
      return await patientJson(run, {
        id,
        request: c.req.raw,
        answer: (choices) => ({
          id,
          object: "chat.completion",
          created,
          model,
          choices: choices.map((r) => ({
            index: r.index,
            // Calls max_tokens cut stand as far as they went (finish_reason "length"), as OpenAI's do.
            message: r.toolCalls ?? r.cutCalls
              ? {
                role: "assistant",
                content: (r.cutCalls?.text ?? r.text) || null,
                tool_calls: shown(r.toolCalls ?? r.cutCalls!.calls),
              }
              : { role: "assistant", content: r.text },
            logprobs: r.logprobs ? { content: r.logprobs } : null,
            finish_reason: r.finish,
          })),
          usage: usage([prepared], choices),
        }),
      });
    }

    // true: the usage in a chunk of its own (OpenAI's); unset: on the last finish (below); false: none.
    const includeUsage = chat.stream_options?.include_usage;
    const roleSent = new Set<number>();
    // Without include_usage the chunk that ends the last choice carries the usage, as Mistral's API streams it
    // (its clients have no stream_options); OpenAI's clients take the field where it is.
    const finished: Extract<ChoiceUpdate, { finish: unknown }>[] = [];
    return await eventStream(run, {
      id,
      request: c.req.raw,
      events(u) {
        // Calls go whole in one chunk when the choice ends, as Mistral's API streams them: Mistral's SDKs need a
        // call's name in every chunk, LangChain's ChatMistralAI and LlamaIndex's MistralAI take each chunk as
        // calls; OpenAI's clients take it too. Calls max_tokens cut go as far as they went; what was no list of
        // calls at all goes as text, as whole.
        if ("toolCall" in u) return [];
        const delta: Record<string, unknown> = {};
        if (!roleSent.has(u.index)) {
          roleSent.add(u.index);
          delta.role = "assistant";
        }
        // A first chunk without text (a call, under a forced choice or "auto") says so with content null, as
        // OpenAI's does: clients would begin an empty text part with "".
        if ("text" in u) delta.content = u.text === "" && delta.role ? null : u.text;
        const before: unknown[] = [];
        if ("finish" in u && (u.toolCalls || u.callText)) {
          const made = u.toolCalls ?? u.cutCalls;
          const calls = made && shown(made).map((call, i) => ({ index: i, ...call }));
          before.push({
            ...head,
            choices: [{
              index: u.index,
              delta: { ...delta, ...calls ? { tool_calls: calls } : { content: u.callText } },
              logprobs: null,
              finish_reason: null,
            }],
            ...(includeUsage ? { usage: null } : {}),
          });
          delete delta.role;
        }
        return [...before, {
          ...head,
          choices: [{
            index: u.index,
            delta,
            logprobs: "logprobs" in u && u.logprobs ? { content: u.logprobs } : null,
            finish_reason: "finish" in u ? u.finish : null,
          }],
          ...(includeUsage ? { usage: null } : includeUsage === undefined ? lastUsage(u) : {}),
        }];
      },
      end: (results) => includeUsage ? [{ ...head, choices: [], usage: usage([prepared], results) }] : [],
    });

    function lastUsage(u: ChoiceUpdate) {
      if (!("finish" in u)) return {};
      finished.push(u);
      if (finished.length < prepared.n) return {};
      return { usage: usage([prepared], finished) };
    }
  });
}
