/** SharedWork (functions/images/shared.ts): the same bytes' work, asked for while it runs, done once. */
import assert from "node:assert/strict";
import { SharedWork } from "../functions/images/shared.ts";

/** Work that counts its runs and ends when told, with the signal it was given. */
function gated() {
  const runs: AbortSignal[] = [];
  const gate = Promise.withResolvers<void>();
  const work = async (signal: AbortSignal) => {
    runs.push(signal);
    await gate.promise;
    signal.throwIfAborted();
    return runs.length;
  };
  return { runs, open: () => gate.resolve(), work };
}

Deno.test("SharedWork: equal bytes under equal options run once; other bytes or options run apart", async () => {
  const shared = new SharedWork<number>();
  const { runs, open, work } = gated();
  const file = Uint8Array.from({ length: 10_000 }, (_, i) => i * 7);
  // Equal in every sampled byte but one in between: compared in full.
  const other = file.slice();
  other[5001] ^= 1;
  const signal = new AbortController().signal;
  const results = [
    shared.run(file, { resize: "mistral" }, signal, work),
    shared.run(file.slice(), { resize: "mistral" }, signal, work),
    shared.run(other, { resize: "mistral" }, signal, work),
    shared.run(file, { resize: "hf" }, signal, work),
  ];
  assert.equal(runs.length, 3);
  open();
  const [a, b] = await Promise.all(results);
  assert.equal(a, b);
  // Done, it is forgotten: the next request runs it again.
  await shared.run(file, { resize: "mistral" }, signal, work);
  assert.equal(runs.length, 4);
});

Deno.test("SharedWork: the work stops only when every request waiting for it has gone", async () => {
  const shared = new SharedWork<number>();
  const { runs, open, work } = gated();
  const file = new Uint8Array(100);
  const first = new AbortController(), second = new AbortController();
  const a = shared.run(file, {}, first.signal, work);
  const b = shared.run(file, {}, second.signal, work);
  first.abort(new Error("client left"));
  await assert.rejects(a, /client left/);
  assert.equal(runs[0].aborted, false);
  open();
  assert.equal(await b, 1);
  // All gone: aborted, and a request after them starts its own.
  const { runs: again, work: slow } = gated();
  const third = new AbortController();
  const c = shared.run(file, {}, third.signal, slow);
  third.abort(new Error("gone"));
  await assert.rejects(c, /gone/);
  assert.equal(again[0].aborted, true);
  const d = shared.run(file, {}, new AbortController().signal, slow);
  assert.equal(again.length, 2);
  d.catch(() => {});
});
