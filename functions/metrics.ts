/** The server's Prometheus metrics: requests, tokens, latencies, and the engine's queue and KV cache. */
import type { Engine, EngineStats } from "../runtime/engine/engine.ts";
import { Counter, Gauge, Histogram, Registry } from "../runtime/metrics.ts";

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const DURATION_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600];

export interface ServerMetrics {
  registry: Registry;
  requests: Counter;
  promptTokens: Counter;
  generationTokens: Counter;
  timeToFirstToken: Histogram;
  interTokenLatency: Histogram;
  generationDuration: Histogram;
  /** Choices ended, by how: stop, length, tool_calls, cancelled (the client left), error. */
  choicesFinished: Counter;
  /** Requests (choices) run with a LoRA adapter served per request, by adapter. */
  loraRequests: Counter;
}

export function createMetrics(engine: () => Engine | undefined): ServerMetrics {
  const registry = new Registry();
  const stat = (key: keyof EngineStats) => () => engine()?.stats()[key] ?? 0;
  const metrics = {
    registry,
    requests: registry.register(new Counter("pixtral_requests_total", "HTTP requests by route and status")),
    promptTokens: registry.register(new Counter("pixtral_prompt_tokens_total", "Prompt tokens processed")),
    generationTokens: registry.register(new Counter("pixtral_generation_tokens_total", "Tokens generated")),
    timeToFirstToken: registry.register(
      new Histogram("pixtral_time_to_first_token_seconds", "Request start to first token", LATENCY_BUCKETS),
    ),
    interTokenLatency: registry.register(
      new Histogram(
        "pixtral_inter_token_latency_seconds",
        "Time between a sequence's tokens",
        LATENCY_BUCKETS,
      ),
    ),
    generationDuration: registry.register(
      new Histogram(
        "pixtral_generation_duration_seconds",
        "Request start to the end of its generation (every choice)",
        DURATION_BUCKETS,
      ),
    ),
    choicesFinished: registry.register(
      new Counter(
        "pixtral_choices_finished_total",
        "Choices ended, by finish: stop, length, tool_calls, cancelled, rejected (queue full), error",
      ),
    ),
    loraRequests: registry.register(
      new Counter(
        "pixtral_lora_requests_total",
        "Choices run with a LoRA adapter served per request, by adapter",
      ),
    ),
  };
  registry.register(new Gauge("pixtral_queue_depth", "Requests waiting to start", stat("waiting")));
  registry.register(new Gauge("pixtral_running_sequences", "Sequences being generated", stat("running")));
  registry.register(
    new Gauge("pixtral_kv_cache_usage_ratio", "Fraction of the KV cache in use", stat("kvUsage")),
  );
  registry.register(new Gauge("pixtral_kv_cache_blocks", "KV cache blocks in the pool", stat("kvBlocks")));
  registry.register(
    new Gauge("pixtral_kv_cache_blocks_used", "KV cache blocks held by sequences", stat("kvBlocksUsed")),
  );
  registry.register(
    new Gauge(
      "pixtral_prefix_cache_hit_tokens_total",
      "Prompt tokens taken from the prefix cache instead of computed",
      stat("prefixHitTokens"),
      "counter",
    ),
  );
  registry.register(
    new Gauge(
      "pixtral_preemptions_total",
      "Sequences preempted when the KV cache was full (computed again later)",
      stat("preemptions"),
      "counter",
    ),
  );
  // The process's own memory, under the names Prometheus' client libraries give it; an edge isolate has no process.
  const memory = globalThis.Deno?.memoryUsage;
  if (memory) {
    registry.register(
      new Gauge("process_resident_memory_bytes", "Resident memory of the server process", () => memory().rss),
    );
    registry.register(
      new Gauge(
        "process_heap_bytes",
        "JavaScript heap in use on the server's thread (V8's used heap; the engine's thread not counted)",
        () => memory().heapUsed,
      ),
    );
  }
  return metrics;
}
