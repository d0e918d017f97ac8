/** SharedWork (functions/images/shared.ts): the same bytes' work, asked for while it runs, done once. */
import assert from "node:assert/strict";
import { SharedWork } from "../functions/images/shared.ts";
import { allOrNone } from "../functions/images/together.ts";

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

Deno.test("allOrNone: at most `limit` at once, results in order; the first failure ends the rest", async () => {
  let running = 0, most = 0, begun = 0;
  const work = async (n: number) => {
    begun++;
    running++;
    most = Math.max(most, running);
    await new Promise((r) => setTimeout(r, n % 3));
    running--;
    if (n === 13) throw new Error("thirteen");
    return n * 2;
  };
  const items = Array.from({ length: 12 }, (_, i) => i);
  assert.deepEqual(await allOrNone(items, undefined, work, 3), items.map((n) => n * 2));
  assert.equal(most, 3);
  most = 0;
  await allOrNone(items, undefined, work);
  assert.equal(most, 12);
  begun = 0;
  await assert.rejects(allOrNone(Array.from({ length: 40 }, (_, i) => i), undefined, work, 2), /thirteen/);
  assert.ok(begun < 20, String(begun));
});
