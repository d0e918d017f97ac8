/**
 * Output-format constraints off the engine's thread: the grammar worker gives the masks xgrammar gives in-thread
 * and keeps its errors' classes, and the engine steps other sequences while a format's matcher is being made.
 */
import assert from "node:assert/strict";
import {
  type Constraints,
  type GenerateRequest,
  GREEDY,
  InvalidRequestError,
  type TokenConstraint,
} from "../runtime/engine/engine.ts";
import { LocalEngine } from "../runtime/engine/local.ts";
import { XGrammarConstraints } from "../runtime/grammar/constraints.ts";
import { vocabulary } from "../runtime/grammar/vocabulary.ts";
import { jsonSchemaFormat, type OutputFormat } from "../runtime/grammar/format.ts";
import { GrammarPool } from "../runtime/grammar/pool.ts";
import { GrammarWorker } from "../runtime/grammar/worker.ts";
import { allowedIds, constraints, EOS, seededRandom, tokenizer } from "./grammar_helpers.ts";
import { collect, EXACT, loadTiny } from "./model_helpers.ts";

const SCHEMA = {
  type: "object",
  properties: { name: { type: "string", maxLength: 6 }, n: { type: "integer" }, ok: { type: "boolean" } },
  required: ["name", "n", "ok"],
};

Deno.test("the grammar worker gives the masks xgrammar gives in-thread, token for token", async () => {
  const worker = new GrammarWorker(vocabulary(tokenizer, tokenizer.vocabSize));
  try {
    const format = jsonSchemaFormat(SCHEMA);
    const random = seededRandom(3);
    for (let walk = 0; walk < 4; walk++) {
      const [here, there] = await Promise.all([
        constraints.constrain(format, [EOS]),
        worker.constrain(format, [EOS]),
      ]);
      try {
        for (let step = 0; step < 60; step++) {
          const mask = await here.allowed();
          assert.deepEqual(await there.allowed(), mask, `walk ${walk}, step ${step}`);
          const ids = allowedIds(mask);
          const pick = ids[Math.floor(random() * ids.length)];
          assert.ok(here.accept(pick) && there.accept(pick));
          if (pick === EOS) break;
        }
      } finally {
        here.release();
        there.release();
      }
    }
    // A token outside the mask is refused at once; a schema xgrammar cannot compile keeps its error class.
    const constraint = await worker.constrain(format, [EOS]);
    await constraint.allowed();
    assert.equal(constraint.accept(tokenizer.encode("]")[0]), false);
    constraint.release();
    await assert.rejects(
      worker.constrain({ schema: JSON.stringify({ $ref: "#/$defs/missing" }), strict: true }, [EOS]),
      (err: Error) => err instanceof InvalidRequestError && /cannot be compiled: .*\$defs/.test(err.message),
    );
  } finally {
    worker.close();
  }
  await assert.rejects(worker.constrain(jsonSchemaFormat(SCHEMA), [EOS]), /closed/);
});

/** A short greedy request to the tiny model, with an output format if given. */
const request = (format?: OutputFormat): GenerateRequest => ({
  ids: [1, 3, 1100, 1101, 4],
  images: [],
  sampling: GREEDY,
  maxTokens: 6,
  stopIds: [2],
  ...(format ? { format } : {}),
});

/**
 * Constraints whose matchers come only when the test says (a grammar that takes long to compile); `made` counts
 * the matchers made, `live` those not yet released.
 */
class SlowConstraints implements Constraints {
  readonly pending: (() => void)[] = [];
  made = 0;
  live = 0;
  constructor(readonly inner: Constraints) {}
  async constrain(format: OutputFormat, stopIds: readonly number[]): Promise<TokenConstraint> {
    await new Promise<void>((resolve) => this.pending.push(resolve));
    const inner = await this.inner.constrain(format, stopIds);
    this.made++;
    this.live++;
    return {
      ...inner,
      release: () => {
        this.live--;
        inner.release();
      },
    };
  }
}

