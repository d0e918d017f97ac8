/**
 * The vendored jpeg-decoder (wasm/vendor/jpeg-decoder: libjpeg-turbo's inverse DCT, fancy upsampling and YCbCr
 * conversion, in WASM SIMD) decodes JPEGs to exactly Pillow's RGB bytes: baseline and progressive, gray, CMYK,
 * 4:4:4/4:2:2/4:2:0/4:4:0/4:1:1, restart intervals, odd sizes, qualities 1-100 and overflowing 16-bit tables.
 * Inputs: scripts/jpeg_decoder_cases.py; expected hashes: scripts/jpeg_decoder_pillow_hashes.py (Pillow 13).
 * The Rust unit tests hold the SIMD kernels to the scalar code.
 */
import assert from "node:assert/strict";
import { loadWasm, type Wasm } from "../runtime/wasm.ts";

export const JPEG_CASES = new URL("./fixtures/images/jpeg_decoder/", import.meta.url);

/** SHA-256 (hex) of width, height and the decoded RGB bytes. */
export async function decodedHash(wasm: Pick<Wasm, "decodeRgb">, bytes: Uint8Array): Promise<string> {
  const image = wasm.decodeRgb(bytes, 50e6);
  const pixels = image.takePixels();
  const data = new Uint8Array(8 + pixels.length);
  new DataView(data.buffer).setUint32(0, image.width, true);
  new DataView(data.buffer).setUint32(4, image.height, true);
  data.set(pixels, 8);
  image.free();
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("JPEGs decode to Pillow's bytes", async () => {
  const wasm = await loadWasm();
  const expected: Record<string, string> = JSON.parse(
    await Deno.readTextFile(new URL("decoded.json", JPEG_CASES)),
  );
  const names = Object.keys(expected);
  assert.ok(names.length >= 58, `only ${names.length} cases`);
  for (const name of names) {
    const bytes = await Deno.readFile(new URL(name, JPEG_CASES));
    assert.equal(await decodedHash(wasm, bytes), expected[name], name);
  }
});
