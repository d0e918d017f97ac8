/** Images decoded on worker threads (runtime/images/pool.ts): the same results, errors of the same classes, and
 * a thread that traps, overruns its time or decoded a large image is replaced. */
import assert from "node:assert/strict";
import { ImageDecodeError, ImageTooLargeError } from "../runtime/images/errors.ts";
import { EngineClosedError } from "../runtime/engine/engine.ts";
import { ImagePool } from "../runtime/images/pool.ts";
import { preprocessImage } from "../runtime/images/preprocess.ts";
import { fixture } from "./helpers.ts";
import { pngWithHeader, progressiveJpeg, readCase } from "./images_helpers.ts";

const photo = await Deno.readFile(fixture("images/noise_1500x900.jpg"));
const large = await readCase("downscale_4000x3000.png");

async function withPool(
  options: ConstructorParameters<typeof ImagePool>[0],
  body: (pool: ImagePool) => Promise<void>,
) {
  const pool = new ImagePool(options);
  try {
    await body(pool);
  } finally {
    pool.close();
  }
}

Deno.test("a pool gives what preprocessImage gives, for every option", async () => {
  await withPool({}, async (pool) => {
    for (const options of [{}, { resize: "hf" as const, maxImageSize: 512 }, { dtype: "f16" as const }]) {
      const [ours, expected] = await Promise.all([
        pool.preprocess(photo, options),
        preprocessImage(photo, options),
      ]);
      assert.deepEqual([ours.rows, ours.cols, ours.width, ours.height], [
        expected.rows,
        expected.cols,
        1500,
        900,
      ]);
      assert.deepEqual(ours.pixels, expected.pixels);
    }
    assert.ok(pool.threads >= 1 && pool.threads <= 2);
  });
});

Deno.test("errors keep their classes; a trapped decoder's thread is replaced", async () => {
  await withPool({ threads: 1 }, async (pool) => {
    await assert.rejects(pool.preprocess(pngWithHeader(100_000, 100_000)), ImageTooLargeError);
    await assert.rejects(pool.preprocess(photo.subarray(0, 3000)), ImageDecodeError);
    assert.equal(pool.threads, 1);
    // Allowed 4 gigapixels, a 60000x60000 progressive JPEG needs more memory than WASM has: the decoder traps.
    await assert.rejects(
      pool.preprocess(progressiveJpeg(60_000, 60_000, 0), { maxPixels: 4e9 }),
      /decoder failed/,
    );
    assert.equal(pool.threads, 0);
    assert.equal((await pool.preprocess(photo)).cols, 64);
  });
});

Deno.test("an image past the time limit ends its thread", async () => {
  await withPool({ threads: 1, timeoutMs: 1 }, async (pool) => {
    await assert.rejects(pool.preprocess(large), (err: Error) => {
      assert.ok(err instanceof ImageDecodeError);
      assert.match(err.message, /longer than 0.001 s/);
      return true;
    });
    assert.equal(pool.threads, 0);
  });
});

Deno.test("the event loop runs while an image decodes; a thread whose memory grew large is replaced", async () => {
  await withPool({ threads: 1, recycleBytes: 32 * 1024 * 1024 }, async (pool) => {
    let settled = false;
    const decoding = pool.preprocess(large).finally(() => settled = true);
    // Decoded in this thread, the image would be done before any timer could run.
    await new Promise((resolve) => setTimeout(resolve, 0));
    assert.equal(settled, false);
    assert.deepEqual([(await decoding).cols, pool.threads], [64, 0]);
    await pool.preprocess(photo);
    assert.equal(pool.threads, 1, "1500x900 is under the limit: its thread stays");
    // A failed image counts too: a 4000x4000 header without data had the decoder allocate its rows first.
    await assert.rejects(pool.preprocess(pngWithHeader(4000, 4000)), ImageDecodeError);
    assert.equal(pool.threads, 0);
  });
});

Deno.test("a cancelled request's images leave the queue, or end the thread decoding them", async () => {
  await withPool({ threads: 1 }, async (pool) => {
    const first = pool.preprocess(large);
    const cancel = new AbortController();
    const second = pool.preprocess(photo, {}, cancel.signal);
    cancel.abort(new Error("the client went away"));
    await assert.rejects(second, /the client went away/);
    assert.equal((await first).cols, 64);
    await assert.rejects(
      pool.preprocess(photo, {}, cancel.signal),
      /the client went away/,
      "already cancelled",
    );
  });
  // A decode under way ends with its thread.
  await withPool({ threads: 1 }, async (pool) => {
    const cancel = new AbortController();
    const decoding = pool.preprocess(large, {}, cancel.signal);
    await new Promise((resolve) => setTimeout(resolve, 20));
    cancel.abort(new Error("gone"));
    await assert.rejects(decoding, /gone/);
    assert.equal(pool.threads, 0);
    assert.equal((await pool.preprocess(photo)).cols, 64);
  });
  const closed = new ImagePool();
  closed.close();
  await assert.rejects(closed.preprocess(photo), EngineClosedError);
});
