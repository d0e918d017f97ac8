/** What the routes that take several images share: one policy's preprocessing options, and failing together. */
import type { PreprocessOptions, ResizeMode } from "../../runtime/images/preprocess.ts";
import type { ImagePolicy } from "../service.ts";

/** The options an image is prepared with under `policy`, in `resize` mode. */
export function imageOptions(policy: ImagePolicy, resize: ResizeMode): PreprocessOptions {
  const { maxImageSize, patchSize, maxPixels } = policy;
  return { resize, maxImageSize, patchSize, maxPixels };
}

/**
 * `work` on every item at once. The first that fails ends the others (their signal aborts: their fetches and
 * decodes would go on for nothing), and its error is the result.
 */
export function allOrNone<T, R>(
  items: readonly T[],
  signal: AbortSignal | undefined,
  work: (item: T, index: number, signal: AbortSignal) => Promise<R>,
): Promise<R[]> {
  const failed = new AbortController();
  const each = signal ? AbortSignal.any([signal, failed.signal]) : failed.signal;
  return Promise.all(items.map((item, i) =>
    work(item, i, each).catch((err) => {
      failed.abort(err);
      throw err;
    })
  ));
}
