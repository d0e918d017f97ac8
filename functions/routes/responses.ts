/**
 * POST /v1/responses: OpenAI's Responses API, which newer OpenAI SDK code and agent frameworks call. The request
 * runs as the chat completion it amounts to (functions/chat/responses.ts); the answer is a response object whose
 * output is a message and the function calls, streamed as Responses' typed events or not. No conversation is
 * stored: each request carries its whole conversation, as with `store: false` at OpenAI, though its earlier
 * outputs may come as `item_reference` items naming what this route answered with (OutputItems).
 */
import { type Context, Hono } from "hono";
import { apiError } from "../errors.ts";
import { log } from "../../runtime/log.ts";
import { pyJsonLoads } from "../../runtime/prompt/pyjson.ts";
import { type ChoiceResult, type LogprobEntry, runCompletion } from "../chat/completion.ts";
import { answerRoom, cutToFit } from "../chat/history.ts";
import { countChat, type DecodedImages, prepareChat, type PreparedChat } from "../chat/prepare.ts";
import { type CallName, flatTools, renamed, toChat } from "../chat/responses.ts";
import { compactedOutput, summaryRequest } from "../chat/compaction.ts";
import { customInput, CustomInputReader } from "../chat/custom_tools.ts";
import type { ToolCallOut } from "../chat/tools.ts";
import { OutputItems } from "../chat/output_items.ts";
import { parseResponsesRequest, type ResponsesRequest } from "../schema/responses.ts";
import type { Service } from "../service.ts";
import { readJsonText, requireEngine, requireModel } from "./common.ts";
import { patientJson } from "./patient.ts";
import { eventStream } from "./sse.ts";

const newId = (prefix: string) => `${prefix}_${crypto.randomUUID().replaceAll("-", "")}`;

type Status = "completed" | "incomplete";

function outputText(text: string, logprobs: LogprobEntry[]) {
  return { type: "output_text", text, annotations: [], logprobs };
}

/** The output items of an answer, remembered for the `item_reference` items that may name them later. */
function remember(items: OutputItems, output: unknown[]): void {
  for (const item of output as ({ id: string } & Record<string, unknown>)[]) {
    if (item.type === "message") {
      const text = (item.content as { text: string }[]).map((part) => part.text).join("");
      items.remember(item.id, {
        type: "message",
        role: "assistant",
        content: [{ type: "output_text", text }],
      });
    } else if (item.type === "function_call") {
      const { call_id, name, namespace, arguments: args } = item as unknown as FunctionCallItem;
      items.remember(item.id, {
        type: "function_call",
        call_id,
        name,
        ...namespace ? { namespace } : {},
        arguments: args,
      });
    } else if (item.type === "custom_tool_call") {
      const { call_id, name, input } = item as unknown as CustomToolCallItem;
      items.remember(item.id, { type: "custom_tool_call", call_id, name, input });
    }
  }
}

function messageItem(id: string, status: Status | "in_progress", text: string, logprobs: LogprobEntry[]) {
  return {
    type: "message",
    id,
    status,
    role: "assistant",
    content: status === "in_progress" ? [] : [outputText(text, logprobs)],
  };
}

interface FunctionCallItem {
  type: "function_call";
  id: string;
  call_id: string;
  name: string;
  namespace?: string;
  arguments: string;
  status: Status | "in_progress";
}

interface CustomToolCallItem {
  type: "custom_tool_call";
  id: string;
  call_id: string;
  name: string;
  input: string;
  status: Status | "in_progress";
}

/**
 * A call as an output item, its function named as the request names it (`callName`: with its namespace); a
 * custom tool's call with its input.
 */
function callItem(
  call: ToolCallOut,
  callName: (flat: string) => CallName,
): FunctionCallItem | CustomToolCallItem {
  const { name, arguments: args } = call.function;
  const { custom, ...named } = callName(name);
  // Cut short by max_output_tokens, a call stands as far as it went.
  const status = pyJsonLoads(args) instanceof Map ? "completed" : "incomplete";
  return custom
    ? {
      type: "custom_tool_call",
      id: newId("ctc"),
      call_id: call.id,
      name: named.name,
      input: customInput(args),
      status,
    }
    : { type: "function_call", id: newId("fc"), call_id: call.id, ...named, arguments: args, status };
}

/** A response that stopped at max_output_tokens is incomplete, as OpenAI reports it. */
const statusOf = (result: ChoiceResult): Status => result.finish === "length" ? "incomplete" : "completed";

