/**
 * OpenAI's Responses API request (`POST /v1/responses`), validated with zod: the conversation as input items
 * (messages, function and custom tool calls and their outputs), function and custom tools, `text.format` for
 * structured output.
 *
 * This server keeps no conversations between requests, so what needs stored responses, files or OpenAI's hosted
 * tools is refused with a message that says what to send instead; `item_reference` items naming output items this
 * process answered with are replaced by those items (functions/chat/output_items.ts). Reasoning items a client sends back are skipped: Pixtral
 * writes none, and their content is another model's. Other unknown fields are ignored, as in the chat API.
 */
import { z } from "zod";
import { droppedKeys } from "./dropped.ts";
import { parseWith, RequestError } from "./chat.ts";
import type { OutputItem, OutputItems } from "../chat/output_items.ts";

const inputText = z.object({ type: z.literal("input_text"), text: z.string() });
const inputImage = z.object({
  type: z.literal("input_image"),
  image_url: z.string().nullish(),
  file_id: z.string().nullish(),
  detail: z.string().nullish(), // "low" as in the chat API
});
/** An earlier answer's text, as clients send back the output items they were given. */
const outputText = z.object({ type: z.literal("output_text"), text: z.string() });
const refusal = z.object({ type: z.literal("refusal"), refusal: z.string() });
const contentPart = z.discriminatedUnion("type", [inputText, inputImage, outputText, refusal]);

const message = z.object({
  type: z.literal("message"),
  role: z.enum(["user", "assistant", "system", "developer"]),
  content: z.union([z.string(), z.array(contentPart)]),
});
const functionCall = z.object({
  type: z.literal("function_call"),
  call_id: z.string().min(1),
  name: z.string(),
  /** The namespace tool the function belongs to (see namespaceTool). */
  namespace: z.string().nullish(),
  arguments: z.string(),
});
const functionCallOutput = z.object({
  type: z.literal("function_call_output"),
  call_id: z.string().min(1),
  output: z.union([z.string(), z.array(contentPart)]),
});
/** A call of a custom tool (see customTool): its input is text. */
const customToolCall = z.object({
  type: z.literal("custom_tool_call"),
  call_id: z.string().min(1),
  name: z.string(),
  input: z.string(),
});
const customToolCallOutput = z.object({
  type: z.literal("custom_tool_call_output"),
  call_id: z.string().min(1),
  output: z.union([z.string(), z.array(contentPart)]),
});
const reasoning = z.object({ type: z.literal("reasoning") });
/** What POST /v1/responses/compact left of a conversation (functions/chat/compaction.ts). */
const compaction = z.object({ type: z.literal("compaction"), encrypted_content: z.string() });

const item = z.discriminatedUnion("type", [
  message,
  functionCall,
  functionCallOutput,
  customToolCall,
  customToolCallOutput,
  reasoning,
  compaction,
]);
const ITEM_TYPES = new Set<string>(item.options.map((o) => o.shape.type.value));

const functionTool = z.object({
  type: z.literal("function"),
  name: z.string(),
  description: z.string().nullish(),
  parameters: z.record(z.string(), z.unknown()).nullish(),
  strict: z.boolean().nullish(),
});

/**
 * A tool whose input is free text rather than JSON arguments (Codex's `apply_patch`), in a format given as a
 * grammar or none. Pixtral calls functions with JSON arguments: the model calls it as a function of one string,
 * `input` (as gateways to chat models do), with the grammar in its description.
 */
const customTool = z.object({
  type: z.literal("custom"),
  name: z.string(),
  description: z.string().nullish(),
  format: z.discriminatedUnion("type", [
    z.object({ type: z.literal("text") }),
    z.object({ type: z.literal("grammar"), syntax: z.enum(["lark", "regex"]), definition: z.string() }),
  ]).nullish(),
});

/** Function tools grouped under a name (Codex's, MCP servers'): each is a function tool of this server's. */
const namespaceTool = z.object({
  type: z.literal("namespace"),
  name: z.string(),
  description: z.string().nullish(),
  tools: z.array(functionTool),
});

