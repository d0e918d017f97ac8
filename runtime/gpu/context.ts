/**
 * The GPU context the model runs on: the device, its buffer pool, kernel cache and parameter arena, and tensor
 * allocation, upload and download.
 */
import { acquireGpu, type Gpu, type GpuOptions } from "./device.ts";
import { bf16Bits, byteSize, type DType, f16Bits, fromBf16Bits, fromF16Bits } from "./dtype.ts";
import { type Kernel, type KernelSpec, PARAMS_BYTES, PipelineCache } from "./pipeline.ts";
import { BufferPool, sizeClass, STORAGE_USAGE } from "./pool.ts";
import { KeyTable } from "./key_table.ts";
import { type Bound, Recorder } from "./recorder.ts";
import { Tensor } from "./tensor.ts";

export interface ContextOptions extends GpuOptions {
  /**
   * Bind at most this many bytes of a tensor at once (default: the device's maxStorageBufferBindingSize). Lower
   * values make tests exercise the windowed paths that only the largest tensors take on a real GPU.
   */
  maxBindingSize?: number;
  /**
   * Host time one queue.submit may take (default 50 ms). Where submitting blocks until the work is done (Mesa's
   * lavapipe runs kernels on the CPU inside it), longer steps are submitted in parts with the event loop
   * running between them, so the server keeps answering. On a GPU a submit takes well under this.
   */
  submitBudgetMs?: number;
}

export interface TensorOptions {
  label?: string;
  /**
   * Take the buffer from the pool (default) or create one of the exact size that is destroyed on release
   * (weights, which live as long as the model).
   */
  pooled?: boolean;
}

const BIND_GROUP_CACHE_LIMIT = 8192;

export class GpuContext {
  readonly gpu: Gpu;
  readonly device: GPUDevice;
  readonly pool: BufferPool;
  readonly kernels: PipelineCache;
  /** The largest tensor range bound at once, and the alignment of a binding's start. */
  readonly bindingLimits: { maxStorageBufferBindingSize: number; minStorageBufferOffsetAlignment: number };
  /** Limits read per dispatch or allocation, copied once (each read of `device.limits` is a native call). */
  readonly maxWorkgroupsPerDimension: number;
  readonly maxBufferSize: number;
  /** queue.submit calls so far: a sign that whoever records steps is still working (see EngineStats). */
  submits = 0;
  #arena?: GPUBuffer;
  readonly #submitBudgetMs: number;
  /** Host ms per dispatch that queue.submit took lately; undefined until measured. */
  #submitMsPerDispatch?: number;
  /** Submits take turns: one submitted in parts must not have its parameters overwritten between them. */
  #queueTurn: Promise<void> = Promise.resolve();
  #staging = new Map<number, GPUBuffer[]>();
  /** Bind groups by kernel, then buffer, offset and size of each binding (buffers numbered as first bound). */
  readonly #bindGroups = new KeyTable<GPUBindGroup>();
  readonly #bindKey: number[] = [];
  readonly #bufferIds = new WeakMap<GPUBuffer, number>();
  #nextBufferId = 1;
  #constants = new Map<string, Tensor>();
  #owned = new Set<GPUBuffer>();
  #ownedBytes = 0;
  #destroyed = false;
  /**
   * Resolves with why, if the device is lost other than by destroy() (a driver reset, a GPU fault): every later GPU
   * call fails or does nothing (readbacks reject with a bare "validation error"), so nothing can run on it again.
   */
  readonly lost: Promise<string>;

  constructor(gpu: Gpu, options: ContextOptions = {}) {
    this.gpu = gpu;
    this.device = gpu.device;
    this.pool = new BufferPool(gpu.device);
    this.kernels = new PipelineCache(gpu.device, gpu.f16);
    const limits = gpu.device.limits;
    this.bindingLimits = {
      maxStorageBufferBindingSize: Math.min(
        limits.maxStorageBufferBindingSize,
        options.maxBindingSize ?? Infinity,
      ),
      minStorageBufferOffsetAlignment: limits.minStorageBufferOffsetAlignment,
    };
    this.#submitBudgetMs = options.submitBudgetMs ?? 50;
    this.maxWorkgroupsPerDimension = limits.maxComputeWorkgroupsPerDimension;
    this.maxBufferSize = limits.maxBufferSize;
    this.lost = gpu.device.lost.then((info) =>
      this.#destroyed
        ? new Promise<never>(() => {})
        : `the GPU device was lost (${info.reason}${info.message ? `: ${info.message}` : ""})`
    );
  }

