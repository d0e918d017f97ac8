/**
 * Progress of a long operation (download, load, quantization): a redrawn bar when stderr is a terminal, JSON
 * lines at a steady interval otherwise (the same shape as runtime/log.ts, so log collectors read both).
 */
import { logs } from "./log.ts";

export interface ProgressSink {
  write(text: string): void;
  /** A terminal gets a bar redrawn in place; anything else gets periodic JSON lines. */
  isTerminal: boolean;
}

export interface ProgressOptions {
  /** What is progressing, e.g. "download mistralai/Pixtral-12B-2409". */
  label: string;
  /** Units of work in all; 0 when unknown. */
  total?: number;
  unit?: "bytes" | "items";
  sink?: ProgressSink;
  /** Milliseconds between JSON lines (default 5000); the bar redraws at most every 100 ms. */
  intervalMs?: number;
  now?: () => number;
}

const encoder = new TextEncoder();

export function stderrSink(): ProgressSink {
  return {
    write: (text) => {
      Deno.stderr.writeSync(encoder.encode(text));
    },
    isTerminal: Deno.stderr.isTerminal(),
  };
}

export class Progress {
  readonly label: string;
  #total: number;
  #done = 0;
  #unit: "bytes" | "items";
  #sink: ProgressSink;
  #interval: number;
  #now: () => number;
  #start: number;
  #lastEmit = -Infinity;
  #closed = false;

  constructor(options: ProgressOptions) {
    this.label = options.label;
    this.#total = options.total ?? 0;
    this.#unit = options.unit ?? "bytes";
    this.#sink = options.sink ?? stderrSink();
    this.#now = options.now ?? (() => performance.now());
    this.#interval = this.#sink.isTerminal ? 100 : options.intervalMs ?? 5000;
    this.#start = this.#now();
    this.#emit(true);
  }

  get done(): number {
    return this.#done;
  }

  get total(): number {
    return this.#total;
  }

  /** Work completed since the last call. */
  add(n: number): void {
    this.#done += n;
    this.#emit(false);
  }

  /** Work completed so far (e.g. a resumed download's existing bytes). */
  set(done: number): void {
    this.#done = done;
    this.#emit(false);
  }

  setTotal(total: number): void {
    this.#total = total;
  }

  /** Ends the bar (newline) or writes the final JSON line ("done", with `message` as its detail). */
  finish(message?: string): void {
    if (this.#closed) return;
    this.#lastEmit = -Infinity;
    this.#emit(true, message ?? "done");
    this.#closed = true;
    if (this.#sink.isTerminal) this.#sink.write("\n");
  }

  /** Ends with an error: the bar keeps its last state and the JSON line says what failed. */
  fail(err: unknown): void {
    if (this.#closed) return;
    this.#closed = true;
    const error = err instanceof Error ? err.message : String(err);
    if (this.#sink.isTerminal) this.#sink.write("\n");
    else this.#sink.write(this.#json("failed", { error }));
  }

  #emit(force: boolean, message?: string): void {
    if (this.#closed) return;
    const now = this.#now();
    if (!force && now - this.#lastEmit < this.#interval) return;
    this.#lastEmit = now;
    // JSON lines are log lines: PIXTRAL_LOG_LEVEL=warn silences them (a terminal's bar is for the eye).
    if (!this.#sink.isTerminal && !logs("info")) return;
    const json = message === undefined
      ? this.#json("progress")
      : this.#json("done", message === "done" ? {} : { detail: message });
    this.#sink.write(this.#sink.isTerminal ? this.#bar(now, message) : json);
  }

  #rate(now: number): number {
    const seconds = (now - this.#start) / 1000;
    return seconds > 0 ? this.#done / seconds : 0;
  }

  #json(msg: string, extra: Record<string, unknown> = {}): string {
    const now = this.#now();
    const rate = this.#rate(now);
    const fields: Record<string, unknown> = {
      time: new Date().toISOString(),
      level: msg === "failed" ? "error" : "info",
      msg,
      task: this.label,
      done: this.#done,
      total: this.#total || null,
      unit: this.#unit,
    };
    if (this.#total) fields.percent = Math.round((1000 * this.#done) / this.#total) / 10;
    fields.rate = Math.round(rate);
    if (this.#total && rate > 0 && msg === "progress") {
      fields.eta_s = Math.round((this.#total - this.#done) / rate);
    }
    return JSON.stringify({ ...fields, ...extra }) + "\n";
  }

  #bar(now: number, message?: string): string {
    const width = 30;
    const fraction = this.#total ? Math.min(1, this.#done / this.#total) : 0;
    const filled = Math.round(fraction * width);
    const bar = this.#total
      ? `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}%`
      : "";
    const amount = this.#total
      ? `${this.#format(this.#done)}/${this.#format(this.#total)}`
      : this.#format(this.#done);
    const rate = this.#rate(now);
    const speed = rate > 0 ? `${this.#format(rate)}/s` : "";
    const eta = message === undefined && this.#total && rate > 0
      ? `ETA ${duration((this.#total - this.#done) / rate)}`
      : message ?? "";
    return `\r\x1b[2K${[this.label, bar, amount, speed, eta].filter(Boolean).join("  ")}`;
  }

  #format(n: number): string {
    if (this.#unit === "items") return String(Math.round(n));
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
  }
}

function duration(seconds: number): string {
  const s = Math.round(seconds);
  return s >= 3600
    ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
    : s >= 60
    ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
    : `${s}s`;
}
