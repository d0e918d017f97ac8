/**
 * Command recording: ops append dispatches to a Recorder, and `submit()` encodes them all into one command buffer
 * and one queue submission (or a few, on an adapter whose submit blocks), so a whole forward step costs one
 * submit and one small parameter upload.
 *
 * Each dispatch's parameters (shapes, offsets, scalars) go into one uniform "arena" buffer at 256-byte slots and are
 * bound with a dynamic offset, so bind groups depend only on the tensors bound and are reused across steps.
 * Tensors are bound from an offset aligned down to `minStorageBufferOffsetAlignment`; the kernel gets the
 * remainder as an element (or byte) offset in its parameters, so any view can be bound.
 */
import { nextTurn } from "../event_loop.ts";
import { elementBytes, type ElementType, isBlockFormat } from "./dtype.ts";
import type { GpuContext } from "./context.ts";
import { type Kernel, PARAMS_BYTES } from "./pipeline.ts";
import { bufferSize, Tensor } from "./tensor.ts";

/** A tensor bound for a dispatch: the buffer range and where the tensor starts inside it. */
export interface Bound {
  readonly resource: GPUBufferBinding & { offset: number; size: number };
  /** Offset of the tensor's first element inside the binding: in elements, or in bytes for block formats. */
  readonly offset: number;
  /** The same offset in bytes (kernels address weights of every format by byte). */
  readonly byteOffset: number;
}

/**
 * A kernel's uniform parameters, in the order of its WGSL `Params` struct (all 4-byte scalars). Kept as plain
 * numbers (a step records hundreds of these) and written into the parameter arena at submit.
 */
export class Params {
  readonly values: number[] = [];
  /** Indices of the values that are f32 (the others are u32). */
  readonly #floatAt: number[] = [];

  u32(...values: number[]): this {
    for (const v of values) {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
        throw new RangeError(`parameter ${v} is not a u32`);
      }
      this.#push(v);
    }
    return this;
  }

  f32(...values: number[]): this {
    for (const v of values) {
      this.#floatAt.push(this.values.length);
      this.#push(v);
    }
    return this;
  }

  /** Writes the values at word `at` of the arena's two views. */
  writeTo(words: Uint32Array, floats: Float32Array, at: number): void {
    const { values } = this;
    for (let i = 0; i < values.length; i++) words[at + i] = values[i];
    for (const i of this.#floatAt) floats[at + i] = values[i];
  }

  #push(v: number): void {
    if (this.values.length === PARAMS_BYTES / 4) throw new RangeError("too many kernel parameters");
    this.values.push(v);
  }
}

interface DispatchCommand {
  kind: "dispatch";
  kernel: Kernel;
  bound: readonly Bound[];
  params: Params;
  groups: readonly [number, number, number];
}

interface CopyCommand {
  kind: "copy";
  src: GPUBuffer;
  srcOffset: number;
  dst: GPUBuffer;
  dstOffset: number;
  size: number;
}

interface ReadCommand {
  kind: "read";
  src: GPUBuffer;
  srcOffset: number;
  size: number;
  /** Bytes to skip at the start of the aligned copy. */
  skip: number;
  length: number;
  resolve: (bytes: Uint8Array<ArrayBuffer>) => void;
  reject: (error: Error) => void;
}

type Command = DispatchCommand | CopyCommand | ReadCommand;

/** Where encoding stands: the next command, and the dispatches and reads encoded so far. */
interface Cursor {
  command: number;
  dispatch: number;
  read: number;
}

export class Recorder {
  readonly ctx: GpuContext;
  readonly label: string;
  #commands: Command[] = [];
  #writes: { buffer: GPUBuffer; offset: number; data: Uint8Array<ArrayBuffer> }[] = [];
  #scratch: Tensor[] = [];
  #submitted = false;
  /** Host time submit() spent encoding the commands and in queue.submit, in ms (for benchmarks). */
  readonly timing = { encodeMs: 0, submitMs: 0 };

