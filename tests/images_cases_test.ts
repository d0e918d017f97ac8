/**
 * The patcher against golden cases the shared fixtures lack (tests/fixtures/images, written by
 * scripts/images_goldens.py with Debian's OpenCV and Pillow): 1x1, extreme aspect ratios, 16-bit PNGs,
 * palettes with transparency, tRNS colours as Pillow compares them (4-bit gray, 16-bit RGB), interlacing,
 * progressive, 4:2:2, 4:4:4, grayscale, CMYK and RGB (known by component ids) JPEGs, WebP (an ALPH chunk the
 * header does not declare is left out), GIF
 * (animated, and a first frame smaller than the screen), BMP, a grid
 * where rounding and floor disagree, and a 4000x3000 downscale.
 *
 * Bounds: within 1e-3 levels of OpenCV (mistral mode) and equal to Pillow 13's levels (hf mode, which resizes
 * in Pillow 13's pass order); decoded RGB equal to Pillow's. Lossy inputs too: JPEGs decode exactly as
 * libjpeg-turbo does under Pillow (wasm/vendor/jpeg-decoder), lossy WebP as libwebp does (image-webp's VP8
 * decoder and libwebp's upsampling and conversion).
 */
import assert from "node:assert/strict";
import { decodeImageRgb, measureImage, preprocessImage } from "../runtime/images/preprocess.ts";
import { casesManifest, channelMeans, compare, levels, readCase, referenceValues } from "./images_helpers.ts";

const { images } = await casesManifest();

Deno.test("the golden cases cover what the issue lists", () => {
  const modes = new Set(images.map((c) => c.pil_mode));
  for (const mode of ["RGB", "RGBA", "P", "L", "I", "CMYK"]) assert.ok(modes.has(mode), `no ${mode} case`);
  const names = images.map((c) => c.name).join(" ");
  for (const kind of ["1x1", "extreme", "16", "palette", "progressive", "4000x3000", "gif", "webp", "bmp"]) {
    assert.ok(names.includes(kind) || images.some((c) => c.file.endsWith(kind)), `no ${kind} case`);
  }
});

Deno.test("decoding reproduces Pillow's RGB after white compositing", async () => {
  for (const c of images) {
    if (!c.rgb) continue;
    const decoded = await decodeImageRgb(await readCase(c.file));
    assert.deepEqual([decoded.width, decoded.height], [c.width, c.height], c.name);
    const diff = compare(await readCase(c.rgb), (i) => decoded.rgb[i]);
    assert.equal(diff.max, 0, `${c.name}: ${JSON.stringify(diff)}`);
  }
});

for (const mode of ["mistral", "hf"] as const) {
  Deno.test(`${mode} mode matches the reference on every case`, async () => {
    for (const c of images) {
      const reference = c[mode];
      const bytes = await readCase(c.file);
      const out = await preprocessImage(bytes, { resize: mode, maxImageSize: c.max_image_size });
      assert.deepEqual([out.cols, out.rows], [reference.cols, reference.rows], c.name);
      // What an edge gateway lays out from the header alone is what decoding gives.
      const { rows, cols, width, height } = out;
      assert.deepEqual(
        await measureImage(bytes, { resize: mode, maxImageSize: c.max_image_size }),
        { rows, cols, width, height },
        `${c.name} measured`,
      );
      assert.equal(out.pixels.length, reference.shape[0] * reference.shape[1] * reference.shape[2], c.name);
      const pixels = out.pixels as Float32Array;
      const { values, index } = await referenceValues(reference, mode, pixels.length);
      const diff = compare(values, levels(pixels), index);
      if (mode === "mistral") assert.ok(diff.max <= 1e-3, `${c.name}: ${JSON.stringify(diff)}`);
      else assert.equal(diff.unequal, 0, `${c.name}: ${JSON.stringify(diff)}`);
      if (reference.channel_means) {
        const means = channelMeans(pixels);
        for (let ch = 0; ch < 3; ch++) {
          // Means over ~800k values: float32 accumulation on both sides allows ~1e-4.
          const tolerance = mode === "mistral" ? 1e-3 : 1e-2;
          assert.ok(
            Math.abs(means[ch] - reference.channel_means[ch]) < tolerance,
            `${c.name} channel ${ch} mean`,
          );
        }
      }
    }
  });
}

Deno.test("the grid rounds half to even in mistral mode and floors in hf mode", async () => {
  const c = images.find((c) => c.name.startsWith("roundfloor"))!;
  const bytes = await readCase(c.file);
  const mistral = await preprocessImage(bytes, { maxImageSize: c.max_image_size });
  const hf = await preprocessImage(bytes, { resize: "hf", maxImageSize: c.max_image_size });
  assert.deepEqual([mistral.cols, mistral.rows, hf.cols, hf.rows], [4, 2, 4, 1]);
});