/** The response object: the request's settings as it ran them, and (once done) the output and usage. */
function responseObject(id: string, request: ResponsesRequest, prepared: PreparedChat, model: string) {
  const { sampling } = prepared.request;
  return {
    id,
    object: "response",
    created_at: Math.floor(Date.now() / 1000),
    status: "in_progress" as Status | "in_progress" | "failed",
    background: false,
    error: null as { code: string; message: string } | null,
    incomplete_details: null as { reason: string } | null,
    instructions: request.instructions ?? null,
    max_output_tokens: request.max_output_tokens ?? null,
    max_tool_calls: request.max_tool_calls ?? null,
    metadata: request.metadata ?? {},
    model,
    output: [] as unknown[],
    parallel_tool_calls: request.parallel_tool_calls ?? true,
    previous_response_id: null,
    // As asked: Pixtral does not reason before answering, whatever the effort.
    reasoning: { effort: null, summary: null, ...reasoningAsked(request.reasoning) },
    service_tier: "default",
    store: false,
    temperature: sampling.temperature,
    text: {
      format: request.text?.format ?? { type: "text" },
      verbosity: request.text?.verbosity ?? "medium",
    },
    tool_choice: request.tool_choice ?? "auto",
    tools: (request.tools ?? []).map(echoedTool),
    top_logprobs: request.top_logprobs ?? 0,
    top_p: sampling.topP,
    truncation: request.truncation ?? "disabled",
    usage: null as ReturnType<typeof usage> | null,
    user: request.user ?? null,
  };
}

type ResponseObject = ReturnType<typeof responseObject>;

/** A tool as the response object lists it: as the request gave it, defaults filled in. */
function echoedTool(tool: NonNullable<ResponsesRequest["tools"]>[number]): Record<string, unknown> {
  if (tool.type === "search") return { type: tool.kind };
  if (tool.type === "namespace") {
    return { ...tool, description: tool.description ?? null, tools: tool.tools.map(echoedTool) };
  }
  if (tool.type === "custom") {
    return { ...tool, description: tool.description ?? null, format: tool.format ?? { type: "text" } };
  }
  return {
    type: "function",
    name: tool.name,
    description: tool.description ?? null,
    parameters: tool.parameters ?? null,
    strict: tool.strict ?? true,
  };
}

/** The request's `reasoning` settings that the response echoes (`effort`, `summary`). */
function reasoningAsked(reasoning: unknown): Record<string, unknown> {
  if (typeof reasoning !== "object" || reasoning === null) return {};
  const { effort, summary } = reasoning as Record<string, unknown>;
  return {
    ...typeof effort === "string" ? { effort } : {},
    ...typeof summary === "string" ? { summary } : {},
  };
}

function usage(prepared: PreparedChat, result: ChoiceResult) {
  const input = prepared.request.ids.length;
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: result.cachedTokens ?? 0 },
    output_tokens: result.tokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: input + result.tokens,
  };
}

function finished(response: ResponseObject, output: unknown[], prepared: PreparedChat, result: ChoiceResult) {
  const status = statusOf(result);
  return {
    ...response,
    status,
    incomplete_details: status === "incomplete" ? { reason: "max_output_tokens" } : null,
    output,
    usage: usage(prepared, result),
  };
}

/** Retrieving, cancelling or deleting a stored response: there are none (each says `store: false`). */
function notStored(c: Context) {
  return apiError(
    c,
    404,
    `no response ${
      c.req.param("id")
    }: this server stores no responses (each says store: false); the answer ` +
      "came with the request that asked for it",
    "invalid_request_error",
    "response_not_found",
  );
}

/** The request's body, parsed, for the model this server serves. */
async function parsed(c: Context, service: Service, items: OutputItems) {
  const { body, text } = await readJsonText(c);
  const { request, ignored } = parseResponsesRequest(body, items);
  if (ignored.length) log.info("ignoring unknown request fields", { fields: ignored, path: c.req.path });
  requireModel(service, request.model);
  return { request, text };
}

/** The request as the engine's prompt; with `truncate`, the oldest input items that do not fit left out. */
async function prepare(
  service: Service,
  request: ResponsesRequest,
  text: string,
  signal: AbortSignal,
  truncate: boolean,
): Promise<PreparedChat> {
  const decoded: DecodedImages = new Map();
  const from = async (first: number) => {
    const { chat, source, param } = toChat(request, text, first);
    try {
      const prepared = await prepareChat(chat, service, signal, source, { decoded });
      // An image a GPU host behind a gateway cannot decode is named as this request names it.
      prepared.imageParams = prepared.imageParams?.map(param);
      return prepared;
    } catch (err) {
      throw renamed(err, param);
    }
  };
  if (!truncate) return await from(0);
  const { chat } = toChat(request, text);
  return await cutToFit(
    chat.messages,
    answerRoom(service, chat.max_completion_tokens ?? undefined),
    service,
    from,
  );
}

