/**
 * The output items this server's Responses answers gave (messages, function and custom tool calls), remembered
 * by id so that a client can send `item_reference` items back instead of the items: the Vercel AI SDK's OpenAI
 * provider does so for every earlier answer of a conversation unless told `store: false`, whatever the response
 * said. Only what the conversation needs is kept (a message's text, a call's name and arguments or input), the
 * most recently used first, within a count and a size; a process (or an edge isolate) knows only its own answers.
 */

export type OutputItem =
  | { type: "message"; role: "assistant"; content: { type: "output_text"; text: string }[] }
  | { type: "function_call"; call_id: string; name: string; namespace?: string; arguments: string }
  | { type: "custom_tool_call"; call_id: string; name: string; input: string };

export class OutputItems {
  readonly #items = new Map<string, { item: OutputItem; bytes: number }>();
  #bytes = 0;

  constructor(readonly maxItems = 10_000, readonly maxBytes = 64 * 1024 * 1024) {}

  get size(): number {
    return this.#items.size;
  }

  remember(id: string, item: OutputItem): void {
    this.#drop(id);
    const bytes = 2 * JSON.stringify(item).length;
    if (bytes > this.maxBytes) return;
    this.#items.set(id, { item, bytes });
    this.#bytes += bytes;
    for (const [old] of this.#items) {
      if (this.#items.size <= this.maxItems && this.#bytes <= this.maxBytes) break;
      this.#drop(old);
    }
  }

  /** The item, now the most recently used; undefined when it is not (or no longer) known. */
  recall(id: string): OutputItem | undefined {
    const entry = this.#items.get(id);
    if (!entry) return undefined;
    this.#items.delete(id);
    this.#items.set(id, entry);
    return entry.item;
  }

  #drop(id: string): void {
    const entry = this.#items.get(id);
    if (!entry) return;
    this.#items.delete(id);
    this.#bytes -= entry.bytes;
  }
}
