/**
 * The chat completion request as OpenAI and Mistral clients send it, validated with zod.
 *
 * Both dialects are accepted in one schema: OpenAI's `image_url: {url, detail}` and Mistral's `image_url: "..."`,
 * `max_tokens` and `max_completion_tokens`, `seed` and `random_seed`, tool call arguments as JSON text or as an
 * object, `tool_choice: "required"` and `"any"`. Unknown fields are ignored (as vLLM and
 * llama.cpp do); the caller logs them. Wrong types are errors that name the field.
 */
import { z } from "zod";
import { droppedKeys } from "./dropped.ts";
import {
  choiceFormat,
  FormatError,
  grammarFormat,
  JSON_OBJECT,
  jsonSchemaFormat,
  type OutputFormat,
  regexFormat,
} from "../../runtime/grammar/format.ts";
import { FUNCTION_NAME } from "../../runtime/prompt/instruct.ts";
import { customFunction } from "../chat/custom_tools.ts";

const textPart = z.object({ type: z.literal("text"), text: z.string() });
const imageUrlPart = z.object({
  type: z.literal("image_url"),
  image_url: z.union([
    z.string(),
    // `detail`: "low" scales the image to 512 pixels on its longest side at most, as OpenAI's low detail; any
    // other value is taken and leaves it as Pixtral sees it (OpenAI's auto/high, its newer "original", Mistral's
    // open enum, null).
    z.object({ url: z.string(), detail: z.string().nullish() }),
  ]),
});
const contentPart = z.discriminatedUnion("type", [textPart, imageUrlPart]);

const functionCall = z.object({
  id: z.string().nullish(),
  type: z.literal("function").nullish(),
  function: z.object({
    name: z.string(),
    arguments: z.union([z.string(), z.record(z.string(), z.unknown())]).nullish(),
  }),
});
/** A custom tool's call (see customTool), read as the call of the function it is: its input as `input`. */
const customCall = z.object({
  id: z.string().nullish(),
  type: z.literal("custom"),
  custom: z.object({ name: z.string(), input: z.string() }),
}).transform(({ id, custom }) => ({
  id,
  type: "function" as const,
  function: { name: custom.name, arguments: JSON.stringify({ input: custom.input }) },
  custom,
}));
const toolCall = z.union([customCall, functionCall]);

const message = z.discriminatedUnion("role", [
  z.object({ role: z.literal("system"), content: z.union([z.string(), z.array(textPart)]) }),
  // OpenAI's newer name for the system role.
  z.object({ role: z.literal("developer"), content: z.union([z.string(), z.array(textPart)]) }),
  z.object({ role: z.literal("user"), content: z.union([z.string(), z.array(contentPart)]) }),
  z.object({
    role: z.literal("assistant"),
    content: z.union([z.string(), z.array(textPart), z.null()]).optional(),
    prefix: z.boolean().optional(),
    tool_calls: z.array(toolCall).nullish(),
  }),
  z.object({
    role: z.literal("tool"),
    content: z.union([z.string(), z.array(textPart)]),
    tool_call_id: z.string().nullish(),
    name: z.string().nullish(),
  }),
]);

const toolName = z.string().regex(FUNCTION_NAME, "a function name is 1-64 of a-z, A-Z, 0-9, _ and -");
const functionTool = z.object({
  // Left out, it is this kind (as vLLM and mistral_common take it).
  type: z.literal("function").default("function"),
  function: z.object({
    name: toolName,
    description: z.string().nullish(),
    parameters: z.record(z.string(), z.unknown()).nullish(),
    strict: z.boolean().nullish(),
  }),
});
/**
 * OpenAI's custom tool, whose input is text, in a grammar or free: read as the function of one string the model
 * calls (see custom_tools.ts), the tool kept beside it as `custom`.
 */
const customTool = z.object({
  type: z.literal("custom"),
  custom: z.object({
    name: toolName,
    description: z.string().nullish(),
    format: z.discriminatedUnion("type", [
      z.object({ type: z.literal("text") }),
      z.object({
        type: z.literal("grammar"),
        grammar: z.object({ syntax: z.enum(["lark", "regex"]), definition: z.string() }),
      }),
    ]).nullish(),
  }),
}).transform(({ custom }) => {
  const grammar = custom.format?.type === "grammar" ? custom.format.grammar : undefined;
  return {
    type: "function" as const,
    function: customFunction(custom.name, custom.description, grammar) as FunctionOf<typeof functionTool>,
    custom,
  };
});
type FunctionOf<T extends z.ZodType> = z.infer<T> extends { function: infer F } ? F : never;
const tool = z.union([customTool, functionTool]);

