/**
 * Inside the grammar worker (see worker.ts): xgrammar with the model's vocabulary, compiling formats and keeping
 * one matcher per constrained sequence.
 */
/// <reference lib="deno.worker" />
import type { TokenConstraint } from "../engine/engine.ts";
import { serializeError } from "../engine/worker.ts";
import { log } from "../log.ts";
import { XGrammarConstraints } from "./constraints.ts";
import type { FromGrammarWorker, ToGrammarWorker } from "./worker.ts";

let constraints: XGrammarConstraints | undefined;
/**
 * Each sequence's matcher, as the tail of the chain of what was asked of it: every operation waits for the one
 * before (the compile first), so a token is taken before the next mask is made.
 */
const matchers = new Map<number, Promise<TokenConstraint>>();
/** The matchers made, to release them whatever became of their chain. */
const made = new Map<number, TokenConstraint>();

const post = (message: FromGrammarWorker, transfer: Transferable[] = []) =>
  self.postMessage(message, transfer);

/** Stores a matcher's chain; a failed one is handled (as a failure of what comes next), never unhandled. */
function keep(id: number, tail: Promise<TokenConstraint>): void {
  tail.catch(() => {});
  matchers.set(id, tail);
}

/** Runs `work` on sequence `id`'s matcher after everything asked of it before. */
function then<T>(id: number, work: (m: TokenConstraint) => T | Promise<T>): Promise<T> {
  const tail = matchers.get(id) ?? Promise.reject(new Error(`no matcher ${id}`));
  const result = tail.then(work);
  // A failed operation leaves the matcher as it was for the next; a failed compile leaves none.
  keep(id, result.then(() => tail, () => tail));
  return result;
}

function answer(call: number, work: Promise<Uint32Array | undefined>): void {
  work.then(
    (mask) => post({ type: "done", call, mask }, mask ? [mask.buffer as ArrayBuffer] : []),
    (err) => post({ type: "failed", call, error: serializeError(err) }),
  );
}

self.onmessage = ({ data }: MessageEvent<ToGrammarWorker>) => {
  switch (data.type) {
    case "init": {
      const { vocabulary } = data;
      constraints = new XGrammarConstraints(() => vocabulary, { kept: data.kept });
      constraints.warm().catch((err) =>
        log.error("the grammar engine failed to start", { error: String(err) })
      );
      break;
    }
    case "constrain": {
      const { id } = data;
      const matcher = constraints!.constrain(data.format, data.stopIds);
      keep(id, matcher);
      // No matcher: the engine never asks about this id again.
      matcher.then((m) => made.set(id, m), () => matchers.get(id) === matcher && matchers.delete(id));
      answer(data.call, matcher.then(() => undefined));
      break;
    }
    case "allowed":
      answer(data.call, then(data.id, (m) => m.allowed()));
      break;
    case "accept": {
      const { id, token } = data;
      // A token its own mask allowed but the matcher refuses fails the sequence at its next mask.
      const tail = matchers.get(id) ?? Promise.reject(new Error(`no matcher ${id}`));
      keep(
        id,
        tail.then((m) => {
          if (!m.accept(token)) throw new Error(`token ${token} is outside the output format`);
          return m;
        }),
      );
      break;
    }
    case "release": {
      const { id } = data;
      (matchers.get(id) ?? Promise.resolve()).catch(() => {}).finally(() => {
        made.get(id)?.release();
        made.delete(id);
        matchers.delete(id);
      });
      break;
    }
  }
};
