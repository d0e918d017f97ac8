import assert from "node:assert/strict";
import { Progress } from "../runtime/progress.ts";

function clock() {
  let t = 0;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

Deno.test("progress on a terminal: one bar redrawn in place, at most every 100 ms, ended by a newline", () => {
  const out: string[] = [];
  const time = clock();
  const p = new Progress({
    label: "load",
    total: 4 * 2 ** 30,
    sink: { write: (t) => out.push(t), isTerminal: true },
    now: time.now,
  });
  time.advance(1000);
  p.add(2 ** 30);
  p.add(1); // within 100 ms of the last draw: not redrawn
  assert.equal(out.length, 2);
  assert.ok(out[1].startsWith("\r\x1b[2K"), "clears the line it redraws");
  assert.match(
    out[1].slice(5),
    /^load {2}\[#{8}\.{22}\] {2}25% {2}1\.0 GiB\/4\.0 GiB {2}1\.0 GiB\/s {2}ETA 3s$/,
  );
  time.advance(200);
  p.set(4 * 2 ** 30);
  p.finish("loaded");
  assert.match(out.at(-2)!, /100%.*loaded$/);
  assert.equal(out.at(-1), "\n");
  p.add(5); // closed: silent
  assert.equal(out.at(-1), "\n");
});

Deno.test("progress elsewhere: JSON lines at the interval, a final done line, and a failed line on error", () => {
  const out: string[] = [];
  const time = clock();
  const sink = { write: (t: string) => out.push(t), isTerminal: false };
  const p = new Progress({
    label: "quantize",
    total: 10,
    unit: "items",
    sink,
    intervalMs: 5000,
    now: time.now,
  });
  for (let i = 0; i < 10; i++) {
    time.advance(1000);
    p.add(1);
  }
  p.finish();
  const events = out.map((l) => JSON.parse(l));
  assert.deepEqual(events.map((e) => [e.msg, e.done]), [["progress", 0], ["progress", 5], ["progress", 10], [
    "done",
    10,
  ]]);
  assert.equal(events[1].percent, 50);
  assert.equal(events[1].rate, 1);
  assert.equal(events[1].eta_s, 5);
  assert.equal(events[1].task, "quantize");
  assert.equal(events[1].level, "info");

  const failed: string[] = [];
  const q = new Progress({
    label: "pull",
    total: 100,
    sink: { write: (t) => failed.push(t), isTerminal: false },
    now: time.now,
  });
  q.add(40);
  q.fail(new Error("connection reset"));
  q.finish();
  const last = JSON.parse(failed.at(-1)!);
  assert.deepEqual([last.msg, last.level, last.error, last.done], [
    "failed",
    "error",
    "connection reset",
    40,
  ]);
  assert.equal(failed.length, 2);
});

Deno.test("progress without a known total shows amount and rate only", () => {
  const out: string[] = [];
  const time = clock();
  const p = new Progress({
    label: "scan",
    sink: { write: (t) => out.push(t), isTerminal: true },
    now: time.now,
  });
  time.advance(2000);
  p.add(3 * 2 ** 20);
  assert.match(out.at(-1)!, /scan {2}3\.0 MiB {2}1\.5 MiB\/s$/);
});
