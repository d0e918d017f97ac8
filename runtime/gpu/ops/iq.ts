/**
 * The GGUF i-quants the kernels read as stored (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S: the
 * IQ1_* to IQ3_* files): each group of 8 weights is a row of ggml's grids (8 values, or two rows of 4) signed by
 * a sign pattern (IQ1: shifted by ±1/8), times its sub-block's scale (kernels/lib/weights.wgsl). The grids sit
 * in one table on the GPU that the kernels reading these formats bind after their own tensors (their `#ifdef IQ`
 * sections). The CPU decoder here, ggml's dequantize_row_iq* operation by operation, is the kernels' reference.
 */
import type { GpuContext } from "../context.ts";
import type { DType } from "../dtype.ts";
import { IQ_GRIDS } from "../iq_grids.ts";
import type { Recorder } from "../recorder.ts";
import type { Tensor } from "../tensor.ts";

export const IQ_FORMATS = ["iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m"] as const;
export type IqFormat = typeof IQ_FORMATS[number];

export function isIq(dtype: DType): dtype is IqFormat {
  return (IQ_FORMATS as readonly string[]).includes(dtype);
}

type GridName = keyof typeof IQ_GRIDS;
/** The grids in the table's order: lib/weights.wgsl's IQ*_GRID constants are their word offsets. */
const GRID_ORDER: GridName[] = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S"];

const grids = new Map<GridName, Int8Array<ArrayBuffer>>();

/** A grid's values, row after row, unpacked (once) as gguf-py's init_grid unpacks them. */
export function grid(name: GridName): Int8Array<ArrayBuffer> {
  let g = grids.get(name);
  if (!g) {
    const { rows, width, values, hex } = IQ_GRIDS[name];
    const bits = Math.ceil(Math.log2(values.length)), perByte = Math.floor(8 / bits), step = 8 / perByte;
    g = new Int8Array(rows * width);
    for (let i = 0; i < g.length; i++) {
      const byte = parseInt(hex.substr(2 * Math.floor(i / perByte), 2), 16);
      g[i] = values[(byte >> (step * (i % perByte))) & ((1 << bits) - 1)];
    }
    grids.set(name, g);
  }
  return g;
}

/** The table of every grid's values as signed bytes, four to a word, once per device. */
function gridTable(ctx: GpuContext): Tensor {
  return ctx.constant("iq grids", () => {
    const all = GRID_ORDER.map(grid);
    const bytes = new Int8Array(all.reduce((n, g) => n + g.length, 0));
    let at = 0;
    for (const g of all) {
      bytes.set(g, at);
      at += g.length;
    }
    return ctx.fromBytes("u32", [bytes.length / 4], bytes, { label: "i-quant grids" });
  });
}

/** What a kernel reading weights of some type binds beyond its own tensors (gridBinding). */
export interface GridBinding {
  readonly defines?: readonly string[];
  readonly kinds: readonly "read"[];
  readonly bound: readonly ReturnType<Recorder["bind"]>[];
}

/** Other formats bind nothing more (one object: every linear dispatch asks). */
const NO_GRID: GridBinding = { kinds: [], bound: [] };

/**
 * What a kernel reading weights of `dtype` binds beyond its own tensors: for the i-quants, the `IQ` sections
 * and the grid table last.
 */
export function gridBinding(rec: Recorder, dtype: DType): GridBinding {
  if (!isIq(dtype)) return NO_GRID;
  return { defines: ["IQ"], kinds: ["read"], bound: [rec.bind(gridTable(rec.ctx))] };
}

const f = Math.fround;

