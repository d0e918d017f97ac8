/**
 * GGUF block types that no kernel reads, decoded on the CPU while they load (then quantized to a format the
 * kernels read, see load.ts): the legacy Q4_0, Q4_1, Q5_0, Q5_1, the k-quant Q2_K and the i-quants IQ1_S, IQ1_M,
 * IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS and IQ3_S, so that the GGUFs people already have (Q4_0, Q2_K, IQ3_M...) load.
 * Each follows ggml's dequantize_row_* (ggml-quants.c) in float32 arithmetic, operation by operation.
 */
import { CPU_DECODED, type CpuDecodedType } from "./dtype.ts";
import { IQ_GRIDS } from "./iq_grids.ts";

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
    case "IQ2_XXS": {
      // Per 32 weights, two u32: four grid rows (bytes), then four 7-bit sign patterns and a 4-bit scale.
      const d = half(0), g = grid("IQ2_XXS");
      for (let ib = 0; ib < 8; ib++) {
        const rows = view.getUint32(at + 2 + 8 * ib, true), aux = view.getUint32(at + 6 + 8 * ib, true);
        const db = f(f(d * (0.5 + (aux >>> 28))) * 0.25);
        for (let l = 0; l < 4; l++) {
          gridRow(
            v,
            o + 32 * ib + 8 * l,
            g,
            ((rows >>> (8 * l)) & 255) * 8,
            8,
            db,
            KSIGNS[(aux >>> (7 * l)) & 127],
          );
        }
      }
      return;
    }
    case "IQ2_XS":
    case "IQ2_S": {
      // Per 8 weights a 9-bit grid row and 7-bit sign pattern (XS, in one u16), or a 10-bit row (8 bits, and 2 in
      // qh) and a sign byte (S); a 4-bit scale per 16 weights.
      const d = half(0), xs = type === "IQ2_XS", g = grid(type);
      const scales = at + (xs ? 66 : 74);
      for (let i = 0; i < 32; i++) {
        const db = f(f(d * (0.5 + ((x[scales + (i >> 2)] >> (4 * ((i >> 1) & 1))) & 15))) * 0.25);
        const q = xs ? view.getUint16(at + 2 + 2 * i, true) : 0;
        const row = xs ? q & 511 : x[at + 2 + i] | (((x[at + 66 + (i >> 2)] >> (2 * (i & 3))) & 3) << 8);
        gridRow(v, o + 8 * i, g, row * 8, 8, db, xs ? KSIGNS[q >> 9] : x[at + 34 + i]);
      }
      return;
    }
    case "IQ3_XXS": {
      // 64 grid rows of 4 (bytes), then per 32 weights a u32 of four 7-bit sign patterns and a 4-bit scale.
      const d = half(0), g = grid("IQ3_XXS");
      for (let ib = 0; ib < 8; ib++) {
        const aux = view.getUint32(at + 66 + 4 * ib, true);
        const db = f(f(d * (0.5 + (aux >>> 28))) * 0.5);
        for (let l = 0; l < 4; l++) {
          const signs = KSIGNS[(aux >>> (7 * l)) & 127], y = o + 32 * ib + 8 * l, q = at + 2 + 8 * ib + 2 * l;
          gridRow(v, y, g, x[q] * 4, 4, db, signs);
          gridRow(v, y + 4, g, x[q + 1] * 4, 4, db, signs >> 4);
        }
      }
      return;
    }
    case "IQ3_S": {
      // 64 grid rows of 4 (8 bits, and 1 in qh), a sign byte per 8 weights, a 4-bit scale per 32.
      const d = half(0), g = grid("IQ3_S");
      for (let ib = 0; ib < 8; ib++) {
        const db = f(d * (1 + 2 * ((x[at + 106 + (ib >> 1)] >> (4 * (ib & 1))) & 15)));
        for (let l = 0; l < 4; l++) {
          const signs = x[at + 74 + 4 * ib + l], y = o + 32 * ib + 8 * l;
          for (let h = 0; h < 2; h++) {
            const i = 8 * ib + 2 * l + h;
            const row = x[at + 2 + i] | (((x[at + 66 + (i >> 3)] >> (i & 7)) & 1) << 8);
            gridRow(v, y + 4 * h, g, row * 4, 4, db, signs >> (4 * h));
          }
        }
      }
      return;
    }
    case "IQ1_S":
    case "IQ1_M": {
      // Per 8 weights an 11-bit row of {-1, 0, 1} (8 bits, and 3 in qh) and a shift of ±1/8; a 3-bit scale per 32
      // (S: in qh with the shift's sign) or per 16 (M: four to a u16, whose top nibbles hold the f16 d).
      const g = grid("IQ1_S"), m = type === "IQ1_M";
      const d = m
        ? HALF[
          (view.getUint16(at + 48, true) >> 12) | ((view.getUint16(at + 50, true) >> 8) & 0x00f0) |
          ((view.getUint16(at + 52, true) >> 4) & 0x0f00) | (view.getUint16(at + 54, true) & 0xf000)
        ]
        : half(0);
      for (let ib = 0; ib < 8; ib++) {
        const qh = m ? 0 : view.getUint16(at + 34 + 2 * ib, true);
        const sc = m ? view.getUint16(at + 48 + 2 * (ib >> 1), true) >> (6 * (ib & 1)) : qh >> 12;
        for (let l = 0; l < 4; l++) {
          const hi = m ? x[at + 32 + 2 * ib + (l >> 1)] >> (4 * (l & 1)) : qh >> (3 * l);
          const row = x[at + (m ? 0 : 2) + 4 * ib + l] | ((hi & 7) << 8);
          const dl = f(d * (2 * ((m ? sc >> (3 * (l >> 1)) : sc) & 7) + 1));
          const delta = (m ? hi & 8 : qh & 0x8000) ? -0.125 : 0.125;
          for (let j = 0; j < 8; j++) v[o + 32 * ib + 8 * l + j] = f(dl * (g[row * 8 + j] + delta));
        }
      }
      return;
    }
    case "Q2_K": {
      // scales[16] at 0, qs[64] at 16, d and dmin at 80.
      const d = half(80), dmin = half(82);
      let y = o, is = 0;
      for (let n = 0; n < 2; n++) {
        const q = at + 16 + 32 * n;
        for (let shift = 0; shift < 8; shift += 2) {
          for (let offset = 0; offset < 32; offset += 16) {
            const sc = x[at + is++];
            const dl = f(d * (sc & 0xf)), ml = f(dmin * (sc >> 4));
            for (let l = 0; l < 16; l++) v[y++] = f(f(dl * ((x[q + offset + l] >> shift) & 3)) - ml);
          }
        }
      }
      return;
    }
  }
}

