/**
 * Where a request had fields the schema does not name: zod drops them while parsing, so they are found by
 * walking the raw value beside the parsed one. The routes log them, as they log unknown top-level fields, so
 * that an operator can see why a client's extra (say, a content part's `cache_control`) changed nothing.
 */
import { MAX_DEPTH } from "../../runtime/prompt/pyjson.ts";

/** Paths such as `messages[2].content[0].cache_control`; at most `limit` of them. */
export function droppedKeys(raw: unknown, parsed: unknown, path: string, limit = 20): string[] {
  const out: string[] = [];
  // Not deeper than a request may nest where it is read (a value 20,000 levels deep overflowed the stack here).
  const walk = (a: unknown, b: unknown, at: string, depth: number) => {
    if (
      out.length >= limit || depth > MAX_DEPTH || typeof a !== "object" || a === null ||
      typeof b !== "object" ||
      b === null
    ) {
      return;
    }
    if (Array.isArray(a)) {
      if (Array.isArray(b) && a.length === b.length) {
        a.forEach((item, i) => walk(item, b[i], `${at}[${i}]`, depth + 1));
      }
      return;
    }
    if (Array.isArray(b)) return;
    for (const [key, value] of Object.entries(a)) {
      if (out.length >= limit) return;
      if (Object.hasOwn(b, key)) walk(value, (b as Record<string, unknown>)[key], `${at}.${key}`, depth + 1);
      else out.push(`${at}.${key}`);
    }
  };
  walk(raw, parsed, path, 0);
  return out;
}