/** The 256 weights of the i-quant block x (its bytes) into v, as ggml's dequantize_row_iq* computes them. */
export function decodeIqBlock(format: IqFormat, x: Uint8Array, v: Float32Array): void {
  const view = new DataView(x.buffer, x.byteOffset, x.byteLength);
  const half = (at: number) => view.getFloat16(at, true);
  switch (format) {
    case "iq2_xxs": {
      // Per 32 weights, two u32: four grid rows (bytes), then four 7-bit sign patterns and a 4-bit scale.
      const d = half(0), g = grid("IQ2_XXS");
      for (let ib = 0; ib < 8; ib++) {
        const rows = view.getUint32(2 + 8 * ib, true), aux = view.getUint32(6 + 8 * ib, true);
        const db = f(f(d * (0.5 + (aux >>> 28))) * 0.25);
        for (let l = 0; l < 4; l++) {
          gridRow(
            v,
            32 * ib + 8 * l,
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
    case "iq2_xs":
    case "iq2_s": {
      // Per 8 weights a 9-bit grid row and 7-bit sign pattern (XS, in one u16), or a 10-bit row (8 bits, and 2 in
      // qh) and a sign byte (S); a 4-bit scale per 16 weights.
      const d = half(0), xs = format === "iq2_xs", g = grid(xs ? "IQ2_XS" : "IQ2_S");
      const scales = xs ? 66 : 74;
      for (let i = 0; i < 32; i++) {
        const db = f(f(d * (0.5 + ((x[scales + (i >> 2)] >> (4 * ((i >> 1) & 1))) & 15))) * 0.25);
        const q = xs ? view.getUint16(2 + 2 * i, true) : 0;
        const row = xs ? q & 511 : x[2 + i] | (((x[66 + (i >> 2)] >> (2 * (i & 3))) & 3) << 8);
        gridRow(v, 8 * i, g, row * 8, 8, db, xs ? KSIGNS[q >> 9] : x[34 + i]);
      }
      return;
    }
    case "iq3_xxs": {
      // 64 grid rows of 4 (bytes), then per 32 weights a u32 of four 7-bit sign patterns and a 4-bit scale.
      const d = half(0), g = grid("IQ3_XXS");
      for (let ib = 0; ib < 8; ib++) {
        const aux = view.getUint32(66 + 4 * ib, true);
        const db = f(f(d * (0.5 + (aux >>> 28))) * 0.5);
        for (let l = 0; l < 4; l++) {
          const signs = KSIGNS[(aux >>> (7 * l)) & 127], y = 32 * ib + 8 * l, q = 2 + 8 * ib + 2 * l;
          gridRow(v, y, g, x[q] * 4, 4, db, signs);
          gridRow(v, y + 4, g, x[q + 1] * 4, 4, db, signs >> 4);
        }
      }
      return;
    }
    case "iq3_s": {
      // 64 grid rows of 4 (8 bits, and 1 in qh), a sign byte per 8 weights, a 4-bit scale per 32.
      const d = half(0), g = grid("IQ3_S");
      for (let ib = 0; ib < 8; ib++) {
        const db = f(d * (1 + 2 * ((x[106 + (ib >> 1)] >> (4 * (ib & 1))) & 15)));
        for (let l = 0; l < 4; l++) {
          const signs = x[74 + 4 * ib + l], y = 32 * ib + 8 * l;
          for (let h = 0; h < 2; h++) {
            const i = 8 * ib + 2 * l + h;
            const row = x[2 + i] | (((x[66 + (i >> 3)] >> (i & 7)) & 1) << 8);
            gridRow(v, y + 4 * h, g, row * 4, 4, db, signs >> (4 * h));
          }
        }
      }
      return;
    }
    case "iq1_s":
    case "iq1_m": {
      // Per 8 weights an 11-bit row of {-1, 0, 1} (8 bits, and 3 in qh) and a shift of ±1/8; a 3-bit scale per 32
      // (S: in qh with the shift's sign) or per 16 (M: four to a u16, whose top nibbles hold the f16 d).
      const g = grid("IQ1_S"), m = format === "iq1_m";
      const u16 = (at: number) => view.getUint16(at, true);
      const d = m
        ? new Float16Array(
          Uint16Array.of(
            (u16(48) >> 12) | ((u16(50) >> 8) & 0x00f0) | ((u16(52) >> 4) & 0x0f00) | (u16(54) & 0xf000),
          ).buffer,
        )[0]
        : half(0);
      for (let ib = 0; ib < 8; ib++) {
        const qh = m ? 0 : u16(34 + 2 * ib);
        const sc = m ? u16(48 + 2 * (ib >> 1)) >> (6 * (ib & 1)) : qh >> 12;
        for (let l = 0; l < 4; l++) {
          const hi = m ? x[32 + 2 * ib + (l >> 1)] >> (4 * (l & 1)) : qh >> (3 * l);
          const row = x[(m ? 0 : 2) + 4 * ib + l] | ((hi & 7) << 8);
          const dl = f(d * (2 * ((m ? sc >> (3 * (l >> 1)) : sc) & 7) + 1));
          const delta = (m ? hi & 8 : qh & 0x8000) ? -0.125 : 0.125;
          for (let j = 0; j < 8; j++) v[32 * ib + 8 * l + j] = f(dl * (g[row * 8 + j] + delta));
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
