/**
 * Compute pipelines built from the WGSL files in kernels/, cached per device, file, entry point, type aliases and
 * specialization constants.
 *
 * Three small source conventions keep one file per operation family:
 * - `#include "lib/x.wgsl"` lines are replaced by that file (once per module), for helpers several families share;
 * - `#ifdef NAME` ... (`#else` ...) `#endif` keep their lines where the caller defines NAME: a binding only some
 *   entry points need (the i-quants' grid) must be left out of the others' modules, since WGSL counts every
 *   binding a called function names as used, whatever branch it sits in;
 * - type aliases come from the caller (`alias X = f16;` is prepended), so one entry point serves f32 and f16
 *   activations; `enable f16;` is added only when an alias is f16, so f32 kernels run on any WebGPU device.
 *
 * Every kernel binds a uniform parameter block at @binding(0) (with a dynamic offset into the recorder's
 * parameter arena) and its tensors at @binding(1..n), in the order the wrapper lists them.
 */
import type { FloatType } from "./dtype.ts";
import { KeyTable } from "./key_table.ts";

const KERNELS_DIR = new URL("../../kernels/", import.meta.url);
/** Ends the aliases and the constants in a kernel's key (above any name number; no constant takes it). */
const SEPARATOR = 2 ** 52;

/** How a tensor binding is used: read-only storage or read-write storage. */
export type BindingKind = "read" | "write";

export interface KernelSpec {
  file: string;
  entry: string;
  /** Type aliases, e.g. `{ X: "f16", Y: "f32" }` becomes `alias X = f16; alias Y = f32;`. */
  aliases?: Record<string, FloatType | "u32">;
  /** Values of the file's `override` constants. */
  constants?: Record<string, number>;
  /** Names that `#ifdef` sections test. */
  defines?: readonly string[];
  /** Bindings 1..n. */
  bindings: readonly BindingKind[];
}

export interface Kernel {
  readonly name: string;
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  /** Unique per kernel, for bind group caching. */
  readonly id: number;
  readonly bindings: readonly BindingKind[];
  /** Resolves once the driver has checked the kernel; rejects with the compiler's message. */
  readonly ready: Promise<void>;
}

/** Bytes of the uniform parameter block each dispatch gets (64 scalars). */
export const PARAMS_BYTES = 256;

const sources = new Map<string, string>();

function readSource(file: string): string {
  let source = sources.get(file);
  if (source === undefined) {
    source = Deno.readTextFileSync(new URL(file, KERNELS_DIR));
    sources.set(file, source);
  }
  return source;
}

/** The WGSL of a kernel file with its sections chosen and its includes expanded (each included file once). */
export function kernelSource(file: string, defines: readonly string[] = []): string {
  const chosen = new Set(defines);
  const expand = (file: string, included: Set<string>): string =>
    sections(readSource(file), chosen).replace(/^#include "([^"]+)"$/gm, (_, path: string) => {
      if (included.has(path)) return "";
      included.add(path);
      return expand(path, included);
    });
  return expand(file, new Set());
}

/**
 * The lines of `source` outside `#ifdef` sections, and inside those (nested or not) whose names are defined;
 * directives start their line.
 */
export function sections(source: string, defines: ReadonlySet<string>): string {
  const open: { kept: boolean; otherwise: boolean }[] = [];
  const lines: string[] = [];
  for (const line of source.split("\n")) {
    const directive = /^#(ifdef|else|endif)\b(.*)$/.exec(line);
    if (!directive) {
      if (open.every((s) => s.kept)) lines.push(line);
      continue;
    }
    const [, word, rest] = directive, name = rest.trim();
    if (word === "ifdef") {
      if (!/^\w+$/.test(name)) throw new SyntaxError(`#ifdef needs one name: ${line}`);
      open.push({ kept: defines.has(name), otherwise: false });
      continue;
    }
    if (name) throw new SyntaxError(`#${word} takes no name: ${line}`);
    const section = open.at(-1);
    if (!section) throw new SyntaxError(`#${word} without #ifdef`);
    if (word === "endif") open.pop();
    else if (section.otherwise) throw new SyntaxError("a second #else in one #ifdef");
    else {
      section.kept = !section.kept;
      section.otherwise = true;
    }
  }
  if (open.length) throw new SyntaxError("#ifdef without #endif");
  return lines.join("\n");
}

