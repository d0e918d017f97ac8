/**
 * The patcher against the shared preprocessing goldens (../shared/fixtures/tiny-pixtral/golden/preprocess):
 * mistral_common's numpy reference for the default mode, and Pillow (scripts/images_goldens.py, shared_*) for
 * the hf mode. Bounds, JPEGs included (wasm/vendor/jpeg-decoder decodes as libjpeg-turbo does under Pillow):
 * within 1e-3 of OpenCV on the 0..255 scale (mistral), and equal to Pillow's levels (hf).
 */
import assert from "node:assert/strict";
import { imageTokenLayout } from "../runtime/images/layout.ts";
import { decodeImageRgb, preprocessImage } from "../runtime/images/preprocess.ts";
import { fixture, fixtureJson } from "./helpers.ts";
import { casesManifest, compare, levels, referenceValues } from "./images_helpers.ts";

interface GoldenImage {
  name: string;
  input: string;
  width: number;
  height: number;
  cols: number;
  rows: number;
  pixels: { file: string; shape: number[] };
  tokens: { file: string };
  rgb_after_white_composite?: { file: string; shape: number[] };
  hf_pil_variant: { cols: number; rows: number };
}

interface GoldenManifest {
  special_ids: Record<string, number>;
  images: GoldenImage[];
}

const manifest = await fixtureJson<GoldenManifest>("golden/preprocess/manifest.json");
const input = (image: GoldenImage) => Deno.readFile(fixture(`golden/${image.input}`));

async function golden(file: string): Promise<Uint8Array> {
  return await Deno.readFile(fixture(`golden/preprocess/${file}`));
}

Deno.test("mistral mode: grid, token ids and pixels match mistral_common on every golden image", async () => {
  assert.ok(manifest.images.length >= 10);
  const ids = {
    img: manifest.special_ids["[IMG]"],
    imgBreak: manifest.special_ids["[IMG_BREAK]"],
    imgEnd: manifest.special_ids["[IMG_END]"],
  };
  for (const image of manifest.images) {
    const out = await preprocessImage(await input(image));
    assert.deepEqual([out.cols, out.rows], [image.cols, image.rows], image.name);
    assert.deepEqual([out.width, out.height], [image.width, image.height], image.name);

    const tokens = new Int32Array((await golden(image.tokens.file)).buffer);
    assert.deepEqual([...await imageTokenLayout(out, ids)], [...tokens], `${image.name} tokens`);

    const expected = new Float32Array((await golden(image.pixels.file)).buffer);
    assert.equal(out.pixels.length, expected.length, image.name);
    const ours = levels(out.pixels as Float32Array);
    const reference = levels(expected);
    const diff = compare(Array.from({ length: expected.length }, (_, i) => reference(i)), ours);
    assert.ok(diff.max <= 1e-3, `${image.name}: max difference ${diff.max} levels`);
  }
});

Deno.test("hf mode: grid matches the HF processor's floor rule and pixels match Pillow's bicubic", async () => {
  const references = new Map((await casesManifest()).shared.map((entry) => [entry.name, entry.hf]));
  let compared = 0;
  for (const image of manifest.images) {
    const out = await preprocessImage(await input(image), { resize: "hf" });
    assert.deepEqual(
      [out.cols, out.rows],
      [image.hf_pil_variant.cols, image.hf_pil_variant.rows],
      image.name,
    );
    const reference = references.get(image.name);
    if (!reference) continue; // a golden image newer than scripts/images_goldens.py's last run: grid only
    const { values, index } = await referenceValues(reference, "hf", out.pixels.length);
    const diff = compare(values, levels(out.pixels as Float32Array), index);
    assert.equal(diff.unequal, 0, `${image.name}: ${JSON.stringify(diff)}`);
    compared++;
  }
  assert.ok(compared >= 10, `only ${compared} images have hf references`);
});

Deno.test("decoding and white compositing reproduce Pillow's RGB exactly", async () => {
  let checked = 0;
  for (const image of manifest.images) {
    if (!image.rgb_after_white_composite) continue;
    const decoded = await decodeImageRgb(await input(image));
    const expected = await golden(image.rgb_after_white_composite.file);
    assert.equal(decoded.rgb.length, expected.length, image.name);
    const diff = compare(expected, (i) => decoded.rgb[i]);
    assert.equal(diff.max, 0, image.name);
    checked++;
  }
  assert.ok(checked >= 8);
});
