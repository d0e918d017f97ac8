/** Bad input to the patcher: each kind gets its error class and a message naming the problem, fast. */
import assert from "node:assert/strict";
import {
  ImageDecodeError,
  ImageError,
  ImageFormatError,
  ImageSizeError,
  ImageTooLargeError,
} from "../runtime/images/errors.ts";
import { preprocessImage, readImageHeader } from "../runtime/images/preprocess.ts";
import { fixture } from "./helpers.ts";
import { gifHeader, jpegHeader, pngWithHeader, progressiveJpeg, readCase } from "./images_helpers.ts";

async function rejects(
  bytes: Uint8Array,
  Class: new (...args: never[]) => Error,
  message: RegExp,
  options = {},
) {
  const start = performance.now();
  await assert.rejects(preprocessImage(bytes, options), (err: Error) => {
    assert.ok(err instanceof Class, `${err.name}: ${err.message} is not a ${Class.name}`);
    assert.match(err.message, message);
    return true;
  });
  return performance.now() - start;
}

const valid = {
  png: await Deno.readFile(fixture("images/shapes_200x120.png")),
  jpeg: await Deno.readFile(fixture("images/noise_1500x900.jpg")),
  progressive: await readCase("progressive_64x48.jpg"),
  webp: await readCase("lossy_64x48.webp"),
  webpLossless: await readCase("lossless_40x30.webp"),
  gif: await readCase("anim_30x20.gif"),
  webpAnimated: await readCase("anim_lossless_30x20.webp"),
  bmp: await readCase("rgb24_31x17.bmp"),
};

Deno.test("unknown and unsupported formats are ImageFormatErrors", async () => {
  await rejects(new TextEncoder().encode("not an image at all"), ImageFormatError, /unknown image format/);
  await rejects(new Uint8Array(), ImageFormatError, /unknown image format/);
  await rejects(
    new Uint8Array([0x49, 0x49, 0x2a, 0, 8, 0, 0, 0, 0, 0]),
    ImageFormatError,
    /Tiff images are not supported/,
  );
});

Deno.test("truncated data is an ImageDecodeError in every format", async () => {
  for (const [name, bytes] of Object.entries(valid)) {
    for (const cut of [40, Math.floor(bytes.length * 0.4)]) {
      await rejects(bytes.subarray(0, cut), ImageDecodeError, /corrupt or truncated/).catch((err) => {
        throw new Error(`${name} cut at ${cut}: ${err.message}`);
      });
    }
  }
});

Deno.test("corrupt data is an ImageDecodeError", async () => {
  const png = valid.png.slice();
  png[png.length - 200] ^= 0xff; // inside the zlib stream: its checksum fails
  await rejects(png, ImageDecodeError, /PNG/);
  const jpeg = valid.jpeg.slice();
  jpeg.fill(0xff, 5000, 5100);
  await rejects(jpeg, ImageDecodeError, /JPEG/);
  // A header for 7000x7000 (under the pixel limit) with no image data behind it.
  await rejects(pngWithHeader(7000, 7000), ImageDecodeError, /PNG/);
});

Deno.test("zero-size images are ImageSizeErrors", async () => {
  await rejects(pngWithHeader(0, 10), ImageSizeError, /zero size \(0x10\)/);
  await rejects(jpegHeader(100, 0), ImageSizeError, /zero size \(100x0\)/);
  await rejects(gifHeader(0, 0), ImageSizeError, /zero size/);
});

Deno.test("images over the pixel limit are refused from the header, before any decoding", async () => {
  // The headers claim billions of pixels and carry no data: decoding would fail or exhaust memory.
  for (
    const bytes of [pngWithHeader(100_000, 100_000), jpegHeader(60_000, 60_000), gifHeader(65_535, 65_535)]
  ) {
    const ms = await rejects(bytes, ImageTooLargeError, /more than the limit of 50000000/);
    assert.ok(ms < 1000, `took ${ms} ms`);
  }
  // The limit is configurable, and an image exactly at it passes.
  await rejects(valid.png, ImageTooLargeError, /200x120 = 24000 pixels, more than the limit of 23999/, {
    maxPixels: 23_999,
  });
  assert.equal((await preprocessImage(valid.png, { maxPixels: 24_000 })).cols, 13);
});

/** A WebP file of these chunks. */
function webp(chunks: [string, number[] | Uint8Array][]): Uint8Array {
  const body: number[] = [..."WEBP"].map((c) => c.charCodeAt(0));
  for (const [id, payload] of chunks) {
    body.push(...[...id].map((c) => c.charCodeAt(0)), ...u32(payload.length), ...payload);
    if (payload.length % 2) body.push(0);
  }
  return Uint8Array.from([..."RIFF"].map((c) => c.charCodeAt(0)).concat(u32(body.length), body));
}

function u32(value: number): number[] {
  return [value & 255, (value >> 8) & 255, (value >> 16) & 255, value >>> 24];
}

/** A VP8L header for width x height (14 bits each, minus one), then a few bytes of nothing. */
const vp8l = (width: number, height: number) => [0x2f, ...u32((width - 1) | ((height - 1) << 14)), 0, 0, 0];

