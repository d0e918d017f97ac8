/**
 * Hugging Face stores q/k projection rows per head in rotate-half order; the model's kernels use the native
 * interleaved pairs (spec 3.3). For a head of size D, native row 2i is HF row i and native row 2i+1 is HF row
 * i + D/2. Rows are moved whole, so this works on raw bytes of any unquantized dtype.
 */
export function rotateHalfToInterleaved(
  bytes: Uint8Array,
  rowBytes: number,
  headDim: number,
): Uint8Array<ArrayBuffer> {
  const headBytes = rowBytes * headDim;
  if (bytes.length % headBytes !== 0) {
    throw new RangeError(
      `q/k permutation needs whole heads: ${bytes.length} bytes is not a multiple of ${headBytes}`,
    );
  }
  const out = new Uint8Array(bytes.length);
  const half = headDim / 2;
  for (let head = 0; head < bytes.length; head += headBytes) {
    for (let i = 0; i < half; i++) {
      const first = head + i * rowBytes;
      const second = head + (i + half) * rowBytes;
      out.set(bytes.subarray(first, first + rowBytes), head + 2 * i * rowBytes);
      out.set(bytes.subarray(second, second + rowBytes), head + (2 * i + 1) * rowBytes);
    }
  }
  return out;
}
