/**
 * Numeric bounds decided on a number's text (runtime/grammar/numbers.ts): against exhaustive search over short
 * numbers, and against how a validator reads the answer (as a double).
 */
import assert from "node:assert/strict";
import { boundsInterval, reachable, within } from "../runtime/grammar/numbers.ts";
import { seededRandom } from "./grammar_helpers.ts";

/** Every JSON number without exponent of at most `length` characters. */
function numbers(length: number): string[] {
  const out: string[] = [];
  const grow = (text: string) => {
    if (/^-?(0|[1-9]\d*)(\.\d+)?$/.test(text)) out.push(text);
    if (text.length === length) return;
    for (const c of "-0123456789.") {
      const next = text + c;
      if (/^-?(0|[1-9]\d*)?(\.\d*)?$/.test(next) && !/^-?\./.test(next)) grow(next);
    }
  };
  grow("");
  return out;
}

/** Short decimal text (at most 6 decimals) as an exact count of millionths. */
function micros(text: string): bigint {
  const [whole, fraction = ""] = text.replace("-", "").split(".");
  const n = BigInt(whole) * 1_000_000n + BigInt(fraction.padEnd(6, "0"));
  return text.startsWith("-") ? -n : n;
}

/** A value inside a schema's bounds (each a short decimal), in exact arithmetic. */
function inside(schema: Record<string, number>, text: string): boolean {
  const v = micros(text), b = (key: string) => micros(String(schema[key]));
  return (schema.minimum === undefined || v >= b("minimum")) &&
    (schema.maximum === undefined || v <= b("maximum")) &&
    (schema.exclusiveMinimum === undefined || v > b("exclusiveMinimum")) &&
    (schema.exclusiveMaximum === undefined || v < b("exclusiveMaximum"));
}

Deno.test("a prefix is reachable exactly when some number beginning with it is inside the bounds, and not zero after a minus", () => {
  // Numbers of 5 characters reach inside any of these bounds from any prefix of 3 that can.
  const all = numbers(5);
  const prefixes = new Set(
    all.flatMap((n) => [...n].map((_, i) => n.slice(0, i + 1))).filter((p) => p.length <= 3),
  );
  const ends = [-12.5, -3, -0.25, 0, 0.5, 1, 7, 99.5, 100];
  const random = seededRandom(3);
  const pick = () => ends[Math.floor(random() * ends.length)];
  let checked = 0;
  // Random bounds, then a negative lower bound with each upper one (a review found positive numbers refused there).
  const rounds: [Record<string, number>, boolean][] = [];
  for (let round = 0; round < 30; round++) {
    const schema: Record<string, number> = {};
    for (const key of ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]) {
      if (random() < 0.4) schema[key] = pick();
    }
    rounds.push([schema, random() < 0.3]);
  }
  for (const lo of [-12.5, -3, -0.25]) {
    for (const hi of [0.5, 7, 100]) rounds.push([{ minimum: lo, exclusiveMaximum: hi }, hi === 7]);
  }
  for (const [schema, integer] of rounds) {
    const range = boundsInterval(schema, integer);
    const written = all.filter((n) => !integer || !n.includes("."));
    const reached = new Set<string>();
    for (const n of written) {
      const valid = inside(schema, n);
      assert.equal(within(n, range), valid, `${n} in ${JSON.stringify(schema)}`);
      // After a minus only a number below zero is written (xgrammar's integers have no "-0").
      if (valid && !(n.startsWith("-") && micros(n) === 0n)) {
        [...n].forEach((_, i) => reached.add(n.slice(0, i + 1)));
      }
    }
    for (const p of prefixes) {
      // (The grammar writes neither on integers.)
      if (integer && (p.includes(".") || p.startsWith("-0"))) continue;
      const expected = reached.has(p);
      assert.equal(reachable(p, range), expected, `${p}… in ${JSON.stringify(schema)} (integer: ${integer})`);
      checked++;
    }
  }
  assert.ok(checked > 5_000, `${checked}`);
});

Deno.test("multiples of whole numbers: a prefix is reachable exactly when a multiple inside the bounds begins with it", () => {
  const all = numbers(5).filter((n) => !n.includes(".") && !n.startsWith("-0"));
  const prefixes = new Set(
    all.flatMap((n) => [...n].map((_, i) => n.slice(0, i + 1))).filter((p) => p.length <= 3),
  );
  const random = seededRandom(11);
  const ends = [-120, -13, -1, 0, 1, 6, 40, 99.5, 250];
  let checked = 0;
  for (let round = 0; round < 40; round++) {
    const schema: Record<string, number> = { multipleOf: [2, 3, 7, 25, 60][Math.floor(random() * 5)] };
    for (const key of ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]) {
      if (random() < 0.4) schema[key] = ends[Math.floor(random() * ends.length)];
    }
    const range = boundsInterval(schema, true);
    const reached = new Set<string>();
    for (const n of all) {
      const valid = inside(schema, n) && BigInt(n) % BigInt(schema.multipleOf) === 0n;
      assert.equal(within(n, range), valid, `${n} in ${JSON.stringify(schema)}`);
      if (valid) [...n].forEach((_, i) => reached.add(n.slice(0, i + 1)));
    }
    for (const p of prefixes) {
      assert.equal(reachable(p, range), reached.has(p), `${p}… in ${JSON.stringify(schema)}`);
      checked++;
    }
  }
  assert.ok(checked > 10_000, `${checked}`);
  // Whole answers stay below 2^53, where a validator reading doubles (ajv) divides them exactly.
  const sevens = boundsInterval({ multipleOf: 7, minimum: 2 ** 60 }, true);
  assert.ok(!reachable("1", sevens) && !within(String(7n * 2n ** 60n), sevens));
});

