/** Errors from reading weight files: each names the file and, where one is involved, the tensor. */

export type WeightErrorKind = "io" | "format" | "truncated" | "missing" | "shape" | "dtype" | "unsupported";

export class WeightFileError extends Error {
  override name = "WeightFileError";
  constructor(
    readonly kind: WeightErrorKind,
    readonly file: string,
    problem: string,
    readonly tensor?: string,
    /** The tensor's name in the file, where the file names it its own way. */
    stored?: string,
  ) {
    const named = tensor === undefined
      ? ""
      : `tensor "${tensor}"${stored ? ` (stored as "${stored}")` : ""}: `;
    super(`${file}: ${named}${problem}`);
  }
}
