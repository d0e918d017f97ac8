/**
 * Content keys for the prefix cache: the key of a sequence's KV block i is a SHA-256 digest chained over every
 * token of positions [0, (i + 1) * blockSize), and, with each image's first [IMG] token, a digest of the image's
 * pixels, all chained from the LoRA adapter the sequence runs with (none: nothing). Two sequences share a block
 * only when everything it attends to, and what computed it, is the same. The hash is a
 * cryptographic one so that no client can craft a prompt whose blocks pass for another's (with a fast unkeyed
 * hash, a collision would let it poison the cache of a shared system prompt or image).
 */
import { createHash } from "node:crypto";
import { MATVEC_MAX_ROWS } from "../gpu/ops/linear.ts";
import type { ImageInput } from "../model/vision.ts";

const bytes = (words: Uint32Array | Float32Array) =>
  new Uint8Array(words.buffer, words.byteOffset, words.byteLength);

export class PrefixKeys {
  readonly #keys: string[] = [];
  #parent: Uint8Array = new Uint8Array(0);
  /** The next image, and how many of its [IMG] tokens are still to come. */
  #image = 0;
  #imageTokensLeft = 0;
  /**
   * Whether the vision encoder runs the request's images through the matrix-vector kernels (all of them
   * together have at most MATVEC_MAX_ROWS patches), which round differently from the tiled ones.
   */
  readonly #fewPatches: boolean;

  /**
   * `tokens` may grow (a sequence's generated tokens); [IMG] is an image's only before `promptLength`, where
   * `images` fill the [IMG] tokens in order.
   */
  constructor(
    readonly tokens: readonly number[],
    readonly images: readonly ImageInput[],
    readonly promptLength: number,
    readonly imageToken: number,
    readonly blockSize: number,
    lora?: string,
  ) {
    if (lora !== undefined) this.#parent = createHash("sha256").update(`LoRA ${lora}`).digest();
    this.#fewPatches = images.reduce((n, image) => n + image.rows * image.cols, 0) <= MATVEC_MAX_ROWS;
  }

  /** The key of block `i`, whose positions must all hold known tokens. */
  key(i: number): string {
    while (this.#keys.length <= i) {
      const start = this.#keys.length * this.blockSize;
      if (this.tokens.length < start + this.blockSize) throw new RangeError(`block ${i} is not full`);
      const block = Uint32Array.from(this.tokens.slice(start, start + this.blockSize));
      const hash = createHash("sha256").update(this.#parent).update(bytes(block));
      block.forEach((id, j) => {
        // Only the prompt's [IMG] tokens are images (a recomputed sequence may have generated the id too).
        if (id !== this.imageToken || start + j >= this.promptLength) return;
        if (this.#imageTokensLeft === 0) {
          const image = this.images[this.#image++];
          hash.update(this.#imageDigest(image));
          this.#imageTokensLeft = image.rows * image.cols;
        }
        this.#imageTokensLeft--;
      });
      this.#parent = hash.digest();
      this.#keys.push(Array.from(this.#parent, (b) => b.toString(16).padStart(2, "0")).join(""));
    }
    return this.#keys[i];
  }

  #imageDigest(image: ImageInput): Uint8Array {
    return createHash("sha256")
      .update(bytes(Uint32Array.of(image.rows, image.cols, this.#fewPatches ? 1 : 0)))
      .update(bytes(image.pixels))
      .digest();
  }
}