  constructor(ctx: GpuContext, label = "step") {
    this.ctx = ctx;
    this.label = label;
  }

  get device(): GPUDevice {
    return this.ctx.device;
  }

  /** Number of dispatches recorded so far. */
  get dispatches(): number {
    return this.#commands.filter((c) => c.kind === "dispatch").length;
  }

  /**
   * The binding of a tensor (or of its byte range [start, end) relative to the tensor's start, for windows over
   * large weights). Throws when the range exceeds maxStorageBufferBindingSize.
   */
  bind(tensor: Tensor, start = 0, end = tensor.byteLength): Bound {
    const limits = this.ctx.bindingLimits;
    const align = limits.minStorageBufferOffsetAlignment;
    const first = tensor.offset + start;
    const base = Math.floor(first / align) * align;
    // Ends rounded up to 16 bytes (buffers are multiples of 16) so that vec4 views see the last elements.
    const size = Math.max(
      16,
      Math.min(bufferSize(tensor.buffer), Math.ceil((tensor.offset + end) / 16) * 16) - base,
    );
    if (size > limits.maxStorageBufferBindingSize) {
      throw new RangeError(
        `${tensor} needs a ${size}-byte binding, above the ${limits.maxStorageBufferBindingSize} bytes this GPU ` +
          `binds at once (maxStorageBufferBindingSize); split it into smaller tensors`,
      );
    }
    const unit = isBlockFormat(tensor.dtype) ? 1 : elementBytes(tensor.dtype as ElementType);
    return {
      resource: { buffer: tensor.buffer, offset: base, size },
      offset: (first - base) / unit,
      byteOffset: first - base,
    };
  }

  dispatch(
    kernel: Kernel,
    bound: readonly Bound[],
    params: Params,
    groups: number | readonly [number, number, number],
  ): void {
    this.#open();
    if (bound.length !== kernel.bindings.length) {
      throw new Error(`${kernel.name} takes ${kernel.bindings.length} tensors, got ${bound.length}`);
    }
    const g = typeof groups === "number" ? this.#fold(groups) : groups;
    if (g[0] * g[1] * g[2] === 0) return;
    this.#commands.push({ kind: "dispatch", kernel, bound, params, groups: g });
  }

