import assert from "node:assert/strict";
import { type CallDelta, CallReader } from "../functions/chat/call_reader.ts";
import { pyJsonDumps, pyJsonLoads } from "../runtime/prompt/pyjson.ts";

/** A small seeded generator (mulberry32). */
function random(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NAMES = ["get_weather", "book-room_2", "f"];

const space = (r: () => number) => ["", "", " ", "\n  ", "\t"][Math.floor(r() * 5)];

/** JSON text of a random value as a model may write it: any spacing, escapes, numbers in every form. */
function writeValue(r: () => number, depth: number): string {
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const kind = depth > 3 ? Math.floor(r() * 3) : Math.floor(r() * 5);
  if (kind === 0) return writeString(r);
  if (kind === 1) {
    return pick([
      "0",
      "-0",
      "17",
      "-3",
      "123456789012345678901234567890",
      "1.50",
      "-0.0",
      "1e5",
      "2E-7",
      "6.02e+23",
    ]);
  }
  if (kind === 2) return pick(["true", "false", "null"]);
  if (kind === 4) return writeObject(r, depth);
  const items = Array.from(
    { length: Math.floor(r() * 4) },
    () => space(r) + writeValue(r, depth + 1) + space(r),
  );
  return `[${items.join(",")}]`;
}

/** An object of distinct keys (Python keeps the last value of a key written twice). */
function writeObject(r: () => number, depth: number): string {
  const keys = new Set<string>();
  const items: string[] = [];
  for (let i = Math.floor(r() * 4); i > 0; i--) {
    const key = writeString(r);
    if (keys.has(JSON.stringify(JSON.parse(key)))) continue;
    keys.add(JSON.stringify(JSON.parse(key)));
    items.push(`${space(r)}${key}${space(r)}:${space(r)}${writeValue(r, depth + 1)}${space(r)}`);
  }
  return `{${items.join(",") || space(r)}}`;
}

function writeString(r: () => number): string {
  const pieces = [
    "a",
    "Paris",
    " ",
    "é",
    "日本",
    "😀",
    '\\"',
    "\\\\",
    "\\/",
    "\\n",
    "\\t",
    "\\b",
    "\\f",
    "\\r",
    "\\u00e9",
    "\\u0001",
    "\\u001F",
    "\\ud83d\\ude00",
    "\\uD83D",
    "\\udE00",
    "\x7f",
  ];
  let s = "";
  const n = Math.floor(r() * 6);
  for (let i = 0; i < n; i++) s += pieces[Math.floor(r() * pieces.length)];
  return `"${s}"`;
}

/** Feeds `text` in random pieces; the deltas and the reader. */
function read(text: string, r: () => number, single = false) {
  let n = 0;
  const reader = new CallReader(NAMES, single, () => `id${n++}`);
  const deltas: CallDelta[] = [];
  for (let at = 0; at < text.length;) {
    const size = 1 + Math.floor(r() * 6);
    deltas.push(...reader.push(text.slice(at, at + size)));
    at += size;
  }
  return { reader, deltas };
}

/** Each call's arguments as the deltas built them, checking that a call begins once, before its arguments. */
function assembled(deltas: CallDelta[]) {
  const calls: { id: string; name: string; arguments: string }[] = [];
  for (const d of deltas) {
    if (d.id !== undefined) {
      assert.equal(d.call, calls.length);
      calls.push({ id: d.id, name: d.name, arguments: d.arguments });
    } else {
      assert.equal(d.call, calls.length - 1);
      assert.ok(d.arguments.length > 0, "no empty pieces");
      calls[d.call].arguments += d.arguments;
    }
  }
  return calls;
}

Deno.test("calls read as written give the arguments json.dumps gives, in pieces that add up", () => {
  const r = random(7);
  for (let i = 0; i < 400; i++) {
    const count = 1 + Math.floor(r() * 3);
    const written = Array.from({ length: count }, () => ({
      name: NAMES[Math.floor(r() * NAMES.length)],
      args: writeObject(r, 0),
    }));
    const sp = () => [" ", "", "\n"][Math.floor(r() * 3)];
    const text = sp() + "[" + written.map((w) =>
      `${sp()}{${sp()}"name"${sp()}:${sp()}"${w.name}"${sp()},${sp()}"arguments"${sp()}:${sp()}${w.args}${sp()}}`
    ).join(",") + "]" + sp();
    const { reader, deltas } = read(text, r);
    assert.ok(reader.complete, text);
    const calls = assembled(deltas);
    assert.deepEqual(calls, reader.calls.map(({ whole, ...call }) => (assert.ok(whole), call)));
    assert.deepEqual(
      calls.map((c) =>
        c.name
      ),
      written.map((w) => w.name),
    );
    for (const [k, call] of calls.entries()) {
      assert.equal(call.arguments, pyJsonDumps(pyJsonLoads(written[k].args)!), written[k].args);
    }
  }
});

Deno.test("calls cut anywhere (max_tokens) have passed on only what the whole gives", () => {
  const r = random(11);
  const text =
    '[{"name": "get_weather", "arguments": {"city": "Par\\u00e9s \\ud83d\\ude00", "n": [1.50, -0]}},' +
    ' {"name": "f", "arguments": {"q": "x\\ny"}}]';
  const whole = read(text, r).reader.calls;
  assert.deepEqual(whole.map((c) => c.arguments), ['{"city": "Parés 😀", "n": [1.5, 0]}', '{"q": "x\\ny"}']);
  for (let cut = 0; cut < text.length; cut++) {
    const { reader, deltas } = read(text.slice(0, cut), r);
    assert.equal(reader.complete, false);
    const calls = assembled(deltas);
    assert.ok(calls.length <= whole.length);
    for (const [k, call] of calls.entries()) {
      assert.equal(call.name, whole[k].name);
      assert.ok(whole[k].arguments.startsWith(call.arguments), `cut at ${cut}: ${call.arguments}`);
    }
    // A call begins once its name is whole; a number is passed on once it ends.
    assert.equal(
      calls.length,
      cut <= text.indexOf('", "arguments"') ? 0 : cut < text.indexOf('f"') + 2 ? 1 : 2,
    );
    if (cut === text.indexOf("1.50") + 3) assert.ok(calls[0].arguments.endsWith("["), calls[0].arguments);
  }
});

Deno.test("calls in another form are not read on; what was read stands", () => {
  const r = random(5);
  const cases: [string, string[], string[]][] = [
    // text, names of the calls begun, their arguments as passed on
    ['[{"name": "rm_rf", "arguments": {}}]', [], []],
    ['[{"arguments": {}, "name": "f"}]', [], []],
    ['{"name": "f", "arguments": {}}', [], []],
    ['[{"name": "f", "arguments": "{}"}]', ["f"], [""]],
    ['[{"name": "f", "arguments": {"a": tru}}]', ["f"], ['{"a": ']],
    ['[{"name": "f", "arguments": {"a": 1]}]', ["f"], ['{"a": 1']],
    ['[{"name": "f", "arguments": {"a": "\x01"}}]', ["f"], ['{"a": "']],
    ['[{"name": "f", "arguments": {"a": "\\x"}}]', ["f"], ['{"a": "']],
    ['[{"name": "f", "arguments": {"a" "b"}}]', ["f"], ['{"a"']],
    // Two values that spaces kept apart would run together once written.
    ['[{"name": "f", "arguments": {"a": 1 2}}]', ["f"], ['{"a": 1']],
    ['[{"name": "f", "arguments": {"a": -1\n5.5}}]', ["f"], ['{"a": -1']],
    ['[{"name": "f", "arguments": {"a": [1] [2]}}]', ["f"], ['{"a": [1]']],
    ['[{"name": "f", "arguments": {}, "extra": 1}]', ["f"], ["{}"]],
    ['[{"name": "f", "arguments": {}}] and more', ["f"], ["{}"]],
  ];
  for (const [text, names, args] of cases) {
    const { reader, deltas } = read(text, r);
    assert.equal(reader.complete, false, text);
    const calls = assembled(deltas);
    assert.deepEqual(calls.map((c) => c.name), names, text);
    assert.deepEqual(calls.map((c) => c.arguments), args, text);
  }
  // One call asked for (parallel_tool_calls false, a named function): a second is not begun.
  const two = '[{"name": "f", "arguments": {}}, {"name": "f", "arguments": {}}]';
  const single = read(two, r, true);
  assert.equal(single.reader.complete, false);
  assert.equal(assembled(single.deltas).length, 1);
  assert.ok(read(two, r).reader.complete);
});

Deno.test("[TOOL_CALLS] written again begins another list, numbered on; a number past a double stays JSON", () => {
  let n = 0;
  const reader = new CallReader(NAMES, false, () => `id${n++}`);
  const deltas = [
    ...reader.push(' [{"name": "f", "arguments": {"x": 9e999}}]'),
  ];
  reader.next();
  deltas.push(...reader.push('[{"name": "get_weather", "arguments": {"x": -1E400, "y": 1e308}}]'));
  assert.ok(reader.complete);
  assert.deepEqual(assembled(deltas).map((c, k) => ({ ...c, whole: reader.calls[k].whole })), [
    { id: "id0", name: "f", arguments: '{"x": 9e999}', whole: true },
    { id: "id1", name: "get_weather", arguments: '{"x": -1E400, "y": 1e+308}', whole: true },
  ]);
  // Before a list is done, [TOOL_CALLS] again is not a call list.
  const cut = new CallReader(NAMES, false, () => "id");
  cut.push('[{"name": "f", "arguments": {');
  cut.next();
  cut.push('[{"name": "f", "arguments": {}}]');
  assert.equal(cut.complete, false);
  assert.equal(cut.calls.length, 1);
  // [TOOL_CALLS] again with nothing after it (cut by max_tokens) leaves the calls whole.
  const trailing = new CallReader(NAMES, false, () => "id");
  trailing.push('[{"name": "f", "arguments": {}}]');
  trailing.next();
  trailing.push("  ");
  assert.ok(trailing.complete);
  // With nothing of the list written yet, it goes on.
  const early = new CallReader(NAMES, false, () => "id");
  early.push(" ");
  early.next();
  early.push('[{"name": "f", "arguments": {}}]');
  assert.ok(early.complete);
});
