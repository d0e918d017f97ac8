/**
 * Inside the engine's Web Worker (see worker.ts): loads the model given by the first message, then runs every
 * request on a LocalEngine and posts its tokens back.
 */
/// <reference lib="deno.worker" />
import { vocabulary } from "../grammar/vocabulary.ts";
import { GrammarPool } from "../grammar/pool.ts";
import { GrammarWorker } from "../grammar/worker.ts";
import type { GpuContext } from "../gpu/context.ts";
import { loadModel, openModelFiles } from "../model/boot.ts";
import { log } from "../log.ts";
import type { EngineStats } from "./engine.ts";
import { LocalEngine, within } from "./local.ts";
import { type FromWorker, serializeError, type ToWorker } from "./worker.ts";

/**
 * Prompt tokens per prefill step on a CPU (fallback) adapter: one dispatch of a 512-token chunk can run for
 * seconds there, and shorter chunks read long prompts faster (measured: 3000 tokens 94 s instead of 120 s).
 */
const SOFTWARE_PREFILL_CHUNK = 64;
/** How often changed engine statistics are sent to the server's thread between a request's messages. */
const STATS_MS = 50;

const post = (message: FromWorker) => self.postMessage(message);
let engine: LocalEngine | undefined;
let grammar: GrammarPool | undefined;
const controllers = new Map<number, AbortController>();
let lastStats = "";
let statsTimer: ReturnType<typeof setInterval> | undefined;
let gpu: GpuContext | undefined;

function stats(): EngineStats {
  const stats = engine!.stats();
  lastStats = JSON.stringify(stats);
  return stats;
}

function sendStats(): void {
  if (JSON.stringify(engine!.stats()) !== lastStats) post({ type: "stats", stats: stats() });
}

async function start(message: Extract<ToWorker, { type: "start" }>): Promise<void> {
  try {
    const files = await openModelFiles(message.model);
    const { model, plan } = await loadModel(files, message.model);
    gpu = model.ctx;
    const prefillChunk = message.engine.prefillChunk ??
      (model.ctx.gpu.software ? SOFTWARE_PREFILL_CHUNK : undefined);
    // xgrammar gets the vocabulary now, on its own thread, so no request waits for it later.
    const vocab = vocabulary(files.tokenizer, model.config.decoder.vocabSize);
    const { grammarThreads, ...options } = message.engine;
    grammar = new GrammarPool(() => new GrammarWorker(vocab), { threads: grammarThreads });
    engine = new LocalEngine(model, { ...options, prefillChunk, constraints: grammar });
    engine.failed.then((error) => post({ type: "dead", reason: error.message }));
    statsTimer = setInterval(sendStats, STATS_MS);
    post({
      type: "ready",
      ready: {
        weights: { bytes: plan.weights.total, format: plan.weights.decoder.format },
        limits: engine.limits,
        prefillChunk: engine.prefillChunk,
        adapter: model.ctx.gpu.name,
        kvTokens: plan.kvCache.tokens,
        stats: stats(),
      },
    });
  } catch (err) {
    post({ type: "failed", error: serializeError(err) });
    // The thread ends itself once the load's last work is done (its GPU device let go, see loadModel): a host
    // that terminated it at once and exited crashed in Mesa now and then (1 in 5 runs, with lavapipe preloaded).
    self.close();
  }
}

async function generate(message: Extract<ToWorker, { type: "generate" }>): Promise<void> {
  const { id } = message;
  const controller = new AbortController();
  controllers.set(id, controller);
  try {
    const stream = engine!.generate(message.request, controller.signal);
    sendStats();
    while (true) {
      const next = await stream.next();
      if (next.done) {
        post({ type: "finish", id, reason: next.value, stats: stats() });
        break;
      }
      post({ type: "token", id, event: next.value, stats: stats() });
    }
  } catch (err) {
    post({ type: "error", id, error: serializeError(err), stats: stats() });
  } finally {
    controllers.delete(id);
  }
}

self.onmessage = (e: MessageEvent<ToWorker>) => {
  const message = e.data;
  switch (message.type) {
    case "start":
      return void start(message);
    case "generate":
      return void generate(message);
    case "cancel":
      return controllers.get(message.id)?.abort();
    case "close":
      return void engine!.close(message.graceMs).catch((err) =>
        log.error("closing the engine failed", { error: String(err) })
      ).finally(async () => {
        // Everything this thread holds is let go before the host terminates it, the grammar threads and the GPU
        // device, rather than by the thread's teardown, which may overlap the process's exit (suspected in rare
        // crashes at the test suite's exit, after every test had passed, and once a batch's exit, 139, after its
        // last line): the GPU's work done first, and the device's loss seen, each waited for a second at most.
        clearInterval(statsTimer);
        grammar?.close();
        if (gpu) {
          await within(gpu.device.queue.onSubmittedWorkDone().catch(() => {}), 1000);
          gpu.destroy();
          await within(gpu.device.lost, 1000);
        }
        post({ type: "closed" });
      });
  }
};