export function responseRoutes(service: Service, items = new OutputItems()): Hono {
  return new Hono()
    // What a request's input amounts to in tokens, its instructions, tools and images included (OpenAI's SDK:
    // responses.input_tokens.count), counted beyond the context too.
    .post("/v1/responses/input_tokens", async (c) => {
      const { request, text } = await parsed(c, service, items);
      const { chat, source, param } = toChat(request, text);
      try {
        const tokens = await countChat(chat, service, c.req.raw.signal, source);
        return c.json({ object: "response.input_tokens", input_tokens: tokens });
      } catch (err) {
        throw renamed(err, param);
      }
    })
    // A conversation replaced by its user messages and a summary of the rest (functions/chat/compaction.ts), its
    // oldest items left out of what is summed up when it does not fit with the summary.
    .post("/v1/responses/compact", async (c) => {
      const { request, text } = await parsed(c, service, items);
      requireEngine(service);
      const signal = c.req.raw.signal;
      const prepared = await prepare(service, summaryRequest(request), text, signal, true);
      const run = runCompletion(service, [prepared], signal, c.get("requestId"));
      const id = newId("resp");
      return await patientJson(run, {
        id,
        request: c.req.raw,
        answer: ([result]) => ({
          id,
          object: "response.compaction",
          created_at: Math.floor(Date.now() / 1000),
          output: compactedOutput(request, result.text, newId),
          usage: usage(prepared, result),
        }),
      });
    })
    .get("/v1/responses/:id", notStored)
    .delete("/v1/responses/:id", notStored)
    .post("/v1/responses/:id/cancel", notStored)
    .get("/v1/responses/:id/input_items", notStored)
    .post("/v1/responses", async (c) => {
      const { request, text } = await parsed(c, service, items);
      requireEngine(service);
      const signal = c.req.raw.signal;
      const { callName } = flatTools(request);
      const prepared = await prepare(service, request, text, signal, request.truncation === "auto");
      const run = runCompletion(service, [prepared], signal, c.get("requestId"));
      const id = newId("resp");
      const response = responseObject(id, request, prepared, prepared.request.lora ?? service.model.id);

      if (!request.stream) {
        return await patientJson(run, {
          id,
          request: c.req.raw,
          answer: ([result]) => {
            const output: unknown[] = [];
            // Calls max_tokens cut stand as far as they went, as a stream leaves them.
            const text = result.cutCalls?.text ?? result.text;
            const calls = result.cutCalls?.calls ?? result.toolCalls;
            // The message, unless the answer is calls alone; an empty answer is an empty message. Text before
            // calls is complete, as a stream ends it when they begin.
            if (text || !calls) {
              const status = calls ? "completed" : statusOf(result);
              output.push(messageItem(newId("msg"), status, text, result.logprobs ?? []));
            }
            for (const call of calls ?? []) output.push(callItem(call, callName));
            if (request.store !== false) remember(items, output);
            return finished(response, output, prepared, result);
          },
        });
      }

      let sequence = 0;
      const event = (type: string, fields: Record<string, unknown>) => ({
        type,
        sequence_number: sequence++,
        ...fields,
      });
      const output: unknown[] = [];
      /** The message being written, and log-probabilities of tokens whose text has not shown yet. */
      let message: { id: string; index: number; text: string; logprobs: LogprobEntry[] } | undefined;
      let pending: LogprobEntry[] = [];
      const openMessage = (events: unknown[]) => {
        message = { id: newId("msg"), index: output.length, text: "", logprobs: [] };
        const at = { item_id: message.id, output_index: message.index };
        events.push(
          event("response.output_item.added", {
            output_index: message.index,
            item: messageItem(message.id, "in_progress", "", []),
          }),
          event("response.content_part.added", { ...at, content_index: 0, part: outputText("", []) }),
        );
      };
      const write = (events: unknown[], delta: string) => {
        const m = message!;
        const logprobs = pending;
        pending = [];
        m.text += delta;
        m.logprobs.push(...logprobs);
        events.push(event("response.output_text.delta", {
          item_id: m.id,
          output_index: m.index,
          content_index: 0,
          delta,
          logprobs,
        }));
      };
      const closeMessage = (events: unknown[], status: Status) => {
        if (!message) return;
        if (pending.length) write(events, "");
        const { id: itemId, index, text, logprobs } = message;
        const at = { item_id: itemId, output_index: index, content_index: 0 };
        const item = messageItem(itemId, status, text, logprobs);
        events.push(
          event("response.output_text.done", { ...at, text, logprobs }),
          event("response.content_part.done", { ...at, part: outputText(text, logprobs) }),
          event("response.output_item.done", { output_index: index, item }),
        );
        output.push(item);
        message = undefined;
      };
      /** The call being written, and its arguments as they came (a custom tool's: its input, read as they come). */
      let call:
        | { item: FunctionCallItem | CustomToolCallItem; args: string; input?: CustomInputReader }
        | undefined;
      const inputDelta = (events: unknown[], item: CustomToolCallItem, input: string) => {
        const delta = input.slice(item.input.length);
        if (!delta) return;
        item.input = input;
        events.push(event("response.custom_tool_call_input.delta", {
          item_id: item.id,
          output_index: output.length,
          delta,
        }));
      };
      // A call is complete when its arguments were written whole (even if the answer was cut just after it).
      const closeCall = (events: unknown[]) => {
        if (!call) return;
        const { item, args } = call;
        const complete = pyJsonLoads(args) instanceof Map;
        const at = { item_id: item.id, output_index: output.length };
        if (item.type === "function_call") {
          events.push(
            event("response.function_call_arguments.done", { ...at, name: item.name, arguments: args }),
          );
        } else {
          inputDelta(events, item, customInput(args));
          events.push(event("response.custom_tool_call_input.done", { ...at, input: item.input }));
        }
        const done = { ...item, status: complete ? "completed" : "incomplete" };
        events.push(event("response.output_item.done", { output_index: at.output_index, item: done }));
        output.push(done);
        call = undefined;
      };
      return await eventStream(run, {
        id,
        request: c.req.raw,
        // The response is created as soon as the stream begins, as OpenAI's is, before the prompt has been read.
        opening: () => [event("response.created", { response }), event("response.in_progress", { response })],
        // Codex's idle watchdog counts events, not comments: while a long prompt is read, it is told again.
        idle: () => event("response.in_progress", { response }),
        events(u) {
          const events: unknown[] = [];
          if ("text" in u) {
            pending.push(...u.logprobs ?? []);
            if (u.text) {
              if (!message) openMessage(events);
              write(events, u.text);
            }
          } else if ("toolCall" in u) {
            const { id, name, arguments: args } = u.toolCall;
            if (id !== undefined) {
              closeMessage(events, "completed");
              closeCall(events);
              const item = callItem({ id, type: "function", function: { name, arguments: "" } }, callName);
              call = {
                item: { ...item, status: "in_progress" },
                args: "",
                input: item.type === "custom_tool_call" ? new CustomInputReader() : undefined,
              };
              events.push(event("response.output_item.added", {
                output_index: output.length,
                item: { ...call.item },
              }));
            }
            if (args) {
              const { item } = call!;
              call!.args += args;
              if (item.type === "custom_tool_call") inputDelta(events, item, call!.input!.push(args));
              else {
                item.arguments += args;
                events.push(event("response.function_call_arguments.delta", {
                  item_id: item.id,
                  output_index: output.length,
                  delta: args,
                }));
              }
            }
          } else {
            const status: Status = u.finish === "length" ? "incomplete" : "completed";
            closeCall(events);
            // What was no list of calls goes as text, unless max_tokens cut calls that had begun (they stand as far
            // as they went).
            if (u.callText && (!u.callsBegun || u.finish !== "length")) {
              if (!message) openMessage(events);
              write(events, u.callText);
            }
            if (!message && output.length === 0) openMessage(events);
            closeMessage(events, status);
          }
          return events;
        },
        end([result]) {
          const done = finished(response, output, prepared, result);
          if (request.store !== false) remember(items, output);
          return [
            event(done.status === "completed" ? "response.completed" : "response.incomplete", {
              response: done,
            }),
          ];
        },
        named: {
          failed(reason) {
            const open = message;
            const error = { code: "server_error", message: reason };
            // The message or call being written was announced: it stays in the output, incomplete.
            const partial = open
              ? [messageItem(open.id, "incomplete", open.text, [...open.logprobs, ...pending])]
              : call
              ? [{ ...call.item, status: "incomplete" }]
              : [];
            return [
              event("error", { ...error, param: null }),
              event("response.failed", {
                response: { ...response, status: "failed", error, output: [...output, ...partial] },
              }),
            ];
          },
        },
      });
    });
}
