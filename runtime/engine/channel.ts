/** A one-consumer async queue: the engine loop pushes tokens, a request's generator pulls them. */
export class Channel<T, R> {
  #items: T[] = [];
  #end?: { value: R } | { error: unknown };
  #wake?: () => void;

  push(item: T): void {
    this.#items.push(item);
    this.#wake?.();
  }

  close(value: R): void {
    this.#end ??= { value };
    this.#wake?.();
  }

  fail(error: unknown): void {
    this.#end ??= { error };
    this.#wake?.();
  }

  get closed(): boolean {
    return this.#end !== undefined;
  }

  async *drain(): AsyncGenerator<T, R> {
    while (true) {
      if (this.#items.length) {
        yield this.#items.shift()!;
        continue;
      }
      const end = this.#end;
      if (end) {
        if ("error" in end) throw end.error;
        return end.value;
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = undefined;
    }
  }
}
