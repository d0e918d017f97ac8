/**
 * A body's chunks, failing with `message` when the next one takes longer than `stallMs` to come (a server that
 * stopped sending); the body is cancelled when iteration ends, however it ends. Only a pending read is timed, so
 * a consumer that pauses does not pass for a silent server.
 */
export async function* stalling(
  body: ReadableStream<Uint8Array> | null,
  stallMs: number,
  message: string,
): AsyncGenerator<Uint8Array> {
  if (!body) return;
  const reader = body.getReader();
  try {
    while (true) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stalled = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(message)), stallMs);
      });
      try {
        const { done, value } = await Promise.race([reader.read(), stalled]);
        if (done) return;
        yield value;
      } finally {
        clearTimeout(timer);
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}
