/** Counters, gauges and histograms in Prometheus' text exposition format (version 0.0.4). */

type Labels = Record<string, string>;

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) =>
    `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`
  );
  return parts.length ? `{${parts.join(",")}}` : "";
}

function numberText(value: number): string {
  return Number.isFinite(value) ? String(value) : value > 0 ? "+Inf" : value < 0 ? "-Inf" : "NaN";
}

interface Metric {
  render(): string;
}

export class Counter implements Metric {
  readonly #values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}

  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    this.#values.set(key, (this.#values.get(key) ?? 0) + by);
  }

  get(labels: Labels = {}): number {
    return this.#values.get(labelText(labels)) ?? 0;
  }

  render(): string {
    const lines = [...this.#values].map(([labels, v]) => `${this.name}${labels} ${numberText(v)}`);
    if (lines.length === 0) lines.push(`${this.name} 0`);
    return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n${lines.join("\n")}\n`;
  }
}

/** A value read when scraped, so the registry never holds stale state ("counter": one that only grows). */
export class Gauge implements Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly read: () => number,
    readonly type: "gauge" | "counter" = "gauge",
  ) {}

  render(): string {
    return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} ${this.type}\n${this.name} ${
      numberText(this.read())
    }\n`;
  }
}

export class Histogram implements Metric {
  readonly #counts: number[];
  #sum = 0;
  #count = 0;

  constructor(readonly name: string, readonly help: string, readonly buckets: number[]) {
    this.#counts = new Array(buckets.length).fill(0);
  }

  observe(value: number): void {
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]) this.#counts[i]++;
    this.#sum += value;
    this.#count++;
  }

  get count(): number {
    return this.#count;
  }

  render(): string {
    const lines = this.buckets.map((le, i) => `${this.name}_bucket{le="${le}"} ${this.#counts[i]}`);
    lines.push(`${this.name}_bucket{le="+Inf"} ${this.#count}`);
    lines.push(`${this.name}_sum ${numberText(this.#sum)}`, `${this.name}_count ${this.#count}`);
    return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n${lines.join("\n")}\n`;
  }
}

export class Registry {
  readonly #metrics: Metric[] = [];

  register<M extends Metric>(metric: M): M {
    this.#metrics.push(metric);
    return metric;
  }

  render(): string {
    return this.#metrics.map((m) => m.render()).join("");
  }
}