  static async create(options: ContextOptions = {}): Promise<GpuContext> {
    return new GpuContext(await acquireGpu(options), options);
  }

  get f16(): boolean {
    return this.gpu.f16;
  }

  /** Bytes of the exact-size (weight) buffers alive, plus the pool's. */
  get allocatedBytes(): number {
    return this.#ownedBytes + this.pool.stats.allocatedBytes;
  }

  kernel(spec: KernelSpec): Kernel {
    return this.kernels.get(spec);
  }

  record(label?: string): Recorder {
    return new Recorder(this, label);
  }

  /** An uninitialised tensor. Buffers are at least 256 bytes and a multiple of 16, so kernels may read vec4s. */
  tensor(dtype: DType, shape: readonly number[], options: TensorOptions = {}): Tensor {
    const bytes = Math.max(256, Math.ceil(byteSize(dtype, shape) / 16) * 16);
    if (bytes > this.maxBufferSize) {
      throw new RangeError(
        `a ${dtype} tensor [${shape.join(", ")}] needs ${bytes} bytes, above this GPU's maxBufferSize ` +
          `(${this.maxBufferSize})`,
      );
    }
    let buffer: GPUBuffer;
    if (options.pooled === false) {
      buffer = this.device.createBuffer({ label: options.label, size: bytes, usage: STORAGE_USAGE });
      this.#owned.add(buffer);
      this.#ownedBytes += bytes;
    } else {
      buffer = this.pool.acquire(bytes, options.label);
    }
    return new Tensor(buffer, dtype, shape);
  }

  /** Returns a tensor's buffer to the pool (or destroys an exact-size one). Views must not be released. */
  release(tensor: Tensor): void {
    if (tensor.offset !== 0) throw new Error(`release: ${tensor} is a view`);
    if (this.#owned.delete(tensor.buffer)) {
      this.#ownedBytes -= tensor.buffer.size;
      tensor.buffer.destroy();
    } else {
      this.pool.release(tensor.buffer);
    }
  }

  /** A tensor holding these bytes (raw, as the dtype stores them). */
  fromBytes(dtype: DType, shape: readonly number[], bytes: ArrayBufferView, options?: TensorOptions): Tensor {
    const tensor = this.tensor(dtype, shape, options);
    this.write(tensor, bytes);
    return tensor;
  }

  /** A float tensor (f32, f16 or bf16) from float values, rounded to nearest even. */
  fromFloats(
    dtype: "f32" | "f16" | "bf16",
    shape: readonly number[],
    values: ArrayLike<number>,
    options?: TensorOptions,
  ): Tensor {
    const data = dtype === "f32"
      ? Float32Array.from(values)
      : dtype === "f16"
      ? f16Bits(values)
      : bf16Bits(values);
    return this.fromBytes(dtype, shape, data, options);
  }

  /** Writes bytes into a tensor at a byte offset (streaming weights in chunks), through the queue. */
  write(tensor: Tensor, data: ArrayBufferView, byteOffset = 0): void {
    if (!tensor.contiguous) throw new RangeError(`write: ${tensor} is not contiguous`);
    if (byteOffset + data.byteLength > tensor.byteLength) {
      throw new RangeError(`write: ${data.byteLength} bytes at ${byteOffset} overflow ${tensor}`);
    }
    const at = tensor.offset + byteOffset;
    let bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    if (at % 4 || bytes.byteLength % 4) {
      if (at % 4) throw new RangeError("write: byte offset must be a multiple of 4");
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      bytes = padded;
    }
    this.device.queue.writeBuffer(tensor.buffer, at, bytes);
  }

  async readBytes(tensor: Tensor): Promise<Uint8Array<ArrayBuffer>> {
    const rec = this.record("read");
    const bytes = rec.read(tensor);
    await rec.submit();
    return bytes;
  }

