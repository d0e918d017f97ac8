/**
 * Where an image's tokens go in the prompt (spec section 6.6): one `[IMG]` per patch, `[IMG_BREAK]` after each
 * row of patches, the last break replaced by `[IMG_END]`. The ids come from the tokenizer: they differ between
 * Pixtral models.
 */
import { loadWasm } from "../wasm.ts";

export interface ImageTokenIds {
  img: number;
  imgBreak: number;
  imgEnd: number;
}

/** The token ids for an image of `cols` x `rows` patches: `rows·(cols+1)` ids. */
export async function imageTokenLayout(
  grid: { rows: number; cols: number },
  ids: ImageTokenIds,
): Promise<Uint32Array> {
  const wasm = await loadWasm();
  return wasm.imageTokenLayout(grid.cols, grid.rows, ids.img, ids.imgBreak, ids.imgEnd);
}

/** How many tokens an image of `cols` x `rows` patches takes. */
export function imageTokenCount(grid: { rows: number; cols: number }): number {
  return grid.rows * (grid.cols + 1);
}
