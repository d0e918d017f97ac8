/** Waiting for a promise until a deadline: request bodies, held answers and streams' keep-alives use it. */

/** What `pending` gives, or undefined if `deadline` (a performance.now() time; Infinity: none) comes first. */
export async function before<T>(pending: Promise<T>, deadline: number): Promise<T | undefined> {
  if (deadline === Infinity) return await pending;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((resolve) =>
    timer = setTimeout(() => resolve(undefined), Math.max(0, deadline - performance.now()))
  );
  return await Promise.race([pending, late]).finally(() => clearTimeout(timer));
}
