/** What the routes that take several images share: one policy's preprocessing options, and failing together. */
import type { PreprocessOptions, ResizeMode } from "../../runtime/images/preprocess.ts";
import type { ImagePolicy } from "../service.ts";

/**
 * The longest side of an image asked for at OpenAI's low detail ("a low-res 512px x 512px version"): a quarter of
 * the tokens of one at Pixtral's 1024.
 */
export const LOW_DETAIL_SIZE = 512;

/**
 * The options an image is prepared with under `policy`, in `resize` mode, at most `maxSize` on its longest side
 * (LOW_DETAIL_SIZE at low detail) where that is below the policy's.
 */
export function imageOptions(policy: ImagePolicy, resize: ResizeMode, maxSize = Infinity): PreprocessOptions {
  const { patchSize, maxPixels, orientation } = policy;
  return {
    resize,
    orientation,
    maxImageSize: Math.min(policy.maxImageSize, maxSize),
    patchSize,
    maxPixels,
  };
}

/**
 * `work` on every item, `limit` at once, in order. The first that fails ends the others (their signal aborts:
 * their fetches and decodes would go on for nothing; those not begun do not begin), and its error is the result.
 */
export async function allOrNone<T, R>(
  items: readonly T[],
  signal: AbortSignal | undefined,
  work: (item: T, index: number, signal: AbortSignal) => Promise<R>,
  limit = Infinity,
): Promise<R[]> {
  const failed = new AbortController();
  const each = signal ? AbortSignal.any([signal, failed.signal]) : failed.signal;
  const results: R[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      each.throwIfAborted();
      const i = next++;
      results[i] = await work(items[i], i, each).catch((err) => {
        failed.abort(err);
        throw err;
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
