/**
 * A pool of storage buffers, so that the activations of one forward step reuse the buffers of the last one.
 *
 * Sizes are rounded up to size classes (four per power of two, at most 25% waste) so that slightly different
 * shapes (a prefill chunk a few tokens shorter) still hit a free buffer. Releasing a buffer that queued work still
 * reads is safe: WebGPU orders later submissions after earlier ones.
 */

export const STORAGE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

export interface PoolStats {
  /** Bytes of all buffers the pool created and has not destroyed. */
  allocatedBytes: number;
  /** Bytes of buffers handed out and not yet released. */
  inUseBytes: number;
  /** The largest inUseBytes seen since creation or the last resetPeak(). */
  peakInUseBytes: number;
}

export function sizeClass(bytes: number): number {
  if (bytes <= 256) return 256;
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 2);
  return Math.ceil(bytes / step) * step;
}

export class BufferPool {
  readonly #device: GPUDevice;
  readonly #free = new Map<number, GPUBuffer[]>();
  readonly #inUse = new Set<GPUBuffer>();
  #allocated = 0;
  #inUseBytes = 0;
  #peak = 0;

  constructor(device: GPUDevice) {
    this.#device = device;
  }

  /** A storage buffer of at least `bytes` bytes (contents undefined). */
  acquire(bytes: number, label = "pooled"): GPUBuffer {
    const size = sizeClass(bytes);
    const buffer = this.#free.get(size)?.pop() ?? this.#create(size, label);
    this.#inUse.add(buffer);
    this.#inUseBytes += size;
    this.#peak = Math.max(this.#peak, this.#inUseBytes);
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    if (!this.#inUse.delete(buffer)) throw new Error("released a buffer this pool did not hand out");
    this.#inUseBytes -= buffer.size;
    let list = this.#free.get(buffer.size);
    if (!list) this.#free.set(buffer.size, list = []);
    list.push(buffer);
  }

  owns(buffer: GPUBuffer): boolean {
    return this.#inUse.has(buffer);
  }

  get stats(): PoolStats {
    return { allocatedBytes: this.#allocated, inUseBytes: this.#inUseBytes, peakInUseBytes: this.#peak };
  }

  resetPeak(): void {
    this.#peak = this.#inUseBytes;
  }

  /** Destroys the free buffers (e.g. after loading, when the big quantization scratch buffers are done). */
  trim(): void {
    for (const list of this.#free.values()) {
      for (const buffer of list) {
        this.#allocated -= buffer.size;
        buffer.destroy();
      }
    }
    this.#free.clear();
  }

  destroy(): void {
    this.trim();
    for (const buffer of this.#inUse) buffer.destroy();
    this.#inUse.clear();
    this.#allocated = this.#inUseBytes = 0;
  }

  #create(size: number, label: string): GPUBuffer {
    const buffer = this.#device.createBuffer({ label, size, usage: STORAGE_USAGE });
    this.#allocated += size;
    return buffer;
  }
}
