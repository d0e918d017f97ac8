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
      const made = constraints!.constrain(data.format, data.stopIds);
      keep(data.id, made);
      answer(data.call, made.then(() => undefined));
      break;
    }
    case "allowed":
      answer(data.call, then(data.id, (m) => m.allowed()));
      break;
    case "accept": {
      const { token } = data;
      // A token its own mask allowed but the matcher refuses fails the sequence at its next mask.
      then(data.id, (m) => {
        if (!m.accept(token)) {
          keep(data.id, Promise.reject(new Error(`token ${token} is outside the output format`)));
        }
      }).catch(() => {});
      break;
    }
    case "release":
      then(data.id, (m) => m.release()).catch(() => {}).finally(() => matchers.delete(data.id));
      break;
  }
};