  /** The values of an f32, f16 or bf16 tensor (rows of a strided view are gathered). */
  async readFloats(tensor: Tensor): Promise<Float32Array<ArrayBuffer>> {
    const bytes = await this.readBytes(this.#dense(tensor));
    const values = tensor.dtype === "f32"
      ? new Float32Array(bytes.buffer)
      : tensor.dtype === "f16"
      ? fromF16Bits(new Uint16Array(bytes.buffer))
      : tensor.dtype === "bf16"
      ? fromBf16Bits(new Uint16Array(bytes.buffer))
      : undefined;
    if (!values) throw new TypeError(`readFloats: ${tensor} is not a float tensor`);
    return this.#gather(tensor, values);
  }

  async readU32(tensor: Tensor): Promise<Uint32Array<ArrayBuffer>> {
    if (tensor.dtype !== "u32" && tensor.dtype !== "i32") throw new TypeError(`readU32: ${tensor}`);
    return this.#gather(tensor, new Uint32Array((await this.readBytes(this.#dense(tensor))).buffer));
  }

  /** A device-lifetime constant tensor (e.g. a RoPE frequency table), built once per key. */
  constant(key: string, make: () => Tensor): Tensor {
    let tensor = this.#constants.get(key);
    if (!tensor) this.#constants.set(key, tensor = make());
    return tensor;
  }

  /** Waits for the queue's turn; call the returned function when done submitting. */
  async queueTurn(): Promise<() => void> {
    let done!: () => void;
    const previous = this.#queueTurn;
    this.#queueTurn = new Promise((resolve) => done = resolve);
    await previous;
    return done;
  }

  /** How many dispatches one queue.submit should carry to stay within the submit budget. */
  dispatchesPerSubmit(): number {
    const ms = this.#submitMsPerDispatch;
    return ms === undefined || ms === 0 ? Infinity : Math.max(1, Math.floor(this.#submitBudgetMs / ms));
  }

  /** Records how long a queue.submit of `dispatches` dispatches took on the host. */
  noteSubmit(ms: number, dispatches: number): void {
    if (dispatches === 0) return;
    const perDispatch = ms / dispatches;
    const last = this.#submitMsPerDispatch;
    this.#submitMsPerDispatch = last === undefined ? perDispatch : (last + perDispatch) / 2;
  }

  /** The uniform buffer that holds the parameters of one submit (grown as needed). */
  paramArena(bytes: number): GPUBuffer {
    if (!this.#arena || this.#arena.size < bytes) {
      this.#arena?.destroy();
      this.#arena = this.device.createBuffer({
        label: "kernel parameters",
        size: Math.max(PARAMS_BYTES * 64, sizeClass(bytes)),
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      });
      this.#bindGroups.clear();
    }
    return this.#arena;
  }

  /** The bind group of a kernel's bindings (the parameter arena is one per context: a new one clears these). */
  bindGroup(kernel: Kernel, arena: GPUBuffer, bound: readonly Bound[]): GPUBindGroup {
    const key = this.#bindKey;
    key.length = 0;
    key.push(kernel.id);
    for (const { resource } of bound) {
      let id = this.#bufferIds.get(resource.buffer);
      if (id === undefined) this.#bufferIds.set(resource.buffer, id = this.#nextBufferId++);
      key.push(id, resource.offset, resource.size);
    }
    let group = this.#bindGroups.get(key);
    if (!group) {
      if (this.#bindGroups.size >= BIND_GROUP_CACHE_LIMIT) this.#bindGroups.clear();
      group = this.device.createBindGroup({
        layout: kernel.layout,
        entries: [
          { binding: 0, resource: { buffer: arena, offset: 0, size: PARAMS_BYTES } },
          ...bound.map((b, i) => ({ binding: i + 1, resource: b.resource })),
        ],
      });
      this.#bindGroups.add(key, group);
    }
    return group;
  }

  staging(bytes: number): GPUBuffer {
    const size = sizeClass(bytes);
    return this.#staging.get(size)?.pop() ??
      this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }

  releaseStaging(buffer: GPUBuffer): void {
    let list = this.#staging.get(buffer.size);
    if (!list) this.#staging.set(buffer.size, list = []);
    list.push(buffer);
  }

  destroy(): void {
    this.#destroyed = true;
    this.pool.destroy();
    for (const buffer of this.#owned) buffer.destroy();
    this.device.destroy();
  }

  /** The contiguous byte range spanning a (possibly strided) tensor. */
  #dense(tensor: Tensor): Tensor {
    if (tensor.contiguous) return tensor;
    const span = (tensor.rows - 1) * tensor.rowStride + tensor.rowLength;
    return new Tensor(tensor.buffer, tensor.dtype, [span], tensor.offset);
  }

  #gather<T extends Float32Array<ArrayBuffer> | Uint32Array<ArrayBuffer>>(tensor: Tensor, values: T): T {
    if (tensor.contiguous) return values;
    const out = new (values.constructor as { new (n: number): T })(tensor.size);
    for (let r = 0; r < tensor.rows; r++) {
      out.set(
        values.subarray(r * tensor.rowStride, r * tensor.rowStride + tensor.rowLength),
        r * tensor.rowLength,
      );
    }
    return out;
  }
}
