/**
 * Binding windows: tensors larger than maxStorageBufferBindingSize (the 131072 x 5120 output head, the embedding
 * table, a bf16 tensor being quantized) are processed as consecutive row ranges, each bound on its own.
 */

export interface RowWindow {
  start: number;
  count: number;
}

/**
 * Row ranges covering `rows` rows such that each range of every tensor, at `bytesPerRow[i]` bytes per row, fits
 * one binding (leaving room for aligning the binding's start down). `multiple` keeps window starts at multiples
 * of that many rows, for kernels that write whole words spanning row boundaries.
 */
export function rowWindows(
  limits: { maxStorageBufferBindingSize: number; minStorageBufferOffsetAlignment: number },
  rows: number,
  bytesPerRow: readonly number[],
  multiple = 1,
): RowWindow[] {
  const room = limits.maxStorageBufferBindingSize - limits.minStorageBufferOffsetAlignment - 16;
  const widest = Math.max(1, ...bytesPerRow);
  const per = Math.floor(room / widest / multiple) * multiple;
  if (per < 1) {
    throw new RangeError(
      `a row of ${widest} bytes does not fit this GPU's maxStorageBufferBindingSize ` +
        `(${limits.maxStorageBufferBindingSize})`,
    );
  }
  const windows: RowWindow[] = [];
  for (let start = 0; start < rows; start += per) windows.push({ start, count: Math.min(per, rows - start) });
  return windows;
}