export class PipelineCache {
  readonly #device: GPUDevice;
  readonly #f16: boolean;
  /** Kernels by file, entry, then each alias, constant and binding (looked up for every dispatch). */
  readonly #kernels = new KeyTable<Kernel>();
  readonly #names = new Map<string, number>();
  readonly #key: number[] = [];
  readonly #layouts = new Map<string, GPUBindGroupLayout>();
  readonly #modules = new Map<string, GPUShaderModule>();
  #nextId = 1;

  constructor(device: GPUDevice, f16: boolean) {
    this.#device = device;
    this.#f16 = f16;
  }

  get(spec: KernelSpec): Kernel {
    const aliases = spec.aliases ?? {};
    const constants = spec.constants ?? {};
    const key = this.#key;
    key.length = 0;
    key.push(this.#intern(spec.file), this.#intern(spec.entry));
    for (const name in aliases) key.push(this.#intern(name), this.#intern(aliases[name]));
    key.push(SEPARATOR);
    for (const name in constants) key.push(this.#intern(name), constants[name]);
    key.push(SEPARATOR);
    for (const name of spec.defines ?? []) key.push(this.#intern(name));
    key.push(SEPARATOR);
    for (const kind of spec.bindings) key.push(kind === "read" ? 0 : 1);
    let kernel = this.#kernels.get(key);
    if (!kernel) {
      kernel = this.#build(spec, aliases, constants);
      this.#kernels.add(key, kernel);
    }
    return kernel;
  }

  /** A small number for each file, entry, alias or constant name and type of a key. */
  #intern(text: string): number {
    let n = this.#names.get(text);
    if (n === undefined) this.#names.set(text, n = this.#names.size + 1);
    return n;
  }

  #build(
    spec: KernelSpec,
    aliases: Record<string, string>,
    constants: Record<string, number>,
  ): Kernel {
    const types = Object.entries(aliases).map(([name, type]) => `${name}=${type}`).join(",");
    const name = `${spec.file}:${spec.entry}${types ? `<${types}>` : ""}${
      spec.defines?.length ? `[${spec.defines.join(",")}]` : ""
    }`;
    const f16 = Object.values(aliases).includes("f16");
    if (f16 && !this.#f16) {
      throw new Error(
        `kernel ${name} needs f16, but this GPU lacks the shader-f16 feature: use f32 activations`,
      );
    }
    const prelude = (f16 ? "enable f16;\n" : "") +
      Object.entries(aliases).map(([alias, type]) => `alias ${alias} = ${type};\n`).join("");
    const defines = spec.defines ?? [];
    const moduleKey = `${spec.file}|${defines.join(",")}|${prelude}`;
    let module = this.#modules.get(moduleKey);
    const device = this.#device;
    device.pushErrorScope("validation");
    if (!module) {
      module = device.createShaderModule({
        label: spec.file,
        code: prelude + kernelSource(spec.file, defines),
      });
      this.#modules.set(moduleKey, module);
    }
    const layout = this.#layout(spec.bindings);
    const pipeline = device.createComputePipeline({
      label: name,
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: spec.entry, constants },
    });
    const ready = device.popErrorScope().then((error) => {
      if (error) throw new Error(`kernel ${name} does not compile: ${error.message}`);
    });
    ready.catch(() => {}); // reported by the recorder that uses it
    return { name, pipeline, layout, id: this.#nextId++, bindings: spec.bindings, ready };
  }

  #layout(bindings: readonly BindingKind[]): GPUBindGroupLayout {
    const key = bindings.join(",");
    let layout = this.#layouts.get(key);
    if (!layout) {
      const entries: GPUBindGroupLayoutEntry[] = [{
        binding: 0,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: "uniform", hasDynamicOffset: true, minBindingSize: PARAMS_BYTES },
      }];
      bindings.forEach((kind, i) =>
        entries.push({
          binding: i + 1,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: kind === "read" ? "read-only-storage" : "storage" },
        })
      );
      layout = this.#device.createBindGroupLayout({ entries });
      this.#layouts.set(key, layout);
    }
    return layout;
  }
}
