/**
 * xgrammar, the grammar engine of vLLM, SGLang and WebLLM, compiled to WebAssembly (npm @mlc-ai/web-xgrammar).
 *
 * The package is a UMD bundle around an Emscripten module whose state (its WebAssembly memory) lives in the
 * bundle's closure. A C++ check that fails, or memory running out, aborts that module for good, so each call of
 * `xgrammar()` evaluates the bundle anew and gives an independent instance: whoever holds a broken one can
 * start over. Outside a browser the bundle reaches for CommonJS's `require` and `__filename`, which it is given.
 */
import { createRequire } from "node:module";
import type * as XGrammar from "@mlc-ai/web-xgrammar";

export type { XGrammar };
type Module = typeof XGrammar;

/** A failed call into xgrammar; `reason` is the message its C++ check printed, if it printed one. */
export class XGrammarError extends Error {
  override name = "XGrammarError";
  constructor(readonly reason: string | undefined, cause: unknown) {
    super(reason ?? String((cause as Error)?.message ?? cause));
  }
}

let bundle: Promise<{ source: string; url: URL }> | undefined;
/** Where the instances' error output goes (each binds console.error once, when it initialises). */
let printErr: (...args: unknown[]) => void = console.error;

function source(): Promise<{ source: string; url: URL }> {
  return bundle ??= (async () => {
    // A literal import, so that Deno fetches the package with the program; the bundle's body wants the CommonJS
    // globals while it runs, and leaves its exports on globalThis, where nothing should find them.
    const g = globalThis as { require?: unknown; __filename?: unknown; xgrammar?: unknown };
    g.require = createRequire(import.meta.url);
    g.__filename = new URL(import.meta.url).pathname;
    try {
      await import("@mlc-ai/web-xgrammar");
    } finally {
      delete g.require;
      delete g.__filename;
      delete g.xgrammar;
    }
    const url = new URL(import.meta.resolve("@mlc-ai/web-xgrammar"));
    return { source: await Deno.readTextFile(url), url };
  })();
}

/** A new instance of the module, initialised (about 0.1 s). */
export async function xgrammar(): Promise<Module> {
  const { source: text, url } = await source();
  const exports = {} as Module;
  new Function("exports", "module", "require", "__filename", text)(
    exports,
    { exports },
    createRequire(url),
    url.pathname,
  );
  const error = console.error;
  console.error = (...args: unknown[]) => printErr(...args);
  try {
    // The WebAssembly module initialises on first use, and binds its error output then.
    (await exports.Grammar.builtinJSONGrammar()).dispose();
  } finally {
    console.error = error;
  }
  return exports;
}

/**
 * Runs `f`, a call into xgrammar. Its C++ checks print "[FATAL] file:line: message" to the error output and then
 * abort, which reaches JavaScript as RuntimeError("Aborted()"): the printed message becomes the error's reason.
 */
export async function explained<T>(f: () => Promise<T>): Promise<T> {
  const printed: string[] = [];
  const previous = printErr;
  printErr = (...args: unknown[]) => void printed.push(args.map(String).join(" "));
  try {
    return await f();
  } catch (err) {
    const fatal = printed.map((line) => /^\[FATAL\][^:]*:\d+: (.*)$/s.exec(line)?.[1]).find(Boolean);
    throw new XGrammarError(fatal, err);
  } finally {
    printErr = previous;
  }
}
