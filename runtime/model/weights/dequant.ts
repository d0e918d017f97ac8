/**
 * GGUF block types that no kernel reads, decoded on the CPU while they load (then quantized to a format the
 * kernels read, see load.ts): the legacy Q4_0, Q4_1, Q5_0 and Q5_1, so that the GGUFs people already have load.
 * Each follows ggml's dequantize_row_* (ggml-quants.c) in float32 arithmetic, operation by operation.
 */
import { CPU_DECODED, type CpuDecodedType } from "./dtype.ts";

const f = Math.fround;

/**
 * Decodes the block at x[at..] into v[o..]. Offsets into one buffer rather than views of each block: a 12B
 * model has a billion blocks.
 */
function decodeBlock(
  type: CpuDecodedType,
  x: Uint8Array,
  view: DataView,
  at: number,
  v: Float32Array,
  o: number,
) {
  const half = (offset: number) => HALF[view.getUint16(at + offset, true)];
  switch (type) {
    case "Q4_0": {
      const d = half(0);
      for (let j = 0; j < 16; j++) {
        const q = x[at + 2 + j];
        v[o + j] = f(((q & 0xf) - 8) * d);
        v[o + j + 16] = f(((q >> 4) - 8) * d);
      }
      return;
    }
    case "Q4_1": {
      const d = half(0), m = half(2);
      for (let j = 0; j < 16; j++) {
        const q = x[at + 4 + j];
        v[o + j] = f(f((q & 0xf) * d) + m);
        v[o + j + 16] = f(f((q >> 4) * d) + m);
      }
      return;
    }
    case "Q5_0":
    case "Q5_1": {
      const legacy = type === "Q5_0";
      const d = half(0), m = legacy ? 0 : half(2);
      const qh = view.getUint32(at + (legacy ? 2 : 4), true);
      const qs = at + (legacy ? 6 : 8);
      for (let j = 0; j < 16; j++) {
        const x0 = (x[qs + j] & 0xf) | (((qh >>> j) << 4) & 0x10);
        const x1 = (x[qs + j] >> 4) | ((qh >>> (j + 12)) & 0x10);
        if (legacy) {
          v[o + j] = f((x0 - 16) * d);
          v[o + j + 16] = f((x1 - 16) * d);
        } else {
          v[o + j] = f(f(x0 * d) + m);
          v[o + j + 16] = f(f(x1 * d) + m);
        }
      }
      return;
    }
  }
}

/** Every f16 bit pattern's value: a lookup is several times faster than DataView.getFloat16. */
const HALF = Float32Array.from(new Float16Array(Uint16Array.from({ length: 65536 }, (_, i) => i).buffer));

/** The float32 values of whole blocks of `type` (bytes.length a multiple of the block's bytes). */
export function decodeBlocks(type: CpuDecodedType, bytes: Uint8Array): Float32Array {
  const { blockElems: size, blockBytes } = CPU_DECODED[type];
  const blocks = bytes.byteLength / blockBytes;
  if (!Number.isInteger(blocks)) {
    throw new RangeError(`${bytes.byteLength} bytes are not whole ${type} blocks`);
  }
  const out = new Float32Array(blocks * size);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0; b < blocks; b++) decodeBlock(type, bytes, view, b * blockBytes, out, b * size);
  return out;
}