Deno.test("engine: a triggered format compiles while its sequence runs, which waits for it only after the trigger", async () => {
  const model = await loadTiny("mistral", EXACT);
  const slow = new SlowConstraints(
    XGrammarConstraints.forTokenizer(tokenizer, model.config.decoder.vocabSize),
  );
  const engine = new LocalEngine(model, { constraints: slow });
  const format = jsonSchemaFormat({ enum: ["a", "b"] });
  try {
    const free = (await collect(engine.generate(request()))).events.map((e) => e.id);
    // A trigger the answer never writes: it runs to its end before its grammar is compiled; the matcher that
    // comes later is released at once.
    const other = [1100, 1101, 1102].find((id) => !free.includes(id))!;
    const untriggered = await Promise.race([
      collect(engine.generate({ ...request(format), trigger: other })),
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error("waited for the grammar")), 30_000)
      ),
    ]);
    assert.deepEqual(untriggered.events.map((e) => e.id), free);
    assert.equal(slow.pending.length, 1);
    slow.pending[0]();
    while (slow.made < 1 || slow.live > 0) await new Promise((r) => setTimeout(r, 10));

    // The trigger first: the stream gives it, then waits for the matcher while other streams go on.
    const stream = engine.generate({ ...request(format), trigger: free[0] });
    assert.deepEqual((await stream.next()).value, { id: free[0] });
    let triggeredDone = false;
    const rest = collect(stream).finally(() => triggeredDone = true);
    assert.equal((await collect(engine.generate(request()))).events.length, 6);
    assert.equal(triggeredDone, false);
    slow.pending[1]();
    const done = await rest;
    assert.equal(done.finish, "stop");
    assert.ok(['"a"', '"b"'].includes(tokenizer.decode(done.events.map((e) => e.id))));

    // A triggered format that cannot be compiled leaves the answer free, also when the trigger came first.
    const broken = { schema: JSON.stringify({ $ref: "#/$defs/missing" }), strict: true };
    const dropped = collect(engine.generate({ ...request(broken), trigger: free[0] }));
    while (slow.pending.length < 3) await new Promise((r) => setTimeout(r, 10));
    slow.pending[2]();
    assert.deepEqual((await dropped).events.map((e) => e.id), free);
  } finally {
    await engine.close();
  }
  assert.equal(slow.live, 0);
  assert.equal(model.pool.usedBlocks, 0);
});

Deno.test("engine: sequences step on while a format's matcher is made; cancelling or closing meanwhile", async () => {
  const model = await loadTiny("mistral", EXACT);
  const tiny = model.config.decoder.vocabSize;
  const slow = new SlowConstraints(XGrammarConstraints.forTokenizer(tokenizer, tiny));
  const engine = new LocalEngine(model, { constraints: slow });
  try {
    const constrained = collect(engine.generate(request(jsonSchemaFormat({ enum: ["a", "b"] }))));
    assert.equal(engine.stats().waiting, 1);
    // The free request runs to its end while the other's matcher is not there yet.
    const free = await collect(engine.generate(request()));
    assert.equal(free.events.length, 6);
    assert.equal(slow.pending.length, 1);
    slow.pending[0]();
    const done = await constrained;
    assert.equal(done.finish, "stop");
    assert.ok(['"a"', '"b"'].includes(tokenizer.decode(done.events.map((e) => e.id))));

    // Cancelled while its matcher is made: the stream fails at once, and the matcher, once made, is released.
    const controller = new AbortController();
    const cancelled = collect(
      engine.generate(request(jsonSchemaFormat({ type: "integer" })), controller.signal),
    );
    controller.abort();
    await assert.rejects(cancelled, { name: "AbortError" });
    assert.equal(engine.stats().waiting, 0);
    slow.pending[1]();

    // The engine closes (a stream still running in its grace period) while one matcher is made and another
    // comes: both streams fail, neither hangs.
    const running = collect(engine.generate({ ...request(), maxTokens: 40 }));
    const comes = assert.rejects(
      collect(engine.generate(request(jsonSchemaFormat({ type: "null" })))),
      /shut down/,
    );
    const stays = assert.rejects(
      collect(engine.generate(request(jsonSchemaFormat({ type: "boolean" })))),
      /shut down/,
    );
    const closed = engine.close(60_000);
    slow.pending[2]();
    await comes;
    await closed;
    await stays;
    assert.equal((await running).events.length, 40);
    slow.pending[3]();
  } finally {
    await engine.close();
  }
  assert.equal(model.pool.usedBlocks, 0);
});

