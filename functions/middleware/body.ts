/**
 * Request bodies, read by the routes under two limits: a size (413), checked from Content-Length before anything
 * is read and counted while a body without one streams in, and a longest wait for its next part (408, as nginx's
 * client_body_timeout). Deno's server has no such wait: a client that sent its headers and part of a body, then
 * nothing (a stalled upload, a slowloris), held its connection and handler for ever.
 */
import type { Context, MiddlewareHandler } from "hono";
import { before } from "../deadline.ts";
import { decompressed, decompressionError } from "./decompress.ts";

/** The request body is over the server's limit (413). */
export class BodyTooLargeError extends Error {
  override name = "BodyTooLargeError";
}

/** The client stopped sending its request body midway (408). */
export class BodyTimeoutError extends Error {
  override name = "BodyTimeoutError";
}

/** A body in a Content-Encoding this server does not decode (415), or not valid in its own (400). */
export class BodyEncodingError extends Error {
  override name = "BodyEncodingError";
  constructor(message: string, readonly status: 400 | 415) {
    super(message);
  }
}

/** The Content-Encodings a body may come in (OpenAI's clients may compress), as DecompressionStream names them. */
const DECODINGS: Record<string, CompressionFormat | undefined> = {
  "": undefined,
  identity: undefined,
  gzip: "gzip",
  "x-gzip": "gzip",
  deflate: "deflate",
};

export interface BodyLimits {
  /** Largest body in bytes. */
  maxBytes: number;
  /** Longest wait for the next part of a body, in milliseconds. */
  idleMs: number;
}

/**
 * 256 MiB: a chat app sends the whole conversation's images with each turn (a dozen 20 MB photos as base64 fit;
 * Ollama, vLLM and llama.cpp's servers set no limit).
 */
export const MAX_BODY_BYTES = 256 * 1024 * 1024;
/** nginx's default client_body_timeout. */
export const BODY_IDLE_MS = 60_000;

declare module "hono" {
  interface ContextVariableMap {
    bodyLimits: BodyLimits;
    /** Set when the body was refused partway (a 408, a 413 as it streamed in): its connection is to close. */
    bodyFailed: boolean;
  }
}

/** Sets the limits `bodyText` reads under. */
export function bodyLimits(limits: BodyLimits): MiddlewareHandler {
  return async (c, next) => {
    c.set("bodyLimits", limits);
    await next();
  };
}

function tooLarge(maxBytes: number): BodyTooLargeError {
  return new BodyTooLargeError(`the request body is larger than ${maxBytes} bytes`);
}

/** The request's body as text: UTF-8 with a byte order mark dropped, as `Request.text()` reads it. */
export async function bodyText(c: Context): Promise<string> {
  const limits = c.get("bodyLimits") ?? { maxBytes: MAX_BODY_BYTES, idleMs: BODY_IDLE_MS };
  return new TextDecoder().decode(await bodyBytes(c.req.raw, limits));
}

/**
 * The request's body, read under `limits`: one whose Content-Length is over the size is refused unread; a
 * compressed one is decompressed, its size counted as it comes out (a small body that unpacks to gigabytes stops
 * at the limit).
 */
export async function bodyBytes(request: Request, { maxBytes, idleMs }: BodyLimits): Promise<Uint8Array> {
  const body = request.body;
  if (!body) return new Uint8Array();
  if (Number(request.headers.get("content-length")) > maxBytes) throw tooLarge(maxBytes);
  const encoding = (request.headers.get("content-encoding") ?? "").trim().toLowerCase();
  if (!(encoding in DECODINGS)) {
    throw new BodyEncodingError(
      `the request body's Content-Encoding ${
        JSON.stringify(encoding)
      } is not taken: send it as is, gzip or deflate`,
      415,
    );
  }
  const format = DECODINGS[encoding];
  const reader = (format ? decompressed(body, format) : body).getReader();
  const parts: Uint8Array[] = [];
  let length = 0;
  try {
    for (;;) {
      const read = await before(
        reader.read().catch((err) => {
          if (!format) throw err;
          throw new BodyEncodingError(
            `the request body is not valid ${encoding}: ${decompressionError(err)}`,
            400,
          );
        }),
        performance.now() + idleMs,
      );
      if (!read) {
        throw new BodyTimeoutError(
          `no more of the request body came for ${idleMs / 1000} s (after ${length} bytes)`,
        );
      }
      if (read.done) break;
      length += read.value.length;
      if (length > maxBytes) throw tooLarge(maxBytes);
      parts.push(read.value);
    }
  } catch (err) {
    reader.cancel().catch(() => {});
    throw err;
  }
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const part of parts) bytes.set(part, at), at += part.length;
  return bytes;
}
