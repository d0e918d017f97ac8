/**
 * One turn of the event loop. Awaiting a settled promise (a GPU step without a readback, Deno's popErrorScope)
 * only runs microtasks: HTTP handlers, timers and signal handlers wait until something yields like this.
 */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
