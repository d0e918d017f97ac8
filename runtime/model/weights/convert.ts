/**
 * Tensor bytes as float32 values on the CPU: floats, and Q8_0 blocks (a LoRA GGUF may store its A and B so);
 * for LoRA adapters, references and tests (the GPU decodes model weights itself).
 */
import type { DType } from "./dtype.ts";

export function toFloat32(dtype: DType, bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case "F32": {
      const out = new Float32Array(bytes.byteLength / 4);
      for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    }
    case "BF16": {
      const bits = new Uint32Array(bytes.byteLength / 2);
      for (let i = 0; i < bits.length; i++) bits[i] = view.getUint16(i * 2, true) << 16;
      return new Float32Array(bits.buffer);
    }
    case "F16": {
      const out = new Float32Array(bytes.byteLength / 2);
      for (let i = 0; i < out.length; i++) out[i] = halfToFloat(view.getUint16(i * 2, true));
      return out;
    }
    case "Q8_0": {
      // ggml's block_q8_0: an f16 scale and 32 int8, each weight d·q.
      const out = new Float32Array((bytes.byteLength / 34) * 32);
      for (let b = 0, at = 0; at < bytes.byteLength; b++, at += 34) {
        const d = halfToFloat(view.getUint16(at, true));
        for (let j = 0; j < 32; j++) out[b * 32 + j] = d * view.getInt8(at + 2 + j);
      }
      return out;
    }
    default:
      throw new TypeError(`${dtype} blocks are decoded by the kernels, not converted on the CPU here`);
  }
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
