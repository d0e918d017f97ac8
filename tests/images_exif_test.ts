/**
 * EXIF orientation (tests/fixtures/images/exif, written by scripts/gen_exif_cases.py): a file tagged with each of
 * the eight orientations, turned, gives what its turn as Pillow's ImageOps.exif_transpose shows it gives (whose
 * preprocessing the golden tests check against the references), in both resize modes, measured from the header
 * as decoded; left as stored, it gives what the file's own pixels give. The server turns images by default.
 */
import assert from "node:assert/strict";
import { encodeChat } from "../functions/chat/prepare.ts";
import { parseChatRequest } from "../functions/schema/chat.ts";
import { decodeImageRgb, measureImage, preprocessImage } from "../runtime/images/preprocess.ts";
import { loadTokenizer } from "../runtime/tokenizer/load.ts";
import { fixture } from "./helpers.ts";
import { engineLessService } from "./service_helpers.ts";

const DIR = new URL("./fixtures/images/exif/", import.meta.url);
const read = (file: string) => Deno.readFile(new URL(file, DIR));
const { cases }: {
  cases: { file: string; seen: string; orientation: number; width: number; height: number }[];
} = JSON.parse(await Deno.readTextFile(new URL("manifest.json", DIR)));

Deno.test("the cases hold every orientation, in PNG, JPEG and WebP", () => {
  assert.deepEqual([...new Set(cases.map((c) => c.orientation))].sort(), [1, 2, 3, 4, 5, 6, 7, 8]);
  for (const ext of [".png", ".jpg", ".webp"]) assert.ok(cases.some((c) => c.file.endsWith(ext)), ext);
});

for (const resize of ["mistral", "hf"] as const) {
  Deno.test(`${resize} mode: an image turned as its EXIF tag says is what Pillow's exif_transpose shows`, async () => {
    for (const c of cases) {
      const bytes = await read(c.file);
      const turned = await preprocessImage(bytes, { resize, orientation: "exif", patchSize: 8 });
      const seen = await preprocessImage(await read(c.seen), { resize, patchSize: 8 });
      assert.deepEqual([turned.width, turned.height], [c.width, c.height], c.file);
      assert.deepEqual([turned.cols, turned.rows], [seen.cols, seen.rows], c.file);
      assert.deepEqual(turned.pixels, seen.pixels, c.file);
      const { rows, cols, width, height } = turned;
      assert.deepEqual(
        await measureImage(bytes, { resize, orientation: "exif", patchSize: 8 }),
        { rows, cols, width, height },
        `${c.file} measured`,
      );

      // As stored: the file's own pixels, unturned (mistral_common's reading).
      const stored = await preprocessImage(bytes, { resize, orientation: "ignore", patchSize: 8 });
      const decoded = await decodeImageRgb(bytes);
      assert.deepEqual([stored.width, stored.height], [decoded.width, decoded.height], c.file);
      assert.deepEqual([stored.width, stored.height], [40, 24], c.file);
      if (c.orientation !== 1) assert.notDeepEqual(stored.pixels, seen.pixels, c.file);
    }
  });
}

Deno.test("the server turns a phone's portrait photo upright; --image-orientation ignore leaves it as stored", async () => {
  const tokenizer = await loadTokenizer(fixture("tekken-full.json"), { cache: false });
  const service = engineLessService(tokenizer);
  const photo = `data:image/jpeg;base64,${(await read("jpeg_o6_40x24.jpg")).toBase64()}`;
  const { request } = parseChatRequest({
    messages: [{ role: "user", content: [{ type: "image_url", image_url: photo }] }],
  });
  const [img, imgBreak] = [service.images.tokens.img, service.images.tokens.imgBreak];
  const grid = async (orientation: "exif" | "ignore") => {
    const { ids } = await encodeChat(request.messages, {
      ...service,
      images: { ...service.images, orientation },
    });
    const rows = ids.filter((id) => id === imgBreak).length + 1;
    return [ids.filter((id) => id === img).length / rows, rows];
  };
  // 40x24 stored, 24x40 seen: 2 patches across and 3 down, or 3 across and 2 down as stored.
  assert.equal(service.images.orientation, "exif");
  assert.deepEqual(await grid("exif"), [2, 3]);
  assert.deepEqual(await grid("ignore"), [3, 2]);
});
