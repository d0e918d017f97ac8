/**
 * Maps keyed by a path of values (objects or primitives) walked one Map per value, for caches looked up per
 * dispatch: building and hashing a string key for each lookup cost a large share of recording a step.
 */
export type PathNode = Map<unknown, unknown>;

const VALUE = Symbol("value");

/** The node one value further along the path (made on first use). */
export function step(node: PathNode, key: unknown): PathNode {
  let next = node.get(key) as PathNode | undefined;
  if (!next) node.set(key, next = new Map());
  return next;
}

export function valueAt<V>(node: PathNode): V | undefined {
  return node.get(VALUE) as V | undefined;
}

export function setValueAt<V>(node: PathNode, value: V): void {
  node.set(VALUE, value);
}
