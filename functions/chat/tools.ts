/**
 * Function calling in Pixtral's format (tokenizer v3): what `tools` and `tool_choice` make the engine do, and the
 * calls read back out of the generated tokens.
 *
 * The model calls functions by writing [TOOL_CALLS] and then a JSON list of `{"name", "arguments"}`. Under
 * `"auto"` it decides: wherever it writes [TOOL_CALLS] (first, or after some text), what follows is constrained to a
 * list of calls whose arguments follow the functions' parameter schemas (the output-format machinery of
 * `response_format`); text is free. `"required"` (Mistral's `"any"`) and a
 * named function begin the answer with [TOOL_CALLS] themselves. `"none"` keeps the tools in
 * the prompt, as mistral_common does, and bans [TOOL_CALLS].
 */
import {
  FormatError,
  InvalidSchemaError,
  jsonSchemaFormat,
  type OutputFormat,
  relaxedSchema,
  toolCallsFormat,
} from "../../runtime/grammar/format.ts";
import {
  fromJs,
  pyAt,
  pyJsonDumps,
  pyJsonLoads,
  type PyValue,
  toJs,
  TooDeepError,
} from "../../runtime/prompt/pyjson.ts";
import type { ToolDefinition } from "../../runtime/prompt/instruct.ts";
import { log } from "../../runtime/log.ts";
import { type ChatRequest, RequestError } from "../schema/chat.ts";
import { mayBe } from "../../runtime/grammar/schema.ts";
import { type InputGrammar, inputPattern, inputSchema } from "./custom_tools.ts";

/** The tools of a request and how the model may use them. */
export interface ToolUse {
  definitions: ToolDefinition[];
  choice: "none" | "auto" | "required" | { name: string };
  /** The names the model may call: every tool's, the named one's, or those of OpenAI's `allowed_tools`. */
  callable: string[];
  /** Whether one answer may make several calls (OpenAI's `parallel_tool_calls`, default true). */
  parallel: boolean;
  /** Each function's `strict` flag, by name. */
  strict: Map<string, boolean>;
  /**
   * Custom tools' input patterns, by name: a call's `input` string is held to it (the prompt shows the function
   * without it; see custom_tools.ts).
   */
  inputs: Map<string, string>;
}

/** inputPattern (see custom_tools.ts), a grammar Lark would not read a 400 at `param`. */
function heldInput(name: string, grammar: InputGrammar, param: string): string | undefined {
  try {
    return inputPattern(name, grammar);
  } catch (err) {
    if (err instanceof FormatError) throw new RequestError(`${param}: ${err.message}`, param);
    throw err;
  }
}

