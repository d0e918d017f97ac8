/**
 * Work on the same bytes, asked for again while it runs, done once: a gateway sends each of a request's n choices
 * to a GPU host as a request of its own, each with the request's image files, which the host would decode n times.
 * Keyed by a sample of the bytes; a match is then compared in full. The work's signal aborts only when every
 * request waiting for it has gone.
 */

interface Entry<T> {
  bytes: Uint8Array;
  options: string;
  promise: Promise<T>;
  waiting: number;
  controller: AbortController;
}

export class SharedWork<T> {
  readonly #running = new Map<number, Entry<T>[]>();

  /** `work` on `bytes` under `options` (compared as JSON), or the same work already running. */
  run(
    bytes: Uint8Array,
    options: unknown,
    signal: AbortSignal,
    work: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    signal.throwIfAborted();
    const key = sample(bytes), text = JSON.stringify(options);
    const list = this.#running.get(key) ?? [];
    let entry = list.find((e) => e.options === text && equal(e.bytes, bytes));
    if (!entry) {
      const controller = new AbortController();
      const started: Entry<T> = {
        bytes,
        options: text,
        waiting: 0,
        controller,
        promise: work(controller.signal),
      };
      started.promise.catch(() => {}).finally(() => this.#forget(key, started));
      this.#running.set(key, [...list, started]);
      entry = started;
    }
    const shared = entry;
    shared.waiting++;
    return new Promise<T>((resolve, reject) => {
      const leave = () => {
        // The last one waiting gone: the work stops, and a later request starts its own.
        if (--shared.waiting === 0) {
          this.#forget(key, shared);
          shared.controller.abort(signal.reason);
        }
        reject(signal.reason);
      };
      signal.addEventListener("abort", leave, { once: true });
      shared.promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", leave));
    });
  }

  #forget(key: number, entry: Entry<T>): void {
    const rest = (this.#running.get(key) ?? []).filter((e) => e !== entry);
    if (rest.length) this.#running.set(key, rest);
    else this.#running.delete(key);
  }
}

/** The length and 64 bytes spread over the file, as a number (equal files always agree). */
function sample(bytes: Uint8Array): number {
  let h = bytes.length | 0;
  const stride = Math.max(1, Math.floor(bytes.length / 64));
  for (let i = 0; i < bytes.length; i += stride) h = Math.imul(h ^ bytes[i], 0x9e3779b1);
  return h;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
