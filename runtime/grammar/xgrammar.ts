/**
 * xgrammar, the grammar engine of vLLM, SGLang and WebLLM, compiled to WebAssembly (npm @mlc-ai/web-xgrammar).
 *
 * The package is a UMD bundle around an Emscripten module. Outside a browser it reaches for CommonJS's `require`
 * and `__filename` while it loads and while its module initialises, and exports to `globalThis.xgrammar` when
 * no CommonJS `exports` is there; Deno gives ES modules none of these, so they are lent for that time only.
 */
import { createRequire } from "node:module";
import type * as XGrammar from "@mlc-ai/web-xgrammar";

export type { XGrammar };
type Module = typeof XGrammar;

let loading: Promise<Module> | undefined;
/** Where the module's error output goes (it binds console.error once, when it initialises). */
let printErr: (...args: unknown[]) => void = console.error;

/** The loaded and initialised module (once per thread). */
export function xgrammar(): Promise<Module> {
  return loading ??= load();
}

async function load(): Promise<Module> {
  const g = globalThis as { require?: unknown; __filename?: unknown; xgrammar?: Module };
  const lent = g.require === undefined && g.__filename === undefined;
  if (lent) {
    g.require = createRequire(import.meta.url);
    g.__filename = new URL(import.meta.url).pathname;
  }
  const error = console.error;
  console.error = (...args: unknown[]) => printErr(...args);
  try {
    await import("@mlc-ai/web-xgrammar");
    const xg = g.xgrammar;
    if (!xg) throw new Error("@mlc-ai/web-xgrammar did not load");
    // The WebAssembly module initialises on first use.
    (await xg.Grammar.builtinJSONGrammar()).dispose();
    return xg;
  } finally {
    console.error = error;
    if (lent) {
      delete g.require;
      delete g.__filename;
    }
  }
}

/**
 * Runs `f`, a call into xgrammar. Its C++ checks print "[FATAL] file:line: message" to the error output and then
 * abort, which reaches JavaScript as RuntimeError("Aborted()"): the printed message becomes the error's.
 */
export async function explained<T>(f: () => Promise<T>): Promise<T> {
  const printed: string[] = [];
  const previous = printErr;
  printErr = (...args: unknown[]) => void printed.push(args.map(String).join(" "));
  try {
    return await f();
  } catch (err) {
    const fatal = printed.map((line) => /^\[FATAL\][^:]*:\d+: (.*)$/s.exec(line)?.[1]).find(Boolean);
    throw new Error(fatal ?? String((err as Error)?.message ?? err));
  } finally {
    printErr = previous;
  }
}
