/**
 * Custom tools (OpenAI's): tools whose input is free text rather than JSON arguments, in a format given as a
 * grammar or none (Codex's `apply_patch`, with a Lark grammar). Pixtral calls functions with JSON arguments, so
 * the model calls one as a function of one string, `input` (as gateways to chat models do). A grammar the
 * engine can write as a pattern (see lark.ts) holds that string to it, escaped as JSON writes it; the prompt
 * shows the function without it, the grammar in the tool's description.
 */
import { FormatError, jsonSchemaFormat } from "../../runtime/grammar/format.ts";
import { larkPattern, pythonPattern, UnwrittenGrammar } from "../../runtime/grammar/lark.ts";
import { log } from "../../runtime/log.ts";
import { pyJsonLoads } from "../../runtime/prompt/pyjson.ts";
import { StringReader } from "./call_reader.ts";

/** The parameters of the function a custom tool is called as: its input, as one string. */
export const CUSTOM_INPUT = {
  type: "object",
  properties: { input: { type: "string" } },
  required: ["input"],
  additionalProperties: false,
} as const;

/** The input a custom tool's call gives: its arguments' `input`, or as much of it as they hold (cut short). */
export function customInput(args: string): string {
  const value = pyJsonLoads(args);
  const input = value instanceof Map ? value.get("input") : undefined;
  return typeof input === "string" ? input : customInputSoFar(args);
}

/**
 * The input of a custom tool's call read as its arguments are written: `{"input": "` and then the string's
 * characters up to the last whole one (an escape or a surrogate pair cut short waits for the rest). Each piece is
 * read once: a long patch streams in linear time.
 */
export class CustomInputReader {
  /** The arguments until the string opens. */
  #head = "";
  #string?: StringReader;
  #stopped = false;
  #input = "";

  /** The input so far, with `piece` of the arguments added. */
  push(piece: string): string {
    let rest = piece;
    if (!this.#string) {
      this.#head += piece;
      const open = /^\s*\{\s*"input"\s*:\s*"/.exec(this.#head);
      if (!open) return "";
      this.#string = new StringReader();
      rest = this.#head.slice(open[0].length);
    }
    for (const c of rest) {
      if (this.#stopped || this.#string.ended) break;
      const read = this.#string.push(c);
      if (read === undefined) this.#stopped = true; // not JSON: the input stands as far as it went
      else this.#input += read;
    }
    return this.#input;
  }
}

/** The input of a custom tool's call as far as `args`, its arguments written so far, give it. */
export function customInputSoFar(args: string): string {
  return new CustomInputReader().push(args);
}

/** A custom tool's input format: a grammar in Lark's syntax or a regular expression. */
export interface InputGrammar {
  syntax: "lark" | "regex";
  definition: string;
}

/** The parameters a custom tool's calls are held to: CUSTOM_INPUT with the input's pattern. */
export function inputSchema(pattern: string) {
  return { ...CUSTOM_INPUT, properties: { input: { type: "string", pattern } } };
}

/**
 * The pattern a custom tool's input is held to, or undefined where the grammar engine cannot hold it to the
 * grammar (the grammar is then only in the description, for the model to follow; the log says why). A Lark
 * grammar that Lark would not read, or a regular expression (Python's or Rust's syntax) that is none, throws its
 * FormatError: the client's error.
 */
export function inputPattern(name: string, grammar: InputGrammar): string | undefined {
  // A request's tools are read more than once (a conversation cut to fit is prepared again).
  if (checked.has(grammar)) return checked.get(grammar);
  const pattern = heldTo(name, grammar);
  checked.set(grammar, pattern);
  return pattern;
}

const checked = new WeakMap<InputGrammar, string | undefined>();

function heldTo(name: string, grammar: InputGrammar): string | undefined {
  let pattern: string;
  try {
    pattern = grammar.syntax === "lark"
      ? larkPattern(grammar.definition, "")
      : pythonPattern(grammar.definition);
  } catch (err) {
    if (err instanceof UnwrittenGrammar) return unheld(err);
    throw err;
  }
  try {
    new RegExp(pattern, "u");
  } catch (err) {
    throw new FormatError(`not a valid regular expression: ${(err as Error).message}`, "");
  }
  try {
    jsonSchemaFormat(inputSchema(pattern));
    return pattern;
  } catch (err) {
    if (!(err instanceof FormatError)) throw err;
    return unheld(err);
  }

  function unheld(err: Error): undefined {
    log.warn("a custom tool's input is not held to its grammar; the model is given it to follow", {
      tool: name,
      syntax: grammar.syntax,
      reason: err.message,
    });
    return undefined;
  }
}

/**
 * A custom tool as the function the model calls: a function of one string, its grammar, if any, in its
 * description for the model to follow.
 */
export function customFunction(name: string, description?: string | null, grammar?: InputGrammar) {
  const format = grammar &&
    `The input is text in this format (${grammar.syntax} grammar):\n${grammar.definition}`;
  return {
    name,
    description: [description, format].filter(Boolean).join("\n\n") || undefined,
    parameters: CUSTOM_INPUT,
    strict: true,
  };
}
