/**
 * Writes tests/fixtures/images/jpeg_decoder/decoded.json: the SHA-256 of each fixture JPEG's decoded RGB
 * (scripts/jpeg_decoder_cases.py), as the given build of wasm/pkg decodes it. Run it on the build of the
 * unmodified jpeg-decoder 0.2.6 (the commit before wasm/vendor/jpeg-decoder), so that the test holds the SIMD
 * kernels to that decoder's bytes:
 *
 *   git worktree add /tmp/before eefbb04
 *   deno run --allow-read --allow-write scripts/jpeg_decoder_hashes.ts /tmp/before/wasm/pkg
 */
import { decodedHash, JPEG_CASES } from "../tests/images_jpeg_decoder_test.ts";

const pkg = Deno.args[0];
if (!pkg) throw new Error("usage: jpeg_decoder_hashes.ts WASM_PKG_DIR");
const glue = await import(`${Deno.realPathSync(pkg)}/pixtral_wasm.js`);
await glue.default(await Deno.readFile(`${pkg}/pixtral_wasm_bg.wasm`));
const hashes: Record<string, string> = {};
const names = [...Deno.readDirSync(JPEG_CASES)].map((e) => e.name).filter((n) => n.endsWith(".jpg")).sort();
for (const name of names) {
  hashes[name] = await decodedHash(glue, await Deno.readFile(new URL(name, JPEG_CASES)));
}
await Deno.writeTextFile(new URL("decoded.json", JPEG_CASES), JSON.stringify(hashes, null, 2) + "\n");
console.log(`${names.length} hashes written`);
