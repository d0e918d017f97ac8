/**
 * Compaction (OpenAI's `POST /v1/responses/compact`): a long conversation is replaced by its user messages and
 * one `compaction` item that stands for the rest, which clients (agents near the end of the context) send in
 * place of the conversation from then on. OpenAI's item holds its summary encrypted; this server's holds the
 * summary the model wrote, marked as this server's, and reads it back as a user turn of the conversation.
 */
import { RequestError } from "../schema/chat.ts";
import type { ResponsesRequest } from "../schema/responses.ts";

/** Tokens a summary may take unless the request says (`max_output_tokens`). */
export const SUMMARY_TOKENS = 2048;

/** What the model is asked, after the conversation, to sum it up with. */
export const SUMMARY_REQUEST = "Summarize this conversation so that it can go on from your summary alone: " +
  "what the user asked for and wants, what was decided, what was done and found (names, files, commands, " +
  "results, errors), and what is left to do. Answer with the summary only.";

/** Marks a compaction item's content as this server's (OpenAI's are encrypted, and say nothing here). */
const MARK = "pixtral-summary.";

/** A compaction item's content: the summary, base64 of its UTF-8, behind the mark. */
export function sealed(summary: string): string {
  return MARK + new TextEncoder().encode(summary).toBase64();
}

/** The user turn a compaction item stands for; `at` names the item's content in errors. */
export function summaryTurn(content: string, at: string): string {
  let summary: string | undefined;
  if (content.startsWith(MARK)) {
    try {
      summary = new TextDecoder("utf-8", { fatal: true }).decode(
        Uint8Array.fromBase64(content.slice(MARK.length)),
      );
    } catch {
      summary = undefined;
    }
  }
  if (summary === undefined) {
    throw new RequestError(
      `${at}: this compaction item was not made by this server (another's is encrypted for it alone): send ` +
        "the conversation it stands for, or compact it here with POST /v1/responses/compact",
      at,
      "invalid_input",
    );
  }
  return `A summary of the conversation so far:\n\n${summary}`;
}

/**
 * The request that asks for the summary: the conversation, without tools or an output format (the model is to
 * write text), then the question. The user's own last message, if the input ends with one, merges with it.
 */
export function summaryRequest(request: ResponsesRequest): ResponsesRequest {
  return {
    ...request,
    input: [...inputItems(request), { type: "message", role: "user", content: SUMMARY_REQUEST }],
    tools: undefined,
    tool_choice: undefined,
    text: undefined,
    max_output_tokens: request.max_output_tokens ?? SUMMARY_TOKENS,
  };
}

/** The compacted conversation: every user message of the input, as output items, then the compaction item. */
export function compactedOutput(
  request: ResponsesRequest,
  summary: string,
  newId: (prefix: string) => string,
) {
  const users = inputItems(request).flatMap((item) =>
    item.type === "message" && item.role === "user"
      ? [{
        id: newId("msg"),
        type: "message",
        status: "completed",
        role: "user",
        content: typeof item.content === "string"
          ? [{ type: "input_text", text: item.content }]
          : item.content,
      }]
      : []
  );
  return [...users, { id: newId("cmp"), type: "compaction", encrypted_content: sealed(summary) }];
}

/** The input as items (a string is one user message). */
function inputItems(request: ResponsesRequest): Exclude<ResponsesRequest["input"], string> {
  return typeof request.input === "string"
    ? [{ type: "message", role: "user", content: request.input }]
    : request.input;
}