/** Constraints whose masks wait while the gate is shut (a grammar thread busy compiling another schema). */
class GatedConstraints implements Constraints {
  #gate: Promise<void> = Promise.resolve();
  open: () => void = () => {};
  constructor(readonly inner: Constraints) {}
  shut(): void {
    this.#gate = new Promise((resolve) => this.open = resolve);
  }
  async constrain(format: OutputFormat, stopIds: readonly number[]): Promise<TokenConstraint> {
    const inner = await this.inner.constrain(format, stopIds);
    return {
      allowed: async () => {
        await this.#gate;
        return await inner.allowed();
      },
      accept: (id) => inner.accept(id),
      release: () => inner.release(),
    };
  }
}

Deno.test("engine: a constrained sequence whose masks are late does not hold the other streams", async () => {
  const model = await loadTiny("mistral", EXACT);
  const gated = new GatedConstraints(
    XGrammarConstraints.forTokenizer(tokenizer, model.config.decoder.vocabSize),
  );
  const engine = new LocalEngine(model, { constraints: gated });
  try {
    const alone = await collect(engine.generate(request(jsonSchemaFormat({ enum: ["a", "b"] }))));
    gated.shut();
    let constrainedDone = false;
    const constrained = collect(engine.generate(request(jsonSchemaFormat({ enum: ["a", "b"] }))))
      .finally(() => constrainedDone = true);
    // The free request runs to its end while the other waits for its masks, which then come.
    const free = await collect(engine.generate(request()));
    assert.equal(free.events.length, 6);
    assert.equal(constrainedDone, false);
    gated.open();
    assert.deepEqual(await constrained, alone);
  } finally {
    await engine.close();
  }
  assert.equal(model.pool.usedBlocks, 0);
});

Deno.test("grammar pool: a schema goes to a thread not compiling, or back to the one that compiled it", async () => {
  const inner = XGrammarConstraints.forTokenizer(tokenizer, tokenizer.vocabSize);
  const threads: (SlowConstraints & { closed: boolean })[] = [];
  const pool = new GrammarPool(() => {
    const thread = Object.assign(new SlowConstraints(inner), {
      closed: false,
      close() {
        thread.closed = true;
      },
    });
    threads.push(thread);
    return thread;
  }, { threads: 2 });
  const format = (values: string[]) => jsonSchemaFormat({ enum: values });
  const [a, b, c] = [format(["a"]), format(["b"]), format(["c"])];
  const made = (constraint: Promise<TokenConstraint>) => constraint.then((m) => (m.release(), m));
  try {
    // The first thread starts at once; a second only when a schema comes while the first compiles.
    assert.equal(pool.threads, 1);
    const first = made(pool.constrain(a, [EOS]));
    const second = made(pool.constrain(b, [EOS]));
    assert.equal(pool.threads, 2);
    assert.deepEqual(threads.map((t) => t.pending.length), [1, 1]);
    // The second thread's matcher comes while the first still compiles.
    threads[1].pending[0]();
    await second;
    threads[0].pending[0]();
    await first;
    // A schema goes back to the thread that compiled it; a new one to a thread compiling nothing.
    const again = made(pool.constrain(b, [EOS]));
    assert.deepEqual(threads.map((t) => t.pending.length), [1, 2]);
    const other = made(pool.constrain(c, [EOS]));
    assert.deepEqual(threads.map((t) => t.pending.length), [2, 2]);
    // Every thread busy and no more may start: the one that compiled it (else the least busy).
    const busy = made(pool.constrain(a, [EOS]));
    assert.equal(pool.threads, 2);
    assert.deepEqual(threads.map((t) => t.pending.length), [3, 2]);
    for (const t of threads) for (const go of t.pending) go();
    await Promise.all([again, other, busy]);
  } finally {
    pool.close();
  }
  assert.ok(threads.every((t) => t.closed));
  await assert.rejects(pool.constrain(a, [EOS]), /closed/);
});