Deno.test("large and small bounds: digits without a point reach every power of ten above them", () => {
  const min = boundsInterval({ minimum: 1e21 }, false);
  assert.ok(reachable("9", min) && reachable("1", min) && !within("9", min));
  assert.ok(within("1000000000000000000000", min) && !within("999999999999999999999.9", min));
  const tiny = boundsInterval({ exclusiveMinimum: 0, maximum: 1e-300 }, false);
  assert.ok(reachable("0.", tiny) && !within("0", tiny) && !reachable("1", tiny) && !reachable("-", tiny));
  assert.ok(within(`0.${"0".repeat(300)}1`, tiny) && !within(`0.${"0".repeat(299)}2`, tiny));
  const big = boundsInterval({ maximum: -1.5e300 }, true);
  assert.ok(reachable("-", big) && reachable("-2", big) && !reachable("1", big) && !within("-2", big));
});

Deno.test("an answer inside the bounds is inside them for a validator that reads it as a double", () => {
  const random = seededRandom(9);
  let exclusive = 0;
  for (let i = 0; i < 3000; i++) {
    // Bounds as a schema's double, answers near it written with up to 20 significant digits.
    const b = (random() - 0.5) * 10 ** Math.floor(random() * 40 - 20);
    const digits = 1 + Math.floor(random() * 20);
    const near = (b * (1 + (random() - 0.5) * 10 ** -Math.floor(random() * 18))).toPrecision(digits);
    if (/e/.test(near)) continue;
    const x = Number(near);
    const checks: [Record<string, number>, (x: number) => boolean][] = [
      [{ minimum: b }, (x) => x >= b],
      [{ maximum: b }, (x) => x <= b],
      [{ exclusiveMinimum: b }, (x) => x > b],
      [{ exclusiveMaximum: b }, (x) => x < b],
    ];
    for (const [schema, holds] of checks) {
      const range = boundsInterval(schema, false);
      if (within(near, range)) assert.ok(holds(x), `${near} (${x}) for ${JSON.stringify(schema)}`);
      // Up to 15 significant digits an answer the validator takes is taken (no double lies between); from 2^53
      // up, the bound is the double's exact value, which a validator reading doubles may not tell from others.
      else if (digits <= 15 && Math.abs(b) < 2 ** 53) {
        assert.ok(!holds(x), `${near} refused for ${JSON.stringify(schema)}`);
      }
      if ("exclusiveMinimum" in schema && !within(near, range) && x === b) exclusive++;
    }
  }
  // The schema's own bound, written out, meets minimum and maximum (its shortest decimal is the bound).
  for (const b of [0.1, 0.3, 1 / 3, 0.000025, 123456.789, -0.7]) {
    assert.ok(within(String(b), boundsInterval({ minimum: b, maximum: b }, false)), String(b));
    assert.ok(!within(String(b), boundsInterval({ exclusiveMinimum: b }, false)), String(b));
  }
  assert.ok(exclusive > 0);
});

Deno.test("from 2^53 up, whole answers are inside the bounds read exactly (Python) and as doubles (ajv)", () => {
  const random = seededRandom(4);
  for (let i = 0; i < 2000; i++) {
    const b = (random() < 0.5 ? -1 : 1) * 2 ** (53 + random() * 40);
    const exact = BigInt(b); // every double from 2^53 up is whole
    const near = exact + BigInt(Math.round((random() - 0.5) * 2 ** 12)) * (exact / 2n ** 52n || 1n);
    const text = String(near);
    const checks: [Record<string, number>, (x: bigint, d: number) => boolean][] = [
      [{ minimum: b }, (x, d) => x >= exact && d >= b],
      [{ maximum: b }, (x, d) => x <= exact && d <= b],
      [{ exclusiveMinimum: b }, (x, d) => x > exact && d > b],
      [{ exclusiveMaximum: b }, (x, d) => x < exact && d < b],
    ];
    for (const [schema, holds] of checks) {
      for (const integer of [false, true]) {
        if (within(text, boundsInterval(schema, integer))) {
          assert.ok(holds(near, Number(text)), `${text} for ${JSON.stringify(schema)} (integer: ${integer})`);
        }
      }
    }
  }
  // An adversarial helper's cases: 10^23 is above the double 1e23 (99999999999999991611392).
  assert.ok(!within("100000000000000000000000", boundsInterval({ maximum: 1e23 }, true)));
  assert.ok(within("99999999999999991611392", boundsInterval({ maximum: 1e23 }, true)));
  assert.ok(!within("99999999999999999999999", boundsInterval({ maximum: 1e23 }, false)));
  assert.ok(!within("9007199254740993", boundsInterval({ exclusiveMinimum: 2 ** 53 }, true)));
  assert.ok(within("9007199254740994", boundsInterval({ exclusiveMinimum: 2 ** 53 }, true)));
  assert.ok(!within("99999999999999999999999", boundsInterval({ exclusiveMaximum: 1e23 }, true)));
});