Deno.test("WebP sizes come from the headers: a hidden large bitstream or a huge frame is refused undecoded", async () => {
  // A key frame header (tag, start code 9d 01 2a) claiming 16383x16383 in 16 bytes.
  const vp8 = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0xff, 0x3f, 0xff, 0x3f, 0, 0, 0, 0, 0, 0];
  const ms = await rejects(webp([["VP8 ", vp8]]), ImageTooLargeError, /16383x16383/);
  assert.ok(ms < 1000, `took ${ms} ms`);
  // A 1x1 canvas may not hold a 16383x16383 bitstream (libwebp refuses it too).
  const canvas = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
  await rejects(
    webp([["VP8X", canvas], ["VP8L", vp8l(16383, 16383)]]),
    ImageDecodeError,
    /16383x16383 but its canvas 1x1/,
  );
});

Deno.test("an animated WebP is read to its first frame only: later frames are not decoded", async () => {
  const image = valid.webpAnimated;
  const expected = await preprocessImage(image);
  // A last frame of 4000x4000 with no data behind its header: decoding it would fail (or take memory).
  const frame = [0, 0, 0, 0, 0, 0, ...u32(3999).slice(0, 3), ...u32(3999).slice(0, 3), 100, 0, 0, 0];
  const extra = webp([["ANMF", [
    ...frame,
    ...[..."VP8L"].map((c) => c.charCodeAt(0)),
    ...u32(8),
    ...vp8l(4000, 4000),
  ]]]);
  const longer = new Uint8Array(image.length + extra.length - 12);
  longer.set(image);
  longer.set(extra.subarray(12), image.length);
  longer.set(u32(longer.length - 8), 4);
  const out = await preprocessImage(longer);
  assert.deepEqual(out.pixels, expected.pixels);
});

Deno.test("a JPEG of more than 100 scans is refused (each costs a pass over the image)", async () => {
  assert.deepEqual((await preprocessImage(progressiveJpeg(8, 8, 98))).rows, 1);
  await rejects(progressiveJpeg(8, 8, 99), ImageDecodeError, /more than 100 scans/);
});

Deno.test("every image error is an ImageError; option mistakes are RangeErrors", async () => {
  await assert.rejects(preprocessImage(pngWithHeader(0, 1)), ImageError);
  await assert.rejects(preprocessImage(valid.png, { maxImageSize: 0 }), RangeError);
  await assert.rejects(preprocessImage(valid.png, { patchSize: 1.5 }), RangeError);
  // (A patch of 2^24 pixels a side trapped the WebAssembly module, asking it for petabytes.)
  await assert.rejects(preprocessImage(valid.png, { patchSize: 2 ** 24 }), /patchSize must be .* up to 256/);
  await assert.rejects(preprocessImage(valid.png, { maxPixels: 0 }), RangeError);
  // deno-lint-ignore no-explicit-any
  await assert.rejects(preprocessImage(valid.png, { resize: "bilinear" as any }), /resize mode must be/);
  // deno-lint-ignore no-explicit-any
  await assert.rejects(preprocessImage(valid.png, { dtype: "bf16" as any }), /dtype must be/);
});

Deno.test("the module keeps working after errors", async () => {
  for (let i = 0; i < 50; i++) await rejects(valid.jpeg.subarray(0, 3000 + i), ImageDecodeError, /truncated/);
  const out = await preprocessImage(valid.png);
  assert.deepEqual([out.cols, out.rows], [13, 8]);
});

Deno.test("readImageHeader reads format and size without decoding", async () => {
  assert.deepEqual(await readImageHeader(valid.jpeg), { format: "jpeg", width: 1500, height: 900 });
  assert.deepEqual(await readImageHeader(pngWithHeader(100_000, 3)), {
    format: "png",
    width: 100_000,
    height: 3,
  });
  await assert.rejects(readImageHeader(new Uint8Array([1, 2, 3])), ImageFormatError);
});

Deno.test("mutated images decode or fail with an ImageError, never a crash", async () => {
  // A fixed-seed sample of byte flips, overwritten runs and truncations of every small golden input
  // (the same mutations ran 19,000 times while writing the patcher without a trap or a slow call).
  const inputs = await Promise.all(
    [...Deno.readDirSync(new URL("./fixtures/images/", import.meta.url))]
      .map((entry) => entry.name)
      .filter((name) => /\.(png|jpg|gif|webp|bmp)$/.test(name) && !name.startsWith("downscale"))
      .sort()
      .map((name) => readCase(name)),
  );
  let state = 12345;
  const random = (n: number) => (state = (state * 1103515245 + 12345) & 0x7fffffff) % n;
  let decoded = 0, refused = 0;
  for (let i = 0; i < 400; i++) {
    const bytes = inputs[random(inputs.length)].slice();
    let mutated = bytes;
    const kind = random(3);
    if (kind === 0) { for (let k = 1 + random(8); k > 0; k--) bytes[random(bytes.length)] = random(256); }
    else if (kind === 1) mutated = bytes.subarray(0, random(bytes.length));
    else bytes.fill(random(256), random(bytes.length), random(bytes.length));
    try {
      await preprocessImage(mutated, { resize: random(2) ? "mistral" : "hf" });
      decoded++;
    } catch (err) {
      assert.ok(err instanceof ImageError, `case ${i}: ${err}`);
      // A decoder panic would surface as an ImageDecodeError caused by a WebAssembly trap.
      assert.ok(!((err as Error).cause instanceof WebAssembly.RuntimeError), `case ${i} trapped: ${err}`);
      refused++;
    }
  }
  assert.ok(decoded > 50 && refused > 50, `${decoded} decoded, ${refused} refused`);
});