/** A call as the API reports it: `arguments` as JSON text. */
export interface ToolCallOut {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/**
 * The request's tools, checked; undefined when it has none. `source`, the request body as Python reads it, gives
 * the parameter schemas as the client wrote them (key order, 1.0), which JSON.parse loses.
 */
export function toolUse(
  chat: Pick<ChatRequest, "tools" | "tool_choice" | "parallel_tool_calls">,
  source?: PyValue,
): ToolUse | undefined {
  const inputs = new Map<string, string>();
  const tools = chat.tools ?? [];
  const choice = chat.tool_choice ?? "auto";
  const names = tools.map((t) => t.function.name);
  if (
    typeof choice === "object" && choice.type === "function" && "bare" in choice &&
    !names.includes(choice.function.name)
  ) {
    throw new RequestError(
      `tool_choice ${JSON.stringify(choice.function.name)} is none of "none", "auto", "required", "any" ` +
        "and no tool's name",
      "tool_choice",
    );
  }
  if (tools.length === 0) {
    // (The Responses API's allowed tools may all be hosted ones, which the model is not given.)
    const auto = typeof choice === "object" && choice.type === "allowed_tools" &&
      choice.allowed_tools.mode === "auto";
    if (choice === "auto" || choice === "none" || auto) return undefined;
    throw new RequestError("tool_choice asks for a call but the request has no tools", "tool_choice");
  }
  const twice = names.find((name, i) => names.indexOf(name) !== i);
  if (twice !== undefined) {
    throw new RequestError(
      `two tools are named ${JSON.stringify(twice)}`,
      `tools[${names.lastIndexOf(twice)}]`,
    );
  }
  const unknown = (name: string, param: string) => {
    if (!names.includes(name)) {
      throw new RequestError(
        `tool_choice names ${JSON.stringify(name)}, which is not among the tools`,
        param,
      );
    }
  };
  let callable = names;
  if (typeof choice === "object" && choice.type === "allowed_tools") {
    callable = choice.allowed_tools.tools.map((t, i) => {
      const [name, param] = t.type === "function" ? [t.function.name, "function"] : [t.custom.name, "custom"];
      unknown(name, `tool_choice.allowed_tools.tools[${i}].${param}.name`);
      return name;
    });
    if (!callable.length && choice.allowed_tools.mode === "required") {
      throw new RequestError(
        "tool_choice asks for a call of one of no tools",
        "tool_choice.allowed_tools.tools",
      );
    }
  } else if (typeof choice === "object") {
    unknown(
      choice.function.name,
      "custom" in choice ? "tool_choice.custom.name" : "tool_choice.function.name",
    );
    callable = [choice.function.name];
  }
  tools.forEach(({ function: f }, i) => {
    const type = f.parameters?.type;
    // Through references, constants and combinations too ({"const": "hello"}, a oneOf of scalars).
    if (f.parameters && !mayBe(f.parameters, f.parameters, "object")) {
      throw new RequestError(
        `tools[${i}].function.parameters: the arguments of a call are a JSON object; the schema ${
          type === undefined ? "allows none" : `says ${JSON.stringify(type)}`
        }`,
        `tools[${i}].function.parameters`,
      );
    }
  });
  // Custom tools: a call's input held to the tool's grammar.
  tools.forEach((t, i) => {
    const format = "custom" in t ? t.custom.format : undefined;
    if (format?.type !== "grammar") return;
    const pattern = heldInput(
      t.function.name,
      format.grammar,
      `tools[${i}].custom.format.grammar.definition`,
    );
    if (pattern !== undefined) inputs.set(t.function.name, pattern);
  });
  const definitions = tools.map(({ function: f }, i): ToolDefinition => ({
    name: f.name,
    description: f.description ?? "",
    parameters: pyAt(source, "tools", i, "function", "parameters") ??
      fromRequest(f.parameters ?? {}, `tools[${i}].function.parameters`),
  }));
  return {
    definitions,
    choice: typeof choice !== "object"
      ? choice === "any" ? "required" : choice
      : choice.type !== "allowed_tools"
      ? { name: choice.function.name }
      : callable.length
      ? choice.allowed_tools.mode
      : "none",
    callable,
    parallel: chat.parallel_tool_calls ?? true,
    strict: new Map(tools.map(({ function: f }) => [f.name, f.strict ?? false])),
    inputs,
  };
}

/**
 * The request body as Python reads it, when the prompt needs it: for tools and for call arguments given as
 * objects (JSON text arguments are read that way anyway).
 */
export function pySource(
  chat: Pick<ChatRequest, "messages" | "tools">,
  text: string | undefined,
): PyValue | undefined {
  const objects = chat.messages.some((m) =>
    m.role === "assistant" && m.tool_calls?.some((c) => typeof c.function.arguments === "object")
  );
  return text !== undefined && (chat.tools?.length || objects) ? pyJsonLoads(text) : undefined;
}

/** A request's JSON value as Python holds it; too deep a value is the client's error (400), not the stack's. */
export function fromRequest(value: unknown, param: string): PyValue {
  try {
    return fromJs(value);
  } catch (err) {
    if (err instanceof TooDeepError) throw new RequestError(`${param}: ${err.message}`, param);
    throw err;
  }
}

/** What the engine does for the tool choice: ids that begin the answer, its output format, tokens banned. */
export interface ToolGeneration {
  lead: number[];
  format?: OutputFormat;
  /** The format applies only after this token, wherever it comes (the model's own [TOOL_CALLS] under "auto"). */
  trigger?: number;
  banned: number[];
}

/**
 * Each function's parameter schema as the grammar takes it, and why the grammar cannot enforce it where it cannot.
 * One that is no JSON Schema at all (a type "int", additionalProperties "abc") is a 400 whatever the choice, as
 * OpenAI's.
 */
function checkedParameters(use: ToolUse): { parameters: unknown; problem?: FormatError }[] {
  return use.definitions.map((d, i) => {
    const input = use.inputs.get(d.name);
    let parameters = input === undefined ? toJs(d.parameters) : inputSchema(input);
    if (typeof parameters !== "object" || parameters === null || Object.keys(parameters).length === 0) {
      parameters = { type: "object" };
    }
    try {
      jsonSchemaFormat(parameters);
      return { parameters };
    } catch (err) {
      if (!(err instanceof FormatError)) throw err;
      if (err instanceof InvalidSchemaError) {
        throw new RequestError(
          `tools[${i}].function.parameters: ${err.message}`,
          `tools[${i}].function.parameters`,
        );
      }
      return { parameters, problem: err };
    }
  });
}

/**
 * The generation `use` asks for (`toolCalls`: the [TOOL_CALLS] id). A call's arguments follow the function's
 * parameter schema; a schema the grammar cannot enforce is a 400 for a `strict` function under a forced choice;
 * otherwise (OpenAI enforces nothing without `strict`) what the grammar can enforce of it holds (relaxedSchema),
 * or, when not even that, any JSON object.
 */
export function toolGeneration(use: ToolUse | undefined, toolCalls: number): ToolGeneration {
  if (!use) return { lead: [], banned: [] };
  const checked = checkedParameters(use);
  if (use.choice === "none") return { lead: [], banned: [toolCalls] };
  const functions = use.definitions.flatMap((d, i) => {
    if (!use.callable.includes(d.name)) return [];
    let { parameters } = checked[i];
    const err = checked[i].problem;
    if (err) {
      // Under "auto" the calls are constrained only if the model makes one: a schema that cannot be enforced
      // then leaves that function's arguments free rather than failing an answer that may be text.
      if (use.strict.get(d.name) && use.choice !== "auto") {
        throw new RequestError(
          `tools[${i}].function.parameters: ${err.message}; a strict function's arguments cannot be enforced`,
          `tools[${i}].function.parameters`,
        );
      }
      try {
        const relaxed = relaxedSchema(parameters);
        log.warn("a function's arguments are constrained without what the grammar cannot enforce", {
          function: d.name,
          reason: err.message,
          dropped: relaxed.dropped,
        });
        parameters = relaxed.schema;
      } catch (again) {
        if (!(again instanceof FormatError)) throw again;
        log.warn("a function's arguments cannot be constrained: any JSON object", {
          function: d.name,
          reason: err.message,
        });
        parameters = { type: "object" };
      }
    }
    return [{ name: d.name, parameters }];
  });
  let format: OutputFormat;
  try {
    format = toolCallsFormat(functions, typeof use.choice === "object" || !use.parallel);
  } catch (err) {
    if (!(err instanceof FormatError)) throw err;
    // Each schema passed alone; together they are too large or deep. "auto" asked for no enforcement.
    if (use.choice === "auto") {
      log.warn("the tools' call grammar is too large; calls under auto are not constrained", {
        error: err.message,
      });
      return { lead: [], banned: [] };
    }
    throw new RequestError(`tools: the grammar of the calls cannot be made: ${err.message}`, "tools");
  }
  if (use.choice === "auto") return { lead: [], format, trigger: toolCalls, banned: [] };
  return { lead: [toolCalls], format, banned: [] };
}

const ALPHANUMERIC = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/** A new call id of the form Pixtral's format takes: 9 letters and digits. */
export function newToolCallId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(9));
  // 62 * 4 = 248: bytes from 248 up are drawn again so that every character is equally likely.
  return [...bytes].map((b) => b < 248 ? ALPHANUMERIC[b % 62] : newToolCallId()[0]).join("");
}