  /** Copies src's bytes into dst (same byte length; offsets and lengths multiples of 4). */
  copy(src: Tensor, dst: Tensor): void {
    this.#open();
    if (src.byteLength !== dst.byteLength) throw new RangeError(`copy: ${src} and ${dst} differ in size`);
    if (!src.contiguous || !dst.contiguous) throw new RangeError("copy needs contiguous tensors");
    if (src.offset % 4 || dst.offset % 4 || src.byteLength % 4) {
      throw new RangeError("copy needs 4-byte aligned offsets and lengths");
    }
    this.#commands.push({
      kind: "copy",
      src: src.buffer,
      srcOffset: src.offset,
      dst: dst.buffer,
      dstOffset: dst.offset,
      size: src.byteLength,
    });
  }

  /** Writes bytes into a tensor; all writes land before any of this recorder's commands run. */
  write(tensor: Tensor, data: ArrayBufferView): void {
    this.#open();
    const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength !== tensor.byteLength || !tensor.contiguous) {
      throw new RangeError(`write: ${bytes.byteLength} bytes for ${tensor} (${tensor.byteLength} bytes)`);
    }
    if (tensor.offset % 4) throw new RangeError("write needs a 4-byte aligned tensor");
    const padded = bytes.byteLength % 4 ? new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4) : bytes.slice();
    if (padded.byteLength !== bytes.byteLength) padded.set(bytes);
    this.#writes.push({ buffer: tensor.buffer, offset: tensor.offset, data: padded });
  }

  /** A pooled tensor that lives until this recorder's commands have been submitted. */
  scratch(dtype: Tensor["dtype"], shape: readonly number[]): Tensor {
    this.#open();
    const tensor = this.ctx.tensor(dtype, shape, { label: `${this.label} scratch` });
    this.#scratch.push(tensor);
    return tensor;
  }

  /** A scratch tensor holding `data`. */
  upload(dtype: Tensor["dtype"], shape: readonly number[], data: ArrayBufferView): Tensor {
    const tensor = this.scratch(dtype, shape);
    this.write(tensor, data);
    return tensor;
  }

  /** The tensor's bytes after this recorder's commands ran; resolves once submit() has been called. */
  read(tensor: Tensor): Promise<Uint8Array<ArrayBuffer>> {
    this.#open();
    if (!tensor.contiguous) return Promise.reject(new RangeError("read needs a contiguous tensor"));
    const start = Math.floor(tensor.offset / 4) * 4;
    const size = Math.max(4, Math.ceil((tensor.offset + tensor.byteLength) / 4) * 4 - start);
    const bytes = new Promise<Uint8Array<ArrayBuffer>>((resolve, reject) =>
      this.#commands.push({
        kind: "read",
        src: tensor.buffer,
        srcOffset: start,
        size,
        skip: tensor.offset - start,
        length: tensor.byteLength,
        resolve,
        reject,
      })
    );
    bytes.catch(() => {}); // a failed submit rejects it; the submit's own rejection is what callers see first
    return bytes;
  }

  /** Drops what was recorded without running it (a step that failed while being recorded), freeing its scratch. */
  discard(): void {
    this.#open();
    this.#submitted = true;
    for (const c of this.#commands) {
      if (c.kind === "read") c.reject(new Error(`recorder "${this.label}" was discarded`));
    }
    for (const tensor of this.#scratch) this.ctx.release(tensor);
    this.#scratch = [];
    this.#commands = [];
    this.#writes = [];
  }

  /**
   * Encodes everything recorded into one command buffer and submits it (in parts where a submit blocks for long:
   * see ContextOptions.submitBudgetMs). Rejects with the GPU's message when a kernel fails to compile or a
   * command is invalid.
   */
  async submit(): Promise<void> {
    this.#open();
    this.#submitted = true;
    const { device, ctx } = this;
    const commands = this.#commands;
    const reads = commands.filter((c): c is ReadCommand => c.kind === "read");
    let staging: GPUBuffer[] = [];
    try {
      const kernels = new Set(commands.flatMap((c) => c.kind === "dispatch" ? [c.kernel] : []));
      await Promise.all([...kernels].map((k) => k.ready));

      const slot = Math.max(PARAMS_BYTES, device.limits.minUniformBufferOffsetAlignment);
      const dispatches = commands.filter((c): c is DispatchCommand => c.kind === "dispatch");
      staging = reads.map((r) => ctx.staging(r.size));

      const paramWords = new Uint32Array(dispatches.length * slot / 4);
      const paramFloats = new Float32Array(paramWords.buffer);
      dispatches.forEach((c, d) => c.params.writeTo(paramWords, paramFloats, d * slot / 4));
      // Dynamic offsets passed as a typed-array range: Deno converts a JS array per call, ~2x slower.
      const offsets = Uint32Array.from(dispatches, (_, i) => i * slot);
      const perSubmit = ctx.dispatchesPerSubmit();
      this.timing.encodeMs = this.timing.submitMs = 0;
      const done = await ctx.queueTurn();
      try {
        // Taken in turn: a larger arena replaces the one a submit in parts still reads.
        const arena = ctx.paramArena(dispatches.length * slot);
        const cursor: Cursor = { command: 0, dispatch: 0, read: 0 };
        let part = 0;
        do {
          // Between parts the event loop runs (see ContextOptions.submitBudgetMs).
          if (part > 0) await nextTurn();
          const encodeStart = performance.now();
          device.pushErrorScope("out-of-memory");
          device.pushErrorScope("validation");
          // Both scopes are popped, whatever happens, before awaiting anything else.
          const popped = () => Promise.all([device.popErrorScope(), device.popErrorScope()]);
          try {
            const first = cursor.dispatch;
            const commandBuffer = this.#encode(cursor, perSubmit, { arena, offsets, staging });
            if (part++ === 0) {
              // Every part's parameters and the recorded writes, before the first part runs.
              if (dispatches.length) device.queue.writeBuffer(arena, 0, paramWords);
              for (const w of this.#writes) device.queue.writeBuffer(w.buffer, w.offset, w.data);
            }
            const submitStart = performance.now();
            device.queue.submit([commandBuffer]);
            ctx.submits++;
            const submitMs = performance.now() - submitStart;
            ctx.noteSubmit(submitMs, cursor.dispatch - first);
            this.timing.encodeMs += submitStart - encodeStart;
            this.timing.submitMs += submitMs;
          } catch (error) {
            await popped();
            throw error;
          }
          const [validation, memory] = await popped();
          const error = validation ?? memory;
          if (error) throw new Error(`GPU rejected "${this.label}": ${error.message}`);
        } while (cursor.command < commands.length);
      } finally {
        done();
      }

      reads.forEach((read, i) => {
        const buffer = staging[i];
        buffer.mapAsync(GPUMapMode.READ, 0, read.size).then(() => {
          const bytes = new Uint8Array(
            buffer.getMappedRange(0, read.size).slice(read.skip, read.skip + read.length),
          );
          buffer.unmap();
          ctx.releaseStaging(buffer);
          read.resolve(bytes);
        }, read.reject);
      });
    } catch (error) {
      for (const read of reads) read.reject(error as Error);
      for (const buffer of staging) ctx.releaseStaging(buffer);
      throw error;
    } finally {
      for (const tensor of this.#scratch) ctx.release(tensor);
      this.#scratch = [];
      this.#commands = [];
      this.#writes = [];
    }
  }

  /** Encodes the commands from the cursor on, at most `limit` dispatches, advancing the cursor. */
  #encode(
    cursor: Cursor,
    limit: number,
    bound: { arena: GPUBuffer; offsets: Uint32Array; staging: GPUBuffer[] },
  ): GPUCommandBuffer {
    const { ctx } = this;
    const commands = this.#commands;
    const encoder = this.device.createCommandEncoder({ label: this.label });
    let pass: GPUComputePassEncoder | undefined;
    const first = cursor.dispatch;
    for (; cursor.command < commands.length && cursor.dispatch - first < limit; cursor.command++) {
      const command = commands[cursor.command];
      if (command.kind === "dispatch") {
        pass ??= encoder.beginComputePass({ label: this.label });
        pass.setPipeline(command.kernel.pipeline);
        const group = ctx.bindGroup(command.kernel, bound.arena, command.bound);
        pass.setBindGroup(0, group, bound.offsets, cursor.dispatch++, 1);
        pass.dispatchWorkgroups(...command.groups);
        continue;
      }
      pass?.end();
      pass = undefined;
      if (command.kind === "copy") {
        encoder.copyBufferToBuffer(
          command.src,
          command.srcOffset,
          command.dst,
          command.dstOffset,
          command.size,
        );
      } else {
        encoder.copyBufferToBuffer(
          command.src,
          command.srcOffset,
          bound.staging[cursor.read++],
          0,
          command.size,
        );
      }
    }
    pass?.end();
    return encoder.finish();
  }

  #fold(groups: number): [number, number, number] {
    const max = this.ctx.maxWorkgroupsPerDimension;
    if (groups <= max) return [groups, 1, 1];
    const y = Math.ceil(groups / max);
    return [Math.ceil(groups / y), y, 1];
  }

  #open(): void {
    if (this.#submitted) throw new Error(`recorder "${this.label}" was already submitted`);
  }
}
