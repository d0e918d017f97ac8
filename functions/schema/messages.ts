/**
 * Anthropic's Messages API request (`POST /v1/messages`), validated with zod: the system prompt, user and
 * assistant messages of content blocks (text, images by base64 or URL, tool_use and tool_result), custom tools
 * with their input schemas, and `output_format` (or `output_config.format`) for structured output.
 *
 * What needs Anthropic's hosted services (server tools, MCP servers, files, documents) is refused with a message
 * that says what to send instead. Thinking blocks a client sends back are skipped: Pixtral writes none, and their
 * content is another model's. Other unknown fields are ignored, as in the chat API.
 */
import { z } from "zod";
import { droppedKeys } from "./dropped.ts";
import { parseWith, RequestError } from "./chat.ts";

const text = z.object({ type: z.literal("text"), text: z.string() });
const image = z.object({
  type: z.literal("image"),
  source: z.discriminatedUnion("type", [
    z.object({ type: z.literal("base64"), media_type: z.string(), data: z.string() }),
    z.object({ type: z.literal("url"), url: z.string() }),
    z.object({ type: z.literal("file"), file_id: z.string() }),
  ]),
});
const toolUse = z.object({
  type: z.literal("tool_use"),
  id: z.string().min(1),
  name: z.string(),
  input: z.record(z.string(), z.unknown()),
});
const toolResult = z.object({
  type: z.literal("tool_result"),
  tool_use_id: z.string().min(1),
  content: z.union([z.string(), z.array(z.discriminatedUnion("type", [text, image]))]).nullish(),
  /** Pixtral's format has no such flag: the result's text says what went wrong. */
  is_error: z.boolean().nullish(),
});
const thinking = z.object({
  type: z.enum(["thinking", "redacted_thinking"]),
  thinking: z.unknown().optional(),
  signature: z.unknown().optional(),
  data: z.unknown().optional(),
});

const block = z.discriminatedUnion("type", [text, image, toolUse, toolResult, thinking]);
const BLOCK_TYPES = new Set(["text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"]);

const message = z.object({
  /** `system`: Claude Code's mid-conversation system messages (a beta of Anthropic's). */
  role: z.enum(["user", "assistant", "system"]),
  content: z.union([z.string(), z.array(block)]),
});

const customTool = z.object({
  type: z.literal("custom").nullish(),
  name: z.string(),
  description: z.string().nullish(),
  input_schema: z.record(z.string(), z.unknown()),
  strict: z.boolean().nullish(),
});

const toolChoice = z.discriminatedUnion("type", [
  z.object({ type: z.literal("auto"), disable_parallel_tool_use: z.boolean().nullish() }),
  z.object({ type: z.literal("any"), disable_parallel_tool_use: z.boolean().nullish() }),
  z.object({ type: z.literal("tool"), name: z.string(), disable_parallel_tool_use: z.boolean().nullish() }),
  z.object({ type: z.literal("none") }),
]);

const outputFormat = z.object({
  type: z.literal("json_schema"),
  schema: z.union([z.record(z.string(), z.unknown()), z.boolean()]),
});

const messagesRequestSchema = z.object({
  model: z.string().nullish(),
  messages: z.array(message),
  system: z.union([z.string(), z.array(text)]).nullish(),
  /** Required by Anthropic; here, left out, what the chat API takes (`--max-tokens`, else what the context leaves). */
  max_tokens: z.unknown().optional(),
  stop_sequences: z.array(z.string()).nullish(),
  stream: z.boolean().nullish(),
  temperature: z.unknown().optional(),
  top_p: z.unknown().optional(),
  top_k: z.unknown().optional(),
  tools: z.array(customTool).nullish(),
  tool_choice: toolChoice.nullish(),
  /** Structured outputs: the beta's `output_format`, and `output_config.format` as it became. */
  output_format: outputFormat.nullish(),
  output_config: z.object({ format: outputFormat.nullish() }).nullish(),
  /** Pixtral does not think: accepted and answered without thinking blocks. */
  thinking: z.unknown().optional(),
  metadata: z.object({ user_id: z.string().nullish() }).nullish(),
  service_tier: z.string().nullish(),
  mcp_servers: z.array(z.unknown()).nullish(),
  container: z.unknown().optional(),
  // The chat API's sampling extensions (vLLM's and Mistral's), checked there.
  seed: z.unknown().optional(),
  min_p: z.unknown().optional(),
  presence_penalty: z.unknown().optional(),
  frequency_penalty: z.unknown().optional(),
  repetition_penalty: z.unknown().optional(),
  logit_bias: z.unknown().optional(),
  image_resize: z.unknown().optional(),
});

export type MessagesRequest = z.infer<typeof messagesRequestSchema>;
export type MessagesBlock = z.infer<typeof block>;

/** Blocks and tools of kinds only Anthropic's own services have get a message naming them, not "invalid input". */
function refuseKinds(body: Record<string, unknown>): void {
  const kind = (value: unknown) =>
    typeof value === "object" && value !== null && "type" in value ? String(value.type) : undefined;
  if (Array.isArray(body.messages)) {
    body.messages.forEach((m, i) => {
      const content = (m as { content?: unknown })?.content;
      if (!Array.isArray(content)) return;
      content.forEach((value, j) => {
        const type = kind(value);
        if (type === undefined || BLOCK_TYPES.has(type)) return;
        const hint = type === "document"
          ? ": send the document's text as a text block, or its pages as images"
          : " (this server takes text, image, tool_use and tool_result blocks)";
        throw new RequestError(
          `messages[${i}].content[${j}]: "${type}" blocks are not supported${hint}`,
          `messages[${i}].content[${j}].type`,
        );
      });
    });
  }
  if (Array.isArray(body.tools)) {
    body.tools.forEach((value, i) => {
      const type = kind(value);
      if (type === undefined || type === "custom") return;
      throw new RequestError(
        `tools[${i}]: "${type}" is one of Anthropic's server tools; this server runs custom tools (name, ` +
          "description, input_schema), whose calls your code carries out",
        `tools[${i}].type`,
      );
    });
  }
  if (body.thread != null) {
    // Anthropic's SDK threads a tool runner's turns unless told it cannot: then it sends each turn whole.
    throw new RequestError(
      "thread: this server keeps no message threads; send the whole conversation in messages",
      "thread",
      "thread_unsupported_request",
    );
  }
  if (Array.isArray(body.mcp_servers) && body.mcp_servers.length) {
    throw new RequestError(
      "mcp_servers: this server connects to no MCP server; give their tools as custom tools",
      "mcp_servers",
      "unsupported_parameter",
    );
  }
}

export interface ParsedMessagesRequest {
  request: MessagesRequest;
  ignored: string[];
}

export function parseMessagesRequest(body: unknown): ParsedMessagesRequest {
  if (typeof body === "object" && body !== null) refuseKinds(body as Record<string, unknown>);
  const request = parseWith(messagesRequestSchema, body);
  const known = new Set(Object.keys(messagesRequestSchema.shape));
  const raw = body as Record<string, unknown>;
  return {
    request,
    ignored: [
      ...Object.keys(raw).filter((key) => !known.has(key)),
      ...droppedKeys(raw.messages, request.messages, "messages"),
      ...droppedKeys(raw.tools, request.tools, "tools"),
    ],
  };
}