/** `n` weights from a grid row: db·value, negated where the sign pattern's bit is set (from its lowest). */
function gridRow(
  v: Float32Array,
  o: number,
  g: Int8Array,
  row: number,
  n: number,
  db: number,
  signs: number,
) {
  for (let j = 0; j < n; j++) {
    const w = f(db * g[row + j]);
    v[o + j] = (signs >> j) & 1 ? -w : w;
  }
}

/** ggml's ksigns_iq2xs: a 7-bit sign pattern with the bit that makes its count of signs even. */
const KSIGNS = Uint8Array.from({ length: 128 }, (_, i) => {
  let bits = 0;
  for (let b = i; b; b >>= 1) bits += b & 1;
  return i | ((bits & 1) << 7);
});

export type IqType = keyof typeof IQ_GRIDS;
const grids = new Map<IqType, Int8Array<ArrayBuffer>>();

/** A grid's values, row after row, unpacked (once) as gguf-py's init_grid unpacks them. */
export function grid(type: IqType): Int8Array<ArrayBuffer> {
  let g = grids.get(type);
  if (!g) {
    const { rows, width, values, hex } = IQ_GRIDS[type];
    const bits = Math.ceil(Math.log2(values.length)), perByte = Math.floor(8 / bits), step = 8 / perByte;
    g = new Int8Array(rows * width);
    for (let i = 0; i < g.length; i++) {
      const byte = parseInt(hex.substr(2 * Math.floor(i / perByte), 2), 16);
      g[i] = values[(byte >> (step * (i % perByte))) & ((1 << bits) - 1)];
    }
    grids.set(type, g);
  }
  return g;
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