const toolChoice = z.union([
  z.enum(["none", "auto", "required", "any"]),
  // A tool's name alone, as LangChain's ChatMistralAI sends a named choice: that function is called.
  z.string().transform((name) => ({ type: "function" as const, function: { name }, bare: true as const })),
  z.object({ type: z.literal("function"), function: z.object({ name: z.string() }) }),
  // A custom tool, called as the function it is.
  z.object({ type: z.literal("custom"), custom: z.object({ name: z.string() }) }).transform(({ custom }) => ({
    type: "function" as const,
    function: { name: custom.name },
    custom,
  })),
  // OpenAI's: every tool stays in the prompt, the model calls only these ("required": one of them).
  z.object({
    type: z.literal("allowed_tools"),
    allowed_tools: z.object({
      mode: z.enum(["auto", "required"]),
      tools: z.array(z.union([
        z.object({ type: z.literal("function"), function: z.object({ name: z.string() }) }),
        z.object({ type: z.literal("custom"), custom: z.object({ name: z.string() }) }),
      ])),
    }),
  }),
]);

/** The most tools one request may offer (each one's schema becomes prompt tokens and, when forced, grammar). */
export const MAX_TOOLS = 128;

/** The most choices (`n`) one request may ask for; each takes a place in the engine's queue. */
export const MAX_CHOICES = 16;
/**
 * Stop strings (and stop token ids) a request may give: OpenAI takes 4, Ollama and vLLM any number; tools send a
 * dozen or more (Continue's autocomplete: its template's, the language's and the user's).
 */
export const MAX_STOPS = 64;

/**
 * OpenAI's and Mistral's `response_format`, as the OutputFormat the engine enforces (undefined for plain text).
 * A schema is checked here, so that one the server cannot enforce is refused before any work.
 */
const responseFormat = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    json_schema: z.object({
      name: z.string().nullish(),
      description: z.string().nullish(),
      schema: z.union([z.record(z.string(), z.unknown()), z.boolean()]).nullish(),
      strict: z.boolean().nullish(),
    }),
  }),
]).transform((value, ctx): OutputFormat | undefined => {
  if (value.type === "text") return undefined;
  if (value.type === "json_object") return JSON_OBJECT;
  try {
    return jsonSchemaFormat(value.json_schema.schema ?? {});
  } catch (err) {
    if (!(err instanceof FormatError)) throw err;
    ctx.issues.push({ code: "custom", message: err.message, input: value, path: ["json_schema", "schema"] });
    return z.NEVER;
  }
});

/** A format made by `make` from a value of `input`; the value's FormatError (or JSON SyntaxError) is its issue. */
function formatOf(make: (value: unknown) => OutputFormat, input: z.ZodType = z.unknown()) {
  return input.transform((value, ctx): OutputFormat => {
    try {
      return make(value);
    } catch (err) {
      if (!(err instanceof FormatError) && !(err instanceof SyntaxError)) throw err;
      ctx.issues.push({ code: "custom", message: err.message, input: value });
      return z.NEVER;
    }
  });
}

/** A JSON Schema given as a value or as JSON text (vLLM takes both), as the OutputFormat that enforces it. */
const schemaFormat = formatOf(
  (value) => jsonSchemaFormat(typeof value === "string" ? JSON.parse(value) : value),
  z.union([z.record(z.string(), z.unknown()), z.boolean(), z.string()]),
);
/** A list of strings the output must be one of, exactly (vLLM's choice). */
const choiceList = formatOf(choiceFormat);
/** A regular expression the output must match whole (vLLM's regex). */
const regex = formatOf(regexFormat);
/** A GBNF grammar the output must match from its rule `root` (llama.cpp's grammar, vLLM's). */
const grammar = formatOf(grammarFormat);

/**
 * vLLM's structured outputs, for code written against it: `guided_json`, `guided_choice`, `guided_regex` and
 * `guided_grammar` (its older fields) and `structured_outputs` (`json`, `json_object`, `choice`, `regex`,
 * `grammar`; its `structural_tag` is refused, see outputFormatOf); and llama.cpp's `grammar` and `json_schema`.
 */
export const vllmStructured = {
  guided_json: schemaFormat.nullish(),
  json_schema: schemaFormat.nullish(),
  guided_choice: choiceList.nullish(),
  guided_regex: regex.nullish(),
  guided_grammar: grammar.nullish(),
  grammar: grammar.nullish(),
  structured_outputs: z.object({
    json: schemaFormat.nullish(),
    json_object: z.boolean().nullish(),
    choice: choiceList.nullish(),
    regex: regex.nullish(),
    grammar: grammar.nullish(),
    structural_tag: z.unknown().optional(),
  }).nullish(),
};

