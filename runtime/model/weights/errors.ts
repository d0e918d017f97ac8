/** Errors from reading weight files: each names the file and, where one is involved, the tensor. */

export type WeightErrorKind = "io" | "format" | "truncated" | "missing" | "shape" | "dtype" | "unsupported";

export class WeightFileError extends Error {
  override name = "WeightFileError";
  constructor(
    readonly kind: WeightErrorKind,
    readonly file: string,
    problem: string,
    readonly tensor?: string,
  ) {
    super(`${file}: ${tensor !== undefined ? `tensor "${tensor}": ` : ""}${problem}`);
  }
}
