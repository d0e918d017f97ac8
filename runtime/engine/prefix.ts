/**
 * Content keys for the prefix cache: the key of a sequence's KV block i digests every token of positions
 * [0, (i + 1) * blockSize), an image's pixels with its first [IMG] token, so two sequences share a block exactly
 * when everything it attends to is the same. Digests are 64 bits (two murmur3-mixed lanes), chained block to
 * block; the first key costs one pass over the prompt and each image.
 */
import type { ImageInput } from "../model/vision.ts";
import { mix32 } from "./engine.ts";

type Lanes = [number, number];

function absorb(h: Lanes, word: number): void {
  h[0] = mix32((h[0] ^ word) + 0x9e3779b9 >>> 0);
  h[1] = mix32((Math.imul(h[1], 31) ^ word ^ 0x85ebca6b) >>> 0);
}

function imageDigest(image: ImageInput): Lanes {
  const h: Lanes = [image.rows, image.cols];
  const { buffer, byteOffset, length } = image.pixels;
  for (const word of new Uint32Array(buffer, byteOffset, length)) absorb(h, word);
  return h;
}

export class PrefixKeys {
  readonly #keys: string[] = [];
  #state: Lanes = [0x2545f491, 0x6a09e667];
  /** The next image, and how many of its [IMG] tokens are still to come. */
  #image = 0;
  #imageTokensLeft = 0;

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
  ) {}

  /** The key of block `i`, whose positions must all hold known tokens. */
  key(i: number): string {
    while (this.#keys.length <= i) {
      const start = this.#keys.length * this.blockSize;
      for (let p = start; p < start + this.blockSize; p++) {
        const id = this.tokens[p];
        if (id === undefined) throw new RangeError(`block ${i} is not full`);
        absorb(this.#state, id);
        // Only the prompt's [IMG] tokens are images (a recomputed sequence may have generated the id too).
        if (id !== this.imageToken || p >= this.promptLength) continue;
        if (this.#imageTokensLeft === 0) {
          const image = this.images[this.#image++];
          for (const word of imageDigest(image)) absorb(this.#state, word);
          this.#imageTokensLeft = image.rows * image.cols;
        }
        this.#imageTokensLeft--;
      }
      this.#keys.push(`${this.#state[0].toString(16)}.${this.#state[1].toString(16)}`);
    }
    return this.#keys[i];
  }
}