type VllmStructured = { [K in keyof typeof vllmStructured]?: z.infer<(typeof vllmStructured)[K]> };

/**
 * The output format a request asks for in any of the ways it may (undefined: free text); vLLM's forms this
 * server cannot enforce, or two forms at once, are refused.
 */
export function outputFormatOf(
  request: VllmStructured & { response_format?: OutputFormat | null },
): OutputFormat | undefined {
  const structured = request.structured_outputs;
  if (structured?.structural_tag != null) {
    throw new RequestError(
      "structured_outputs.structural_tag is not supported: the output is enforced as JSON, as one of a list of " +
        "strings, by a regular expression or by a grammar",
      "structured_outputs.structural_tag",
      "unsupported_parameter",
    );
  }
  if (
    structured && structured.json == null && !structured.json_object && structured.choice == null &&
    structured.regex == null && structured.grammar == null
  ) {
    // As vLLM answers it: its options alone (or a misspelt constraint) would give free text without a word.
    throw new RequestError(
      "structured_outputs names no constraint: give json, json_object, choice, regex or grammar",
      "structured_outputs",
    );
  }
  const given = [
    ["response_format", request.response_format ?? undefined],
    ["guided_json", request.guided_json ?? undefined],
    ["guided_choice", request.guided_choice ?? undefined],
    ["guided_regex", request.guided_regex ?? undefined],
    ["guided_grammar", request.guided_grammar ?? undefined],
    ["grammar", request.grammar ?? undefined],
    ["json_schema", request.json_schema ?? undefined],
    ["structured_outputs.json", structured?.json ?? undefined],
    ["structured_outputs.json_object", structured?.json_object ? JSON_OBJECT : undefined],
    ["structured_outputs.choice", structured?.choice ?? undefined],
    ["structured_outputs.regex", structured?.regex ?? undefined],
    ["structured_outputs.grammar", structured?.grammar ?? undefined],
  ].filter(([, format]) => format !== undefined) as [string, OutputFormat][];
  if (given.length > 1) {
    throw new RequestError(`${given[0][0]} and ${given[1][0]} both ask for a format; give one`, given[1][0]);
  }
  return given[0]?.[1];
}

const probability = z.number().min(0).max(1);
const penalty = z.number().min(-2).max(2);

/**
 * A sampling seed: any integer of 64 bits, signed or not, as OpenAI and vLLM take them (JSON numbers past 2⁵³
 * arrive rounded, the same way each time); samplerSeed folds it to the sampler's 32.
 */
const seed = z.number().refine((v) => Number.isInteger(v) && v >= -(2 ** 63) && v < 2 ** 64, {
  message: "the seed must be an integer of at most 64 bits",
});

export const chatRequestSchema = z.object({
  model: z.string().nullish(),
  messages: z.array(message).min(1),
  max_tokens: z.number().int().positive().nullish(),
  max_completion_tokens: z.number().int().positive().nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: probability.nullish(),
  top_k: z.number().int().min(-1).nullish(),
  min_p: probability.nullish(),
  seed: seed.nullish(),
  random_seed: seed.nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(MAX_STOPS, `at most ${MAX_STOPS} stop strings`)])
    .nullish(),
  presence_penalty: penalty.nullish(),
  frequency_penalty: penalty.nullish(),
  repetition_penalty: z.number().positive().max(10).nullish(),
  n: z.number().int().min(1).max(MAX_CHOICES).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
  /** Mistral's guardrail: its safety system prompt goes before the conversation's own. */
  safe_prompt: z.boolean().nullish(),
  /** Constrained decoding: the output follows the format (JSON, or JSON under a schema). */
  response_format: responseFormat.nullish(),
  ...vllmStructured,
  /** Token id (as text) to a value added to its logit, OpenAI's -100 (a ban) to 100 (all but forced). */
  logit_bias: z.record(z.string(), z.number().min(-100).max(100)).nullish(),
  tools: z.array(tool).max(MAX_TOOLS).nullish(),
  tool_choice: toolChoice.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  /** OpenAI's deprecated function calling, refused with a pointer to tools (ignored, it would answer in text). */
  functions: z.unknown().optional(),
  function_call: z.unknown().optional(),
  /** vLLM's: generate on past the end-of-sequence token (benchmarks that want every answer max_tokens long). */
  ignore_eos: z.boolean().nullish(),
  /** vLLM's: no stop token before this many tokens. */
  min_tokens: z.number().int().min(0).nullish(),
  /** vLLM's: continue the last (assistant) message, which a conversation ending in one gets anyway here. */
  continue_final_message: z.boolean().nullish(),
  /** vLLM's: nothing to add or leave out here (Pixtral's format has no generation prompt); true with the above, a 400. */
  add_generation_prompt: z.boolean().nullish(),
  /** vLLM's: more tokens that end the answer. */
  stop_token_ids: z.array(z.number().int().min(0)).max(MAX_STOPS).nullish(),
  /** Our extension: which reference's image resizing to reproduce for this request (default: the server's). */
  image_resize: z.enum(["mistral", "hf"]).nullish(),
});

