/**
 * Caches looked up for every dispatch (kernels, bind groups), keyed by a short list of numbers: one Map lookup by
 * the key's hash, then a comparison. A trie of Maps, one per key part, took 1.4 ms of a 40-layer decode step's
 * 2.1 ms encoding on lavapipe for its bind groups (cache misses in hundreds of small Maps); this takes 0.3 ms.
 */
interface Entry<V> {
  readonly key: readonly number[];
  readonly value: V;
  readonly next?: Entry<V>;
}

export class KeyTable<V> {
  #buckets = new Map<number, Entry<V>>();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  get(key: readonly number[]): V | undefined {
    for (let e = this.#buckets.get(keyHash(key)); e; e = e.next) {
      if (same(e.key, key)) return e.value;
    }
    return undefined;
  }

  /** Adds a value under a key not in the table (the key is copied: callers may reuse theirs). */
  add(key: readonly number[], value: V): void {
    const h = keyHash(key);
    this.#buckets.set(h, { key: key.slice(), value, next: this.#buckets.get(h) });
    this.#size++;
  }

  clear(): void {
    this.#buckets = new Map();
    this.#size = 0;
  }
}

/**
 * A 30-bit hash of a key (of non-negative integers below 2^53, the low and high 32 bits of each mixed in; other
 * numbers only hash less evenly). No key may hold NaN, which equals nothing, itself included.
 */
export function keyHash(key: readonly number[]): number {
  let h = key.length;
  for (let i = 0; i < key.length; i++) {
    const v = key[i];
    h = Math.imul(h ^ (v >>> 0), 0x9e3779b1);
    h = Math.imul(h ^ (h >>> 15) ^ ((v / 4294967296) >>> 0), 0x85ebca6b);
  }
  return (h ^ (h >>> 13)) & 0x3fffffff;
}

function same(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