/** A pool of two threads whose constrain calls each wait for their `pending` gate. */
function slowPool() {
  const inner = XGrammarConstraints.forTokenizer(tokenizer, tokenizer.vocabSize);
  const threads: SlowConstraints[] = [];
  const pool = new GrammarPool(() => {
    const thread = Object.assign(new SlowConstraints(inner), { close() {} });
    threads.push(thread);
    return thread;
  }, { threads: 2 });
  return { pool, threads };
}

Deno.test("grammar pool: a schema to compile goes to a thread holding no running stream's matcher", async () => {
  // An adversarial helper's case: a 20 s compile went to the idle thread where a running stream's matcher lived,
  // whose masks then waited for it.
  const { pool, threads } = slowPool();
  const format = (values: string[]) => jsonSchemaFormat({ enum: values });
  try {
    const running = pool.constrain(format(["a"]), [EOS]);
    threads[0].pending[0]();
    const stream = await running; // thread 0: compiling nothing, one live matcher
    const next = pool.constrain(format(["b"]), [EOS]);
    assert.equal(pool.threads, 2);
    assert.deepEqual(
      threads.map((t) => t.pending.length),
      [1, 1],
      "the new schema went to a thread of its own",
    );
    threads[1].pending[0]();
    (await next).release();
    // Released, the first thread is free again: the next new schema may go there (or to the second, free too).
    stream.release();
    const third = pool.constrain(format(["c"]), [EOS]);
    assert.deepEqual(threads.map((t) => t.pending.length), [2, 1]);
    threads[0].pending[1]();
    (await third).release();
    assert.deepEqual(threads.map((t) => t.live), [0, 0]);
  } finally {
    pool.close();
  }
});

Deno.test("grammar pool: a schema that failed to compile has no home thread to go back to", async () => {
  const { pool, threads } = slowPool();
  const bad = { ...jsonSchemaFormat({ enum: ["x"] }), schema: '{"type":"frobnicate"}' };
  try {
    const failing = pool.constrain(bad, [EOS]);
    threads[0].pending[0]();
    await assert.rejects(failing);
    const stream = pool.constrain(jsonSchemaFormat({ enum: ["a"] }), [EOS]);
    threads[0].pending[1]();
    const live = await stream; // thread 0 holds a running stream's matcher now
    const again = pool.constrain(bad, [EOS]);
    assert.deepEqual(threads.map((t) => t.pending.length), [2, 1], "the retry went to a free thread");
    threads[1].pending[0]();
    await assert.rejects(again);
    live.release();
  } finally {
    pool.close();
  }
});

Deno.test("grammar pool: the choices of one request share their schema's compile on one thread", async () => {
  const { pool, threads } = slowPool();
  try {
    const format = jsonSchemaFormat({ enum: ["n", "choices"] });
    const choices = [0, 1, 2].map(() => pool.constrain(format, [EOS]));
    assert.equal(pool.threads, 1);
    assert.deepEqual(threads.map((t) => t.pending.length), [3]);
    for (const go of threads[0].pending) go();
    for (const choice of await Promise.all(choices)) choice.release();
  } finally {
    pool.close();
  }
});
