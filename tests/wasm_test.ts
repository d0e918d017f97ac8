import assert from "node:assert/strict";
import { loadWasm } from "../runtime/wasm.ts";
import { fixtureJson } from "./helpers.ts";

interface PreprocessManifest {
  special_ids: Record<string, number>;
  images: { name: string; width: number; height: number; cols: number; rows: number; token_ids?: number[] }[];
}

Deno.test("imageGrid reproduces mistral_common's grid on every preprocessing golden", async () => {
  const wasm = await loadWasm();
  const manifest = await fixtureJson<PreprocessManifest>("golden/preprocess/manifest.json");
  assert.ok(manifest.images.length >= 10);
  for (const image of manifest.images) {
    const [cols, rows] = wasm.imageGrid(image.width, image.height, 1024, 16);
    assert.deepEqual({ cols, rows }, { cols: image.cols, rows: image.rows }, image.name);
  }
});

Deno.test("imageGrid rounds half to even like Python's round() and never upscales past one patch", async () => {
  const wasm = await loadWasm();
  // 1500x1000: ratio 1.46484375 -> 1024 x 682.67 -> 683 -> 43 rows (spec 6.3).
  assert.deepEqual([...wasm.imageGrid(1500, 1000, 1024, 16)], [64, 43]);
  // 2048x1025: ratio 2 -> 1024 x 512.5 -> 512 (half to even; half up would give 513 and a 33rd row).
  assert.deepEqual([...wasm.imageGrid(2048, 1025, 1024, 16)], [64, 32]);
  // 33x1 at max 32: ratio 1.03125 -> 32 x 0.9697 -> 1 row.
  assert.deepEqual([...wasm.imageGrid(33, 1, 32, 16)], [2, 1]);
  assert.deepEqual([...wasm.imageGrid(1, 1, 1024, 16)], [1, 1]);
  assert.throws(() => wasm.imageGrid(0, 10, 1024, 16), /zero size/);
});

Deno.test("imageTokenLayout matches the golden token ids", async () => {
  const wasm = await loadWasm();
  const manifest = await fixtureJson<PreprocessManifest>("golden/preprocess/manifest.json");
  const { "[IMG]": img, "[IMG_BREAK]": brk, "[IMG_END]": end } = manifest.special_ids;
  let checked = 0;
  for (const image of manifest.images) {
    if (!image.token_ids) continue;
    assert.deepEqual(
      [...wasm.imageTokenLayout(image.cols, image.rows, img, brk, end)],
      image.token_ids,
      image.name,
    );
    checked++;
  }
  assert.ok(checked > 0);
  assert.deepEqual([...wasm.imageTokenLayout(2, 3, 10, 12, 13)], [10, 10, 12, 10, 10, 12, 10, 10, 13]);
});
