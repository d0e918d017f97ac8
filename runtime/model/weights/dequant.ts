/**
 * GGUF block types that no kernel reads, decoded on the CPU while they load (then quantized to a format the
 * kernels read, see load.ts): the legacy Q4_0, Q4_1, Q5_0, Q5_1, the k-quants Q2_K, Q3_K, Q5_K and the
 * non-linear IQ4_NL and IQ4_XS, so that the GGUFs people already have (Q5_K_M, Q4_0, IQ4_XS, Q3_K_L...) load.
 * Each follows ggml's dequantize_row_* (ggml-quants.c) in float32 arithmetic, operation by operation.
 */
import { CPU_DECODED, type CpuDecodedType } from "./dtype.ts";

/** IQ4's 16 levels (kvalues_iq4nl). */
const IQ4_LEVELS = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

const f = Math.fround;

/** ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j from 12 packed bytes. */
function scaleMinK4(q: Uint8Array, j: number): [number, number] {
  if (j < 4) return [q[j] & 63, q[j + 4] & 63];
  return [(q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)];
}

/** Q3_K's sixteen 6-bit scales, unpacked from 12 bytes as ggml does (minus its offset of 32). */
function q3kScales(packed: Uint8Array): Int32Array {
  const out = new Int32Array(16);
  for (let i = 0; i < 16; i++) {
    const low = i < 8 ? (packed[i] >> 0) & 0xf : (packed[i - 8] >> 4) & 0xf;
    const high = (packed[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
    out[i] = (low | (high << 4)) - 32;
  }
  return out;
}

function decodeBlock(type: CpuDecodedType, x: Uint8Array, v: Float32Array): void {
  const view = new DataView(x.buffer, x.byteOffset, x.byteLength);
  const half = (at: number) => view.getFloat16(at, true);
  switch (type) {
    case "Q4_0":
    case "Q4_1": {
      const d = half(0), m = type === "Q4_1" ? half(2) : 0;
      const qs = x.subarray(type === "Q4_1" ? 4 : 2);
      for (let j = 0; j < 16; j++) {
        if (type === "Q4_0") {
          v[j] = f(((qs[j] & 0xf) - 8) * d);
          v[j + 16] = f(((qs[j] >> 4) - 8) * d);
        } else {
          v[j] = f(f((qs[j] & 0xf) * d) + m);
          v[j + 16] = f(f((qs[j] >> 4) * d) + m);
        }
      }
      return;
    }
    case "Q5_0":
    case "Q5_1": {
      const legacy = type === "Q5_0";
      const d = half(0), m = legacy ? 0 : half(2);
      const qh = view.getUint32(legacy ? 2 : 4, true);
      const qs = x.subarray(legacy ? 6 : 8);
      for (let j = 0; j < 16; j++) {
        const x0 = (qs[j] & 0xf) | (((qh >>> j) << 4) & 0x10);
        const x1 = (qs[j] >> 4) | ((qh >>> (j + 12)) & 0x10);
        if (legacy) {
          v[j] = f((x0 - 16) * d);
          v[j + 16] = f((x1 - 16) * d);
        } else {
          v[j] = f(f(x0 * d) + m);
          v[j + 16] = f(f(x1 * d) + m);
        }
      }
      return;
    }
    case "Q2_K": {
      const scales = x.subarray(0, 16), qs = x.subarray(16, 80);
      const d = half(80), dmin = half(82);
      let y = 0, is = 0;
      for (let n = 0; n < 2; n++) {
        const q = qs.subarray(32 * n);
        for (let shift = 0; shift < 8; shift += 2) {
          for (const offset of [0, 16]) {
            const sc = scales[is++];
            const dl = f(d * (sc & 0xf)), ml = f(dmin * (sc >> 4));
            for (let l = 0; l < 16; l++) v[y++] = f(f(dl * ((q[l + offset] >> shift) & 3)) - ml);
          }
        }
      }
      return;
    }
    case "Q3_K": {
      const hmask = x.subarray(0, 32), qs = x.subarray(32, 96), scales = q3kScales(x.subarray(96, 108));
      const d = half(108);
      let y = 0, is = 0, bit = 1;
      for (let n = 0; n < 2; n++) {
        const q = qs.subarray(32 * n);
        for (let shift = 0; shift < 8; shift += 2, bit <<= 1) {
          for (const offset of [0, 16]) {
            const dl = f(d * scales[is++]);
            for (let l = 0; l < 16; l++) {
              const code = ((q[l + offset] >> shift) & 3) - (hmask[l + offset] & bit ? 0 : 4);
              v[y++] = f(dl * code);
            }
          }
        }
      }
      return;
    }
    case "Q5_K": {
      const d = half(0), dmin = half(2);
      const scales = x.subarray(4, 16), qh = x.subarray(16, 48), ql = x.subarray(48, 176);
      for (let j = 0; j < 4; j++) {
        const [sc1, m1] = scaleMinK4(scales, 2 * j), [sc2, m2] = scaleMinK4(scales, 2 * j + 1);
        const d1 = f(d * sc1), min1 = f(dmin * m1), d2 = f(d * sc2), min2 = f(dmin * m2);
        const low = 1 << (2 * j), high = 2 << (2 * j);
        for (let l = 0; l < 32; l++) {
          const q = ql[32 * j + l];
          v[64 * j + l] = f(f(d1 * ((q & 0xf) + (qh[l] & low ? 16 : 0))) - min1);
          v[64 * j + 32 + l] = f(f(d2 * ((q >> 4) + (qh[l] & high ? 16 : 0))) - min2);
        }
      }
      return;
    }
    case "IQ4_NL": {
      const d = half(0), qs = x.subarray(2);
      for (let j = 0; j < 16; j++) {
        v[j] = f(d * IQ4_LEVELS[qs[j] & 0xf]);
        v[j + 16] = f(d * IQ4_LEVELS[qs[j] >> 4]);
      }
      return;
    }
    case "IQ4_XS": {
      const d = half(0), scalesHigh = view.getUint16(2, true);
      const scalesLow = x.subarray(4, 8), qs = x.subarray(8);
      for (let ib = 0; ib < 8; ib++) {
        const ls = ((scalesLow[ib >> 1] >> (4 * (ib & 1))) & 0xf) | (((scalesHigh >> (2 * ib)) & 3) << 4);
        const dl = f(d * (ls - 32));
        for (let j = 0; j < 16; j++) {
          const q = qs[16 * ib + j];
          v[32 * ib + j] = f(dl * IQ4_LEVELS[q & 0xf]);
          v[32 * ib + j + 16] = f(dl * IQ4_LEVELS[q >> 4]);
        }
      }
      return;
    }
  }
}

/** The float32 values of whole blocks of `type` (bytes.length a multiple of the block's bytes). */
export function decodeBlocks(type: CpuDecodedType, bytes: Uint8Array): Float32Array {
  const { blockElems: size, blockBytes } = CPU_DECODED[type];
  const blocks = bytes.byteLength / blockBytes;
  if (!Number.isInteger(blocks)) {
    throw new RangeError(`${bytes.byteLength} bytes are not whole ${type} blocks`);
  }
  const out = new Float32Array(blocks * size);
  for (let b = 0; b < blocks; b++) {
    decodeBlock(
      type,
      bytes.subarray(b * blockBytes, (b + 1) * blockBytes),
      out.subarray(b * size, (b + 1) * size),
    );
  }
  return out;
}
