/**
 * A GPU tensor: a buffer, a byte offset, a dtype and a shape.
 *
 * Kernels see every tensor as `rows` rows of `rowLength` contiguous elements, where rows are `shape[0]` (1 for a
 * vector) and consecutive rows lie `rowStride` elements apart. A stride larger than the row length makes column
 * views possible, e.g. the q, k and v parts of one fused projection output, without copies.
 * Block-format tensors (quantized weights) are [N, K] matrices of contiguous rows.
 */
import { byteSize, checkShape, type DType, elementBytes, isBlockFormat, rowBytes } from "./dtype.ts";

const sizes = new WeakMap<GPUBuffer, number>();

/** A buffer's size, remembered: `GPUBuffer.size` is a native call, and views are made and bound per dispatch. */
export function bufferSize(buffer: GPUBuffer): number {
  let size = sizes.get(buffer);
  if (size === undefined) sizes.set(buffer, size = buffer.size);
  return size;
}

export class Tensor {
  readonly buffer: GPUBuffer;
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** Byte offset of the first element in the buffer. */
  readonly offset: number;
  /** Elements from the start of one row to the start of the next. */
  readonly rowStride: number;
  /** Rows: shape[0] (1 for a vector). Fixed at construction, like everything here: ops read these per dispatch. */
  readonly rows: number;
  /** Elements of one row: the product of the dimensions after the first. */
  readonly rowLength: number;
  /** Number of elements (weights, for block formats). */
  readonly size: number;
  /** Bytes from the first element to the end of the last one. */
  readonly byteLength: number;
  /** Bytes from one row's start to the next one's. */
  readonly rowByteStride: number;

  constructor(
    buffer: GPUBuffer,
    dtype: DType,
    shape: readonly number[],
    offset = 0,
    rowStride?: number,
  ) {
    checkShape(shape);
    if (isBlockFormat(dtype) && shape.length > 2) {
      throw new RangeError(`${dtype} tensors are matrices [N, K], got shape [${shape.join(", ")}]`);
    }
    this.buffer = buffer;
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.offset = offset;
    this.rows = shape.length >= 2 ? shape[0] : 1;
    let rowLength = shape.length === 0 ? 1 : shape[shape.length - 1];
    for (let i = 1; i < shape.length - 1; i++) rowLength *= shape[i];
    this.rowLength = rowLength;
    this.size = shape.length >= 2 ? this.rows * rowLength : rowLength;
    this.rowStride = rowStride ?? this.rowLength;
    if (this.rowStride < this.rowLength) throw new RangeError("row stride smaller than the row length");
    if (isBlockFormat(dtype) && this.rowStride !== this.rowLength) {
      throw new RangeError(`${dtype} tensors cannot be strided`);
    }
    if (isBlockFormat(dtype)) {
      this.rowByteStride = rowBytes(dtype, shape[shape.length - 1]);
      this.byteLength = byteSize(dtype, shape);
    } else {
      this.rowByteStride = this.rowStride * elementBytes(dtype);
      this.byteLength = this.size === 0
        ? 0
        : ((this.rows - 1) * this.rowStride + this.rowLength) * elementBytes(dtype);
    }
    if (this.offset + this.byteLength > bufferSize(buffer)) {
      throw new RangeError(
        `tensor [${shape.join(", ")}] ${dtype} at byte ${offset} does not fit its ${buffer.size}-byte buffer`,
      );
    }
  }

  get contiguous(): boolean {
    return this.rowStride === this.rowLength || this.rows <= 1;
  }

  /** Rows [start, start + count) along the first dimension. */
  sliceRows(start: number, count: number): Tensor {
    if (start < 0 || count < 0 || start + count > this.rows) {
      throw new RangeError(`rows [${start}, ${start + count}) outside a tensor of ${this.rows} rows`);
    }
    if (this.shape.length < 2) return this;
    const shape = [count, ...this.shape.slice(1)];
    return new Tensor(
      this.buffer,
      this.dtype,
      shape,
      this.offset + start * this.rowByteStride,
      this.rowStride,
    );
  }

  /** Columns [start, start + length) of a matrix [rows, cols], sharing the buffer. */
  sliceCols(start: number, length: number): Tensor {
    if (this.shape.length !== 2 || isBlockFormat(this.dtype)) {
      throw new RangeError("sliceCols needs a matrix of an element type");
    }
    if (start < 0 || length < 0 || start + length > this.shape[1]) {
      throw new RangeError(`columns [${start}, ${start + length}) outside a matrix of ${this.shape[1]}`);
    }
    const offset = this.offset + start * elementBytes(this.dtype as "f32");
    return new Tensor(this.buffer, this.dtype, [this.shape[0], length], offset, this.rowStride);
  }

  /** The same rows with the row's elements regrouped, e.g. [T, 4096] as [T, 32, 128]. */
  reshape(shape: readonly number[]): Tensor {
    const size = shape.reduce((a, b) => a * b, 1);
    if (size !== this.size) throw new RangeError(`cannot reshape [${this.shape}] to [${shape}]`);
    if (this.contiguous) return new Tensor(this.buffer, this.dtype, shape, this.offset);
    if (shape[0] !== this.rows) throw new RangeError("a strided tensor keeps its first dimension");
    return new Tensor(this.buffer, this.dtype, shape, this.offset, this.rowStride);
  }

  toString(): string {
    return `Tensor<${this.dtype}>[${this.shape.join(", ")}]`;
  }
}

/**
 * The matrices as one [ΣN, K] matrix, when they are consecutive rows of one buffer with the same dtype and K (how
 * the weight loader stores q|k|v and w1|w3, so that one product computes them all); otherwise undefined.
 */
export function joinRows(parts: readonly Tensor[]): Tensor | undefined {
  const [first] = parts;
  let rows = 0;
  for (const t of parts) {
    const adjacent = t.offset === first.offset + rows * first.rowByteStride;
    if (
      t.buffer !== first.buffer || t.dtype !== first.dtype || t.shape.length !== 2 || !t.contiguous ||
      t.rowLength !== first.rowLength || !adjacent
    ) return undefined;
    rows += t.rows;
  }
  return new Tensor(first.buffer, first.dtype, [rows, first.rowLength], first.offset);
}