/**
 * Search tools, which coding agents send with every request: web search (Codex's, OpenAI's hosted tool) and the
 * search of the tools an agent holds back (Codex's `tool_search`, which the client runs): taken and left out of
 * the prompt, so that the model answers without searching, as when it chooses not to (a local model has no web
 * search behind it, and uses the tools it is given).
 */
const SEARCH = [
  "web_search",
  "web_search_preview",
  "web_search_2025_08_26",
  "web_search_preview_2025_03_11",
  "tool_search",
] as const;
const searchTool = z.object({ type: z.enum(SEARCH) }).transform(({ type }) => ({
  type: "search" as const,
  kind: type,
}));

const toolChoice = z.union([
  z.enum(["none", "auto", "required"]),
  z.object({ type: z.enum(["function", "custom"]), name: z.string() }),
  // Every tool stays in the prompt, the model calls only these; hosted tools among them are none this server has.
  z.object({
    type: z.literal("allowed_tools"),
    mode: z.enum(["auto", "required"]),
    tools: z.array(
      z.object({ type: z.string(), name: z.string().nullish(), namespace: z.string().nullish() })
        .passthrough(),
    ),
  }),
]);

const textFormat = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    name: z.string().nullish(),
    description: z.string().nullish(),
    schema: z.union([z.record(z.string(), z.unknown()), z.boolean()]),
    strict: z.boolean().nullish(),
  }),
]);

const responsesRequestSchema = z.object({
  model: z.string().nullish(),
  input: z.union([z.string(), z.array(item)], {
    error: "expected the conversation, a string or a list of input items",
  }),
  instructions: z.string().nullish(),
  max_output_tokens: z.unknown().optional(),
  temperature: z.unknown().optional(),
  top_p: z.unknown().optional(),
  top_logprobs: z.unknown().optional(),
  /** `message.output_text.logprobs` asks for log-probabilities; what else can be included, Pixtral has none of. */
  include: z.array(z.string()).nullish(),
  stream: z.boolean().nullish(),
  tools: z.array(z.union([functionTool, customTool, namespaceTool, searchTool])).nullish(),
  tool_choice: toolChoice.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  text: z.object({ format: textFormat.nullish(), verbosity: z.string().nullish() }).nullish(),
  metadata: z.record(z.string(), z.string()).nullish(),
  /**
   * No response is stored (each says `store: false`); unless this is false, its output items are remembered for
   * `item_reference` items that may name them (clients that send those leave it out).
   */
  store: z.boolean().nullish(),
  /** Pixtral does not reason: accepted and answered with none. */
  reasoning: z.unknown().optional(),
  /**
   * "auto" drops the conversation's beginning when it does not fit; here a conversation that fits is answered
   * whole either way, and one that does not is an error that says so.
   */
  truncation: z.enum(["disabled", "auto"]).nullish(),
  /** A bound on calls to OpenAI's built-in tools, which this server has none of: nothing to bound. */
  max_tool_calls: z.number().int().min(1).nullish(),
  previous_response_id: z.string().nullish(),
  prompt: z.unknown().optional(),
  conversation: z.unknown().optional(),
  background: z.boolean().nullish(),
  user: z.string().nullish(),
  // The chat API's sampling extensions (vLLM's and Mistral's), checked there.
  seed: z.unknown().optional(),
  top_k: z.unknown().optional(),
  min_p: z.unknown().optional(),
  presence_penalty: z.unknown().optional(),
  frequency_penalty: z.unknown().optional(),
  repetition_penalty: z.unknown().optional(),
  stop: z.unknown().optional(),
  logit_bias: z.unknown().optional(),
  image_resize: z.unknown().optional(),
});

export type ResponsesRequest = z.infer<typeof responsesRequestSchema>;
export type ResponsesPart = z.infer<typeof contentPart>;

export interface ParsedResponsesRequest {
  request: ResponsesRequest;
  ignored: string[];
}

/**
 * Items and tools of kinds the schema does not know get a message naming them, not "invalid input" (`at`: where
 * the tools are, inside a namespace).
 */
