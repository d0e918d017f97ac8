/**
 * Ollama's own API (`/api/chat`, `/api/generate`, `/api/tags`, `/api/show`, `/api/ps`, `/api/version`), which
 * Ollama's Python and JavaScript libraries and the many apps built on them speak (LangChain's ChatOllama, Open
 * WebUI, Home Assistant, Continue...). A request runs as the chat completion (or, with `raw`, the text
 * completion) it amounts to (functions/chat/ollama.ts); answers stream as JSON lines by default, as Ollama's do,
 * with Ollama's counts and timings. Errors take Ollama's shape, `{"error": "..."}` (functions/errors.ts).
 */
import { type Context, Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { log } from "../../runtime/log.ts";
import { pyJsonLoads, toJs } from "../../runtime/prompt/pyjson.ts";
import { type ChoiceResult, type CompletionRun, runCompletion } from "../chat/completion.ts";
import {
  chatOfGenerate,
  chatOfOllama,
  completionOfGenerate,
  OLLAMA_WORDS,
  ollamaParam,
  rawPromptIds,
} from "../chat/ollama.ts";
import { answerRoom, cutToFit } from "../chat/history.ts";
import { type DecodedImages, prepareChat, type PreparedChat } from "../chat/prepare.ts";
import { preparePrompt } from "../chat/raw_prompt.ts";
import { renamed } from "../chat/responses.ts";
import type { ToolCallOut } from "../chat/tools.ts";
import { RequestError } from "../schema/chat.ts";
import { parseCompletionRequest } from "../schema/completions.ts";
import {
  type OllamaChatRequest,
  ollamaChatSchema,
  ollamaGenerateSchema,
  ollamaShowSchema,
  parseOllama,
} from "../schema/ollama.ts";
import { parseWith } from "../schema/chat.ts";
import { loraNamed, type Service } from "../service.ts";
import { readJsonText, requireEngine, UnknownModelError } from "./common.ts";
import { patientJson } from "./patient.ts";
import { eventStream } from "./sse.ts";

/** The Ollama API version whose shapes this server answers in (clients check it before using newer fields). */
const OLLAMA_VERSION = "0.13.0";

/** A parameter count as Ollama writes it ("12.4B", "8.6M"); empty where not known. */
function parameterSize(parameters: number | undefined): string {
  if (!parameters) return "";
  for (const [unit, scale] of [["B", 1e9], ["M", 1e6], ["K", 1e3]] as const) {
    if (parameters >= scale) return `${(parameters / scale).toFixed(1)}${unit}`;
  }
  return String(parameters);
}

/**
 * Ollama names models `name:tag`, in any case; the served model is also `ID:latest`. Another name is refused in
 * Ollama's words (`model "x" not found`), which its clients look for.
 */
function requireOllamaModel(service: Service, name: string | null | undefined): void {
  if (name == null || loraNamed(service, name) !== undefined) return;
  const bare = name.replace(/:latest$/i, "");
  const known = [service.model.id, ...service.model.aliases].some((id) =>
    id.toLowerCase() === bare.toLowerCase()
  );
  if (!known) {
    throw new UnknownModelError(`model "${name}" not found; this server serves "${service.model.id}"`);
  }
}

/** A run whose first update and end are timed: Ollama's answers say how long the prompt and the answer took. */
function timed(run: CompletionRun, start: number) {
  const times = { start, first: NaN, end: NaN };
  const inner = run.updates;
  async function* updates() {
    try {
      while (true) {
        const next = await inner.next();
        const now = performance.now();
        if (next.done) {
          times.end = now;
          return next.value;
        }
        if (Number.isNaN(times.first)) times.first = now;
        yield next.value;
      }
    } finally {
      await inner.return([]);
    }
  }
  return { run: { updates: updates(), cancel: run.cancel }, times };
}

const ns = (ms: number) => Math.max(0, Math.round(ms * 1e6));

/** What ends an answer: why it ended, its counts, and its timings in nanoseconds. */
function ending(
  result: Pick<ChoiceResult, "finish" | "tokens">,
  prepared: PreparedChat,
  times: ReturnType<typeof timed>["times"],
) {
  const end = Number.isNaN(times.end) ? performance.now() : times.end;
  const first = Number.isNaN(times.first) ? end : times.first;
  return {
    done: true,
    done_reason: result.finish === "length" ? "length" : "stop",
    total_duration: ns(end - times.start),
    load_duration: 0,
    prompt_eval_count: prepared.request.ids.length,
    prompt_eval_duration: ns(first - times.start),
    eval_count: result.tokens,
    eval_duration: ns(end - first),
  };
}

/** A call as Ollama reports it: its arguments an object. */
function ollamaCall(call: ToolCallOut, index: number) {
  const args = toJs(pyJsonLoads(call.function.arguments) ?? new Map());
  return { id: call.id, function: { index, name: call.function.name, arguments: args } };
}

/** A request with nothing to answer loads (or, with `keep_alive` 0, unloads) the model, as Ollama's do. */
function loadAnswer(model: string, keepAlive: unknown, answer: Record<string, unknown>) {
  // 0, "0", or a duration of nothing, as Go writes durations ("0s", "0m0s", "0.0h").
  const unload = keepAlive === 0 ||
    (typeof keepAlive === "string" && /^\s*(0+(\.0*)?|(0+(\.0*)?(ns|us|µs|ms|s|m|h))+)\s*$/.test(keepAlive));
  return {
    model,
    created_at: new Date().toISOString(),
    ...answer,
    done: true,
    done_reason: unload ? "unload" : "load",
  };
}

async function prepared(
  make: () => Promise<PreparedChat>,
  param: (chatParam: string) => string = ollamaParam,
): Promise<PreparedChat> {
  try {
    return await make();
  } catch (err) {
    throw renamed(err, param, OLLAMA_WORDS);
  }
}

function answer(
  c: Context,
  service: Service,
  model: string,
  chat: PreparedChat,
  /** When the request came: the prompt's time counts from there (images decoded, prompt encoded). */
  started: number,
  stream: boolean,
  shape: {
    /** A text delta (with its tokens' log-probabilities) as the answer's fields. */
    text(text: string, logprobs?: unknown[]): Record<string, unknown>;
    /** Calls: only on /api/chat. */
    calls?(calls: ReturnType<typeof ollamaCall>[]): Record<string, unknown>;
    whole(result: ChoiceResult): Record<string, unknown>;
  },
): Promise<Response> {
  const { run, times } = timed(runCompletion(service, [chat], c.req.raw.signal, c.get("requestId")), started);
  const id = crypto.randomUUID();
  const head = () => ({ model, created_at: new Date().toISOString() });
  if (!stream) {
    return patientJson(run, {
      id,
      request: c.req.raw,
      answer: ([result]) => ({ ...head(), ...shape.whole(result), ...ending(result, chat, times) }),
      failure: (message) => ({ error: message }),
    });
  }
  return eventStream(run, {
    id,
    request: c.req.raw,
    lines: { failed: (message) => [{ error: message }] },
    events(u) {
      const lines: unknown[] = [];
      if ("text" in u) {
        if (u.text || u.logprobs?.length) {
          lines.push({ ...head(), ...shape.text(u.text, u.logprobs), done: false });
        }
      } else if (!("toolCall" in u)) {
        // Calls come whole when the answer ends, as Ollama's streams send them; what was no list of calls (cut
        // short) comes as text, as in the answer whole.
        if (u.toolCalls && shape.calls) {
          const calls = u.toolCalls.map((call, i) => ollamaCall(call, i));
          lines.push({ ...head(), ...shape.calls(calls), done: false });
        }
        if (u.callText) lines.push({ ...head(), ...shape.text(u.callText), done: false });
        lines.push({ ...head(), ...shape.text(""), ...ending(u, chat, times) });
      }
      return lines;
    },
    end: () => [],
  });
}

/** Weight formats as ggml names them (q4k+q6k: Q4_K+Q6_K, q8: Q8_0); q4, this server's own, is Q4. */
export function quantizationLevel(format: string): string {
  return format.replace(/\bq(\d)k\b/g, "Q$1_K").replace(/\bq8\b/g, "Q8_0").toUpperCase();
}

export function ollamaRoutes(service: Service): Hono {
  const app = new Hono();
  const details = (lora?: string) => ({
    parent_model: lora === undefined ? "" : `${service.model.id}:latest`,
    format: service.model.format ?? "",
    family: "pixtral",
    families: ["pixtral"],
    parameter_size: parameterSize(service.model.parameters),
    // As Ollama names them: a GGUF's own (Q4_K_M), else the formats the decoder's weights take on the GPU.
    quantization_level: service.model.quantization ?? quantizationLevel(service.model.loaded?.format ?? ""),
  });
  const listed = async (lora?: string) => ({
    name: `${lora ?? service.model.id}:latest`,
    model: `${lora ?? service.model.id}:latest`,
    modified_at: new Date(service.model.created * 1000).toISOString(),
    size: service.model.loaded?.bytes ?? 0,
    digest: [
      ...new Uint8Array(
        await crypto.subtle.digest("SHA-256", new TextEncoder().encode(lora ?? service.model.id)),
      ),
    ].map((b) => b.toString(16).padStart(2, "0")).join(""),
    details: details(lora),
  });

  app.get("/api/version", (c) => c.json({ version: OLLAMA_VERSION }));
  app.get("/api/tags", async (c) =>
    c.json({
      models: [await listed(), ...await Promise.all((service.model.loras ?? []).map((l) => listed(l)))],
    }));
  app.get("/api/ps", async (c) => {
    const models = service.engine
      ? [{
        ...await listed(),
        expires_at: "2318-01-01T00:00:00Z",
        // All of it is on the GPU (Ollama's clients show the share as "100% GPU").
        size_vram: service.model.loaded?.bytes ?? 0,
        context_length: service.engine.contextLength,
      }]
      : [];
    return c.json({ models });
  });
  app.post("/api/show", async (c) => {
    const { body } = await readJsonText(c);
    const request = parseWith(ollamaShowSchema, body);
    const name = request.model ?? request.name;
    if (!name) throw new RequestError("model: give the model's name", "model");
    requireOllamaModel(service, name);
    const capabilities = ["completion", ...service.images.enabled ? ["vision"] : [], "tools"];
    return c.json({
      license: "",
      modelfile: `FROM ${service.model.id}\n`,
      parameters: "",
      template: "",
      details: details(),
      model_info: {
        "general.architecture": "pixtral",
        ...service.model.parameters ? { "general.parameter_count": service.model.parameters } : {},
        ...service.engine ? { "pixtral.context_length": service.engine.contextLength } : {},
      },
      capabilities,
      modified_at: new Date(service.model.created * 1000).toISOString(),
    });
  });

  app.post("/api/chat", async (c) => {
    const started = performance.now();
    const { body, text } = await readJsonText(c);
    const { request, options, ignored } = parseOllama(ollamaChatSchema, body);
    if (ignored.length) log.info("ignoring unknown request fields", { fields: ignored, path: c.req.path });
    requireOllamaModel(service, request.model);
    const messages: OllamaChatRequest["messages"] = request.messages ?? [];
    if (messages.length === 0) {
      requireEngine(service);
      return c.json(
        loadAnswer(request.model, request.keep_alive, { message: { role: "assistant", content: "" } }),
      );
    }
    requireEngine(service);
    const decoded: DecodedImages = new Map();
    const prepare = (from: number) => {
      const { chat, source, param } = chatOfOllama(request, options, text, from);
      return prepared(async () => {
        const ready = await prepareChat(chat, service, c.req.raw.signal, source, { decoded });
        // An image a GPU host behind a gateway cannot decode is named as this request names it.
        ready.imageParams = ready.imageParams?.map(param);
        return ready;
      }, param);
    };
    const predict = options.num_predict != null && options.num_predict > 0 ? options.num_predict : undefined;
    const chat = request.truncate === false
      ? await prepare(0)
      : await cutToFit(messages, answerRoom(service, predict), service, prepare);
    const message = (content: string, extra: Record<string, unknown> = {}) => ({
      message: { role: "assistant", content, ...extra },
    });
    return answer(c, service, request.model, chat, started, request.stream ?? true, {
      text: (content, logprobs) => ({ ...message(content), ...logprobs?.length ? { logprobs } : {} }),
      calls: (calls) => message("", { tool_calls: calls }),
      whole: (result) => ({
        ...message(
          result.text,
          result.toolCalls
            ? {
              tool_calls: result.toolCalls.map((call, i) => ollamaCall(call, i)),
            }
            : {},
        ),
        ...result.logprobs ? { logprobs: result.logprobs } : {},
      }),
    });
  });

  app.post("/api/generate", async (c) => {
    const started = performance.now();
    const { body } = await readJsonText(c);
    const { request, options, ignored } = parseOllama(ollamaGenerateSchema, body);
    if (ignored.length) log.info("ignoring unknown request fields", { fields: ignored, path: c.req.path });
    requireOllamaModel(service, request.model);
    if (request.suffix) {
      throw new RequestError("suffix: Pixtral has no fill-in-the-middle format", "suffix");
    }
    if (request.template) {
      throw new RequestError(
        "template: Ollama's Go templates are not run here: send raw: true with the prompt as the model should read it, " +
          "or leave template out for Pixtral's own format",
        "template",
      );
    }
    if (request.context?.length) {
      throw new RequestError(
        "context: token contexts from earlier answers are not taken: send the conversation to /api/chat as messages",
        "context",
      );
    }
    if (!request.prompt && !request.images?.length) {
      requireEngine(service);
      return c.json(loadAnswer(request.model, request.keep_alive, { response: "" }));
    }
    requireEngine(service);
    if (!request.raw) {
      const { chat: asked, param } = chatOfGenerate(request, options);
      const chat = await prepared(
        () => prepareChat(asked, service, c.req.raw.signal),
        param,
      );
      return generated(chat);
    }
    if (request.images?.length) {
      throw new RequestError(
        "images: a raw prompt has no place for images: leave raw out, or send them to /api/chat",
        "images",
      );
    }
    if (request.system) {
      throw new RequestError("system: a raw prompt has no system prompt: write it into the prompt", "system");
    }
    const chat = await prepared(() => {
      const ids = rawPromptIds(service.tokenizer, request.prompt ?? "", service.engine!.contextLength);
      const completion = parseCompletionRequest(completionOfGenerate(request, options, ids)).request;
      return Promise.resolve(preparePrompt(completion, ids, "prompt", service, Infinity));
    });
    return generated(chat);

    function generated(chat: PreparedChat) {
      return answer(c, service, request.model, chat, started, request.stream ?? true, {
        text: (response, logprobs) => ({ response, ...logprobs?.length ? { logprobs } : {} }),
        whole: (result) => ({
          response: result.text,
          ...result.logprobs ? { logprobs: result.logprobs } : {},
        }),
      });
    }
  });

  // What an Ollama server also does, which this one does not: a clear answer rather than a 404.
  const models =
    "this server serves one model, given at start-up with --model; it does not pull, push, create, " +
    "copy or delete models";
  for (
    const path of ["/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete", "/api/blobs/:digest"]
  ) {
    app.on(["POST", "DELETE"], path, (c) => c.json({ error: models }, 501 as ContentfulStatusCode));
  }
  for (const path of ["/api/embed", "/api/embeddings"]) {
    app.post(path, (c) => c.json({ error: "Pixtral is a generative model: it makes no embeddings" }, 501));
  }
  return app;
}
