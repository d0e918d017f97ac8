/**
 * Row movement (kernels/embed.wgsl): embedding lookup from a table in any weight format (windowed when the table
 * exceeds one binding), scattering image embeddings into the token sequence, and cutting an image into patch
 * rows for the patch convolution. And their CPU references.
 */
import { Params, type Recorder } from "../recorder.ts";
import type { Tensor } from "../tensor.ts";
import { rowWindows } from "../windows.ts";
import { count, floatType, indexTensor, type Indices, WG } from "./common.ts";
import { gridBinding } from "./iq.ts";
import type { WeightType } from "./linear.ts";
import { FORMAT_ID } from "./quantize.ts";

/** y[t, :] = table[ids[t], :]. ids may be a GPU tensor (the ids sampled by the last step) or host numbers. */
export function embed(rec: Recorder, { y, table, ids }: { y: Tensor; table: Tensor; ids: Indices }): void {
  const Y = floatType(y, "embed: y");
  if (!(table.dtype in FORMAT_ID) || table.shape.length !== 2) {
    throw new TypeError(`embed: the table must be a [vocab, dim] weight, got ${table}`);
  }
  const [vocab, dim] = table.shape;
  if (y.rows !== count(ids) || y.rowLength !== dim) {
    throw new RangeError(`embed: y ${y} is not [${count(ids)}, ${dim}]`);
  }
  const idt = indexTensor(rec, ids, "embed ids", vocab);
  const grid = gridBinding(rec, table.dtype);
  const kernel = rec.ctx.kernel({
    file: "embed.wgsl",
    entry: `embed_${table.dtype as WeightType}`,
    aliases: { X: Y, Y },
    defines: grid.defines,
    bindings: ["read", "read", "write", ...grid.kinds],
  });
  const [ib, yb] = [rec.bind(idt), rec.bind(y)];
  const row = table.rowByteStride;
  for (const win of rowWindows(rec.ctx.bindingLimits, vocab, [row])) {
    const wb = rec.bind(table, win.start * row, (win.start + win.count) * row);
    rec.dispatch(
      kernel,
      [wb, ib, yb, ...grid.bound],
      new Params().u32(
        y.rows,
        dim,
        ib.offset,
        yb.offset,
        y.rowStride,
        wb.byteOffset,
        row,
        win.start,
        win.count,
        0,
        0,
      ),
      Math.ceil(y.rows * Math.ceil(dim / 8) / WG),
    );
  }
}

/** y[rows[i], :] = x[i, :], e.g. image embeddings into the rows of the [IMG] tokens. */
export function scatterRows(rec: Recorder, { y, x, rows }: { y: Tensor; x: Tensor; rows: Indices }): void {
  const X = floatType(x, "scatterRows: x"), Y = floatType(y, "scatterRows: y");
  if (x.rows !== count(rows) || x.rowLength !== y.rowLength) {
    throw new RangeError(`scatterRows: x ${x} needs one target row per row, of ${y.rowLength} values`);
  }
  const idt = indexTensor(rec, rows, "scatterRows rows", y.rows);
  const kernel = rec.ctx.kernel({
    file: "embed.wgsl",
    entry: "scatter_rows",
    aliases: { X, Y },
    bindings: ["read", "read", "write"],
  });
  const [xb, ib, yb] = [rec.bind(x), rec.bind(idt), rec.bind(y)];
  rec.dispatch(
    kernel,
    [xb, ib, yb],
    new Params().u32(
      x.rows,
      x.rowLength,
      ib.offset,
      yb.offset,
      y.rowStride,
      0,
      0,
      0,
      0,
      xb.offset,
      x.rowStride,
    ),
    Math.ceil(x.size / WG),
  );
}

/**
 * y [rows·cols, C·P·P] = the P x P patches of image x [C, H, W] (H and W multiples of P), row-major over the
 * patch grid, each flattened as (channel, y, x): the input of the patch convolution as a matmul.
 */
export function patches(rec: Recorder, { y, x, patch }: { y: Tensor; x: Tensor; patch: number }): void {
  const X = floatType(x, "patches: x"), Y = floatType(y, "patches: y");
  const [channels, height, width] = x.shape;
  if (x.shape.length !== 3 || !x.contiguous || height % patch || width % patch) {
    throw new RangeError(`patches: the image must be [C, H, W] with H and W multiples of ${patch}, got ${x}`);
  }
  const tokens = (height / patch) * (width / patch), dim = channels * patch * patch;
  if (y.rows !== tokens || y.rowLength !== dim) {
    throw new RangeError(`patches: y ${y} is not [${tokens}, ${dim}]`);
  }
  const kernel = rec.ctx.kernel({
    file: "embed.wgsl",
    entry: "patches",
    aliases: { X, Y },
    bindings: ["read", "read", "write"],
  });
  const [xb, yb] = [rec.bind(x), rec.bind(y)];
  rec.dispatch(
    kernel,
    [xb, xb, yb],
    new Params().u32(tokens, dim, 0, yb.offset, y.rowStride, 0, 0, 0, 0, xb.offset, 0, height, width, patch),
    Math.ceil(tokens * dim / WG),
  );
}

export function patchesRef(x: Float32Array, channels: number, height: number, width: number, patch: number) {
  const cols = width / patch, dim = channels * patch * patch;
  const y = new Float32Array((height / patch) * cols * dim);
  for (let t = 0; t < y.length / dim; t++) {
    for (let ch = 0; ch < channels; ch++) {
      for (let dy = 0; dy < patch; dy++) {
        for (let dx = 0; dx < patch; dx++) {
          const yy = Math.floor(t / cols) * patch + dy, xx = (t % cols) * patch + dx;
          y[t * dim + (ch * patch + dy) * patch + dx] = x[(ch * height + yy) * width + xx];
        }
      }
    }
  }
  return y;
}

export function embedRef(table: Float32Array, dim: number, ids: ArrayLike<number>): Float32Array {
  const y = new Float32Array(ids.length * dim);
  for (let t = 0; t < ids.length; t++) y.set(table.subarray(ids[t] * dim, (ids[t] + 1) * dim), t * dim);
  return y;
}

export function scatterRowsRef(
  y: Float32Array,
  dim: number,
  x: Float32Array,
  rows: ArrayLike<number>,
): Float32Array {
  const out = Float32Array.from(y);
  for (let i = 0; i < rows.length; i++) out.set(x.subarray(i * dim, (i + 1) * dim), rows[i] * dim);
  return out;
}