function refuseKinds(body: Record<string, unknown>, at = ""): void {
  // A type of another kind than a string is left to the schema, which says what it should be.
  const kind = (value: unknown) =>
    typeof value === "object" && value !== null && "type" in value && typeof value.type === "string"
      ? value.type
      : undefined;
  if (Array.isArray(body.input)) {
    body.input.forEach((value, i) => {
      const type = kind(value);
      if (
        type === undefined || ITEM_TYPES.has(type)
      ) {
        return;
      }
      throw new RequestError(
        `input[${i}]: "${type}" items are not supported (this server takes messages, function and custom ` +
          "tool calls and their outputs, and item_reference items)",
        `input[${i}].type`,
      );
    });
  }
  if (Array.isArray(body.tools)) {
    body.tools.forEach((value, i) => {
      const type = kind(value);
      if (
        type === undefined || type === "function" || (type === "custom" && !at) || type === "namespace" ||
        (SEARCH as readonly string[]).includes(type)
      ) {
        if (type === "namespace") {
          refuseKinds({ tools: (value as { tools?: unknown }).tools }, `tools[${i}].`);
        }
        return;
      }
      throw new RequestError(
        HOSTED.has(type)
          ? `${at}tools[${i}]: "${type}" is one of OpenAI's hosted tools, which run on OpenAI's servers; this server ` +
            "runs function and custom tools (and namespaces of functions), whose calls your code carries out"
          : `${at}tools[${i}]: "${type}" tools are not supported: this server runs function ${
            at ? "" : "and custom "
          }tools (and namespaces of functions), whose calls your code carries out`,
        `${at}tools[${i}].type`,
      );
    });
  }
}

/** OpenAI's hosted tools: run by OpenAI, not by the client. */
const HOSTED = new Set([
  "file_search",
  "web_search",
  "web_search_preview",
  "web_search_2025_08_26",
  "web_search_preview_2025_03_11",
  "computer_use_preview",
  "code_interpreter",
  "image_generation",
  "mcp",
  "local_shell",
  "shell",
]);

/** Fields that need what this server does not keep: refused rather than answered as if they were absent. */
function refuseStateful(request: ResponsesRequest): void {
  const refuse = (param: string, what: string) => {
    throw new RequestError(
      `${param}: ${what}; this server stores no responses: send the whole conversation in input`,
      param,
      "unsupported_parameter",
    );
  };
  if (request.previous_response_id) refuse("previous_response_id", "continuing a stored response");
  if (request.conversation != null) refuse("conversation", "a stored conversation");
  if (request.background) refuse("background", "running in the background for later retrieval");
  if (request.prompt != null) refuse("prompt", "a stored prompt template");
}

/** An `item_reference` replaced by the item it names. */
function referenced(value: { id?: unknown }, at: number, items: OutputItems): OutputItem {
  const item = typeof value.id === "string" ? items.recall(value.id) : undefined;
  if (item) return item;
  throw new RequestError(
    `input[${at}]: the item_reference ${
      JSON.stringify(value.id)
    } names no output item this server remembers ` +
      `(it keeps the last ${items.maxItems} it answered with, in this process): send the item itself (the Vercel ` +
      `AI SDK sends references unless its OpenAI provider options say store: false)`,
    `input[${at}].id`,
  );
}

export function parseResponsesRequest(body: unknown, items: OutputItems): ParsedResponsesRequest {
  // A message may leave its type out (OpenAI's "easy" input message); a reference stands for an earlier output.
  const input = (body as { input?: unknown })?.input;
  const normalized = Array.isArray(input)
    ? {
      ...body as object,
      input: input.map((item, i) =>
        typeof item !== "object" || item === null
          ? item
          : !("type" in item) && "role" in item
          ? { ...item, type: "message" }
          : "type" in item && item.type === "item_reference"
          ? referenced(item, i, items)
          : item
      ),
    }
    : body;
  if (typeof normalized === "object" && normalized !== null) {
    refuseKinds(normalized as Record<string, unknown>);
  }
  const request = parseWith(responsesRequestSchema, normalized);
  refuseStateful(request);
  const known = new Set(Object.keys(responsesRequestSchema.shape));
  return {
    request,
    ignored: [
      ...Object.keys(body as object).filter((key) => !known.has(key)),
      ...(request.tools ?? []).flatMap((tool, i) =>
        tool.type === "search" ? [`tools[${i}] (${tool.kind}: answered without searching)`] : []
      ),
      ...droppedKeys((normalized as Record<string, unknown>).tools, request.tools, "tools"),
    ],
  };
}
