/**
 * Positional reads from a file handle (Deno.open + seek/read), so multi-GB weight files are read tensor by
 * tensor and never whole. Reads on one handle are serialized because seek and read are two calls.
 */
import { WeightFileError } from "./errors.ts";

export class BinaryFile {
  #file: Deno.FsFile;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(readonly path: string, file: Deno.FsFile, readonly size: number) {
    this.#file = file;
  }

  static async open(path: string): Promise<BinaryFile> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (err) {
      const why = err instanceof Deno.errors.NotFound ? "no such file" : (err as Error).message;
      throw new WeightFileError("io", path, why);
    }
    const { size, isFile } = await file.stat();
    if (!isFile) {
      file.close();
      throw new WeightFileError("io", path, "not a regular file");
    }
    return new BinaryFile(path, file, size);
  }

  /** Exactly `length` bytes at `offset`; `tensor` names what was being read when the file ends too early. */
  read(offset: number, length: number, tensor?: string): Promise<Uint8Array<ArrayBuffer>> {
    return this.readInto(offset, new Uint8Array(length), tensor);
  }

  /** Fills `into` with the bytes at `offset` (read into a caller's buffer). */
  readInto<T extends Uint8Array>(offset: number, into: T, tensor?: string): Promise<T> {
    const task = this.#queue.then(() => this.#fill(offset, into, tensor));
    this.#queue = task.catch(() => {});
    return task;
  }

  async #fill<T extends Uint8Array>(offset: number, into: T, tensor?: string): Promise<T> {
    if (offset + into.length > this.size) {
      throw new WeightFileError(
        "truncated",
        this.path,
        `file is truncated: needs bytes ${offset}..${offset + into.length} but has ${this.size}`,
        tensor,
      );
    }
    await this.#file.seek(offset, Deno.SeekMode.Start);
    let filled = 0;
    while (filled < into.length) {
      const n = await this.#file.read(into.subarray(filled));
      if (n === null) {
        throw new WeightFileError(
          "truncated",
          this.path,
          `file ended at byte ${offset + filled} while reading ${into.length} bytes at ${offset}`,
          tensor,
        );
      }
      filled += n;
    }
    return into;
  }

  close(): void {
    this.#file.close();
  }
}