export type ChatRequest = z.infer<typeof chatRequestSchema>;
export type ChatMessage = ChatRequest["messages"][number];
export type ContentPart = z.infer<typeof contentPart>;

/** A request that failed validation: `param` names the field the way OpenAI's errors do (`messages[0].content`). */
export class RequestError extends Error {
  override name = "RequestError";
  constructor(message: string, readonly param: string | null = null, readonly code: string | null = null) {
    super(message);
  }
}

function fieldPath(path: PropertyKey[]): string {
  return path.map((key, i) => typeof key === "number" ? `[${key}]` : `${i ? "." : ""}${String(key)}`).join(
    "",
  );
}

export interface ParsedChatRequest {
  request: ChatRequest;
  /** Fields that were not understood and are ignored: top-level ones, and paths inside messages and tools. */
  ignored: string[];
}

type Issue = z.core.$ZodIssue;

/**
 * For a value matching no branch of a union, the branch that got furthest explains the mistake best; a branch of
 * another `type` than the value's (a custom tool's, for a function tool whose `function` is wrong) explains
 * nothing.
 */
function deepestIssue(issue: Issue): Issue {
  if (issue.code !== "invalid_union" || issue.errors.length === 0) return issue;
  const otherType = (branch: Issue[]) =>
    branch.some((inner) =>
      inner.code === "invalid_value" && inner.path.length === 1 && inner.path[0] === "type"
    );
  const typed = issue.errors.filter((branch) => !otherType(branch));
  let best: Issue = issue;
  for (const branch of typed.length ? typed : issue.errors) {
    for (const inner of branch) {
      const candidate = deepestIssue({ ...inner, path: [...issue.path, ...inner.path] } as Issue);
      // Deeper is more telling; at the same depth, a branch whose type matched but whose check failed (a list
      // of stop strings too long) says more than the union's "Invalid input".
      const checked = best === issue && candidate.code !== "invalid_type" &&
        candidate.code !== "invalid_union";
      if (
        candidate.path.length > best.path.length || (candidate.path.length === best.path.length && checked)
      ) {
        best = candidate;
      }
    }
  }
  return best;
}

/** Validates `body` against a schema; the first problem becomes a RequestError naming its field. */
export function parseWith<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new RequestError("the request body must be a JSON object");
  }
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = deepestIssue(result.error.issues[0]);
  const param = fieldPath(issue.path);
  throw new RequestError(param ? `${param}: ${issue.message}` : issue.message, param || null);
}

/** Fields this server understands but cannot honour: refused rather than answered as if they were absent. */
function refuseUnsupported(request: ChatRequest): void {
  if (request.top_logprobs && !request.logprobs) {
    throw new RequestError("top_logprobs needs logprobs: true", "top_logprobs");
  }
  for (const [old, now] of [["functions", "tools"], ["function_call", "tool_choice"]] as const) {
    if (request[old] != null) {
      throw new RequestError(
        `${old} is OpenAI's deprecated form of function calling: send ${now} instead`,
        old,
        "unsupported_parameter",
      );
    }
  }
}

export function parseChatRequest(body: unknown): ParsedChatRequest {
  const request = parseWith(chatRequestSchema, body);
  request.response_format = outputFormatOf(request);
  refuseUnsupported(request);
  const known = new Set(Object.keys(chatRequestSchema.shape));
  const raw = body as Record<string, unknown>;
  const ignored = [
    ...Object.keys(raw).filter((key) => !known.has(key)),
    ...droppedKeys(raw.messages, request.messages, "messages"),
    ...droppedKeys(raw.tools, request.tools, "tools"),
  ];
  refuseMessageImages(raw.messages);
  return { request, ignored };
}

/**
 * Refuses images given beside a message's content (Ollama's form), which the schema would drop: the answer
 * would silently be made without them.
 */
export function refuseMessageImages(messages: unknown): void {
  if (!Array.isArray(messages)) return;
  const at = messages.findIndex((m) => typeof m === "object" && m !== null && "images" in m);
  if (at >= 0) {
    throw new RequestError(
      `messages[${at}].images: images go in the message's content, as parts ` +
        `{"type": "image_url", "image_url": {"url": ...}} (Ollama's form is taken at /api/chat)`,
      `messages[${at}].images`,
    );
  }
}
