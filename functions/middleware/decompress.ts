/**
 * A compressed request body, decompressed by the platform's DecompressionStream with the check Deno's leaves
 * out: a zlib ("deflate") body cut short came out, without an error, as the part that arrived (cut in its
 * 4-byte checksum, as the whole body), which read as another error or, cut at the right place, as a shorter
 * request. Its Adler-32 trailer is compared here with what came out (gzip's end Deno does check).
 */

type Bytes = Uint8Array<ArrayBuffer>;

export function decompressed(body: ReadableStream<Bytes>, format: CompressionFormat): ReadableStream<Bytes> {
  if (format !== "deflate") return body.pipeThrough(new DecompressionStream(format));
  /** The body's last four bytes so far: the trailer, once it has ended. */
  let tail = new Uint8Array();
  const adler = new Adler32();
  return body
    .pipeThrough(
      new TransformStream<Bytes, Bytes>({
        transform(chunk, controller) {
          if (chunk.length >= 4) tail = chunk.slice(-4);
          else {
            const joined = new Uint8Array(tail.length + chunk.length);
            joined.set(tail);
            joined.set(chunk, tail.length);
            tail = joined.slice(-4);
          }
          controller.enqueue(chunk);
        },
      }),
    )
    .pipeThrough(new DecompressionStream(format))
    .pipeThrough(
      new TransformStream<Bytes, Bytes>({
        transform(chunk, controller) {
          adler.update(chunk);
          controller.enqueue(chunk);
        },
        flush() {
          if (tail.length < 4 || new DataView(tail.buffer).getUint32(0) !== adler.value) {
            throw new Error("it ends before its compressed data does");
          }
        },
      }),
    );
}

/** Why a body did not decompress, in words a client can act on. */
export function decompressionError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  // Deno's words (a Rust I/O error's) for bytes after the end of the compressed stream.
  if (message === "failed to write whole buffer") {
    return "more data follows the end of its compressed stream (one stream is read, with nothing after it)";
  }
  return message;
}

/** zlib's checksum (RFC 1950) of what a stream decompressed to. */
class Adler32 {
  #a = 1;
  #b = 0;

  update(bytes: Uint8Array) {
    let a = this.#a, b = this.#b;
    for (let i = 0; i < bytes.length;) {
      // Sums of up to 5552 bytes stay exact before the modulo (zlib's NMAX).
      const end = Math.min(i + 5552, bytes.length);
      for (; i < end; i++) b += a += bytes[i];
      a %= 65521;
      b %= 65521;
    }
    this.#a = a;
    this.#b = b;
  }

  get value(): number {
    return (this.#b * 65536 + this.#a) >>> 0;
  }
}