/**
 * A client's call id as Pixtral's format takes it: ids that are 9 letters and digits as they are (ours are),
 * others (OpenAI's `call_...`) as 9 characters derived from the whole id (FNV-1a), so a call and its result
 * still match.
 */
export function promptToolCallId(id: string): string {
  if (/^[a-zA-Z0-9]{9}$/.test(id)) return id;
  let h = 0xcbf29ce484222325n;
  for (const b of new TextEncoder().encode(id)) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  let out = "";
  for (let i = 0; i < 9; i++, h /= 62n) out += ALPHANUMERIC[Number(h % 62n)];
  return out;
}

/**
 * The calls in what the model wrote after [TOOL_CALLS]: a JSON list of `{"name", "arguments"}` (a lone object is
 * taken as a list of one; arguments given as JSON text are read), calling only `names` when given. Undefined
 * when it is not that.
 */
export function parseToolCalls(text: string, names?: readonly string[]): ToolCallOut[] | undefined {
  const value = pyJsonLoads(text.trim());
  if (value === undefined || value === null) return undefined;
  const list = Array.isArray(value) ? value : [value];
  const calls: ToolCallOut[] = [];
  for (const item of list) {
    if (!(item instanceof Map)) return undefined;
    const name = item.get("name");
    let args: PyValue | undefined = item.get("arguments") ?? new Map();
    if (typeof name !== "string" || !name || (names && !names.includes(name))) return undefined;
    if (typeof args === "string") args = pyJsonLoads(args);
    if (!(args instanceof Map)) return undefined;
    calls.push({ id: newToolCallId(), type: "function", function: { name, arguments: pyJsonDumps(args) } });
  }
  return calls.length ? calls : undefined;
}
