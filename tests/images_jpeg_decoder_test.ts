/**
 * The vendored jpeg-decoder's WASM SIMD kernels (wasm/vendor/jpeg-decoder: inverse DCT, upsampling, YCbCr
 * conversion) decode to exactly the bytes of the unmodified crate's scalar code, whose difference from Pillow
 * the other image tests bound. Inputs: scripts/jpeg_decoder_cases.py; expected hashes:
 * scripts/jpeg_decoder_hashes.ts on the unmodified decoder's build.
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

Deno.test("JPEGs decode to the unmodified jpeg-decoder's bytes", async () => {
  const wasm = await loadWasm();
  const expected: Record<string, string> = JSON.parse(
    await Deno.readTextFile(new URL("decoded.json", JPEG_CASES)),
  );
  const names = Object.keys(expected);
  assert.ok(names.length >= 40, `only ${names.length} cases`);
  for (const name of names) {
    const bytes = await Deno.readFile(new URL(name, JPEG_CASES));
    assert.equal(await decodedHash(wasm, bytes), expected[name], name);
  }
});
