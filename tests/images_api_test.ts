/** The runtime/images API around the patcher: options, float16 output, token layout, and the CLI command. */
import assert from "node:assert/strict";
import { imageTokenCount, imageTokenLayout } from "../runtime/images/layout.ts";
import { preprocessImage } from "../runtime/images/preprocess.ts";
import { fixture, fixtureJson, pixtral } from "./helpers.ts";

const shapes = await Deno.readFile(fixture("images/shapes_200x120.png"));
const noise = await Deno.readFile(fixture("images/noise_1500x900.jpg"));

/** IEEE half-precision bits to a number. */
function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

Deno.test("f16 output is the f32 output rounded to the nearest half", async () => {
  for (const resize of ["mistral", "hf"] as const) {
    const f32 = await preprocessImage(noise, { resize });
    const f16 = await preprocessImage(noise, { resize, dtype: "f16" });
    assert.ok(f16.pixels instanceof Uint16Array && f32.pixels instanceof Float32Array);
    assert.deepEqual([f16.rows, f16.cols, f16.dtype], [f32.rows, f32.cols, "f16"]);
    assert.equal(f16.pixels.length, f32.pixels.length);
    for (let i = 0; i < f32.pixels.length; i += 101) {
      const v = f32.pixels[i], bits = f16.pixels[i];
      const error = Math.abs(halfToNumber(bits) - v);
      // No neighbouring half is closer (round to nearest).
      assert.ok(
        error <= Math.abs(halfToNumber(bits + 1) - v) && error <= Math.abs(halfToNumber(bits - 1) - v),
        `${i}`,
      );
    }
  }
});

Deno.test("max image size and patch size come from the caller (tokenizer/model config)", async () => {
  const tekken = await fixtureJson<{ multimodal: { image_patch_size: number; max_image_size: number } }>(
    "mistral/tekken.json",
  );
  const fromConfig = await preprocessImage(noise, {
    maxImageSize: tekken.multimodal.max_image_size,
    patchSize: tekken.multimodal.image_patch_size,
  });
  const defaults = await preprocessImage(noise);
  assert.deepEqual([fromConfig.cols, fromConfig.rows], [defaults.cols, defaults.rows]);
  assert.deepEqual([defaults.cols, defaults.rows], [64, 39]);
  // 1500x900 at max 512: ratio 2.93 -> 512x307 -> patches of 32: 16x10, tensor [3, 320, 512].
  const small = await preprocessImage(noise, { maxImageSize: 512, patchSize: 32 });
  assert.deepEqual([small.cols, small.rows, small.pixels.length], [16, 10, 3 * 320 * 512]);
});

Deno.test("token layout uses the tokenizer's ids and matches the grid", async () => {
  const tekken = await fixtureJson<{ special_tokens: { rank: number; token_str: string }[] }>(
    "mistral/tekken.json",
  );
  const id = (name: string) => tekken.special_tokens.find((t) => t.token_str === name)!.rank;
  const ids = { img: id("[IMG]"), imgBreak: id("[IMG_BREAK]"), imgEnd: id("[IMG_END]") };
  const image = await preprocessImage(await Deno.readFile(fixture("golden/images/chat_a_32x48.png")));
  assert.deepEqual([image.cols, image.rows], [2, 3]);
  assert.deepEqual([...await imageTokenLayout(image, ids)], [10, 10, 12, 10, 10, 12, 10, 10, 13]);
  // Other Pixtral models use other ids: nothing is hard-coded.
  const other = await imageTokenLayout({ cols: 1, rows: 2 }, { img: 7, imgBreak: 8, imgEnd: 9 });
  assert.deepEqual([...other], [7, 8, 7, 9]);
  assert.equal(imageTokenCount({ cols: 64, rows: 43 }), 2795);
});

Deno.test("pixtral preprocess prints the grid and writes the float32 tensor", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/shapes.f32`;
    const { code, stdout } = await pixtral([
      "preprocess",
      "--image",
      fixture("images/shapes_200x120.png").pathname,
      "--out",
      out,
    ])
      .output();
    assert.equal(code, 0);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(stdout)), { rows: 8, cols: 13, tokens: 8 * 14 });
    const written = await Deno.readFile(out);
    const expected = (await preprocessImage(shapes)).pixels as Float32Array;
    assert.deepEqual(new Float32Array(written.buffer), expected);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pixtral preprocess reports bad images and bad flags", async () => {
  const bad = await pixtral(["preprocess", "--image", fixture("mistral/params.json").pathname]).output();
  assert.equal(bad.code, 1);
  assert.match(new TextDecoder().decode(bad.stderr), /unknown image format/);
  const missing = await pixtral(["preprocess"]).output();
  assert.equal(missing.code, 2);
  assert.match(new TextDecoder().decode(missing.stderr), /--image FILE is required/);
  const mode = await pixtral(["preprocess", "--image", "x.png", "--resize", "lanczos"]).output();
  assert.equal(mode.code, 2);
});
