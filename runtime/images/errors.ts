/**
 * What can be wrong with an image a client sent. The WASM patcher reports a stable code with each error
 * (`"<code>: <message>"`); `imageError` turns it into one of these classes, which the HTTP layer maps to a
 * status in one place (the pixel limit to 413, the others to 400).
 */

/** Base class of every error caused by the image bytes themselves. */
export class ImageError extends Error {
  override name = "ImageError";
}

/** Not one of the supported formats (PNG, JPEG, WebP, GIF, BMP), or a format feature the decoder lacks. */
export class ImageFormatError extends ImageError {
  override name = "ImageFormatError";
}

/** Truncated or corrupt data. */
export class ImageDecodeError extends ImageError {
  override name = "ImageDecodeError";
}

/** The header declares a width or height of zero. */
export class ImageSizeError extends ImageError {
  override name = "ImageSizeError";
}

/** The header declares more pixels than allowed; the image was refused before decoding. */
export class ImageTooLargeError extends ImageError {
  override name = "ImageTooLargeError";
}

const CLASSES: Record<string, new (message: string) => Error> = {
  unknown_format: ImageFormatError,
  unsupported: ImageFormatError,
  corrupt: ImageDecodeError,
  zero_size: ImageSizeError,
  too_many_pixels: ImageTooLargeError,
  // Options out of range are the caller's mistake, not the image's.
  invalid_options: RangeError,
};

/** The error class for an error thrown by the WASM patcher. */
export function imageError(err: unknown): Error {
  if (err instanceof WebAssembly.RuntimeError) {
    // A decoder bug on hostile input aborts the WASM call; the image is what triggered it.
    return new ImageDecodeError(`the decoder failed on this image (${err.message})`, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  const match = /^([a-z_]+): (.*)$/s.exec(message);
  const Class = match ? CLASSES[match[1]] : undefined;
  return Class ? new Class(match![2]) : err instanceof Error ? err : new Error(message);
}
