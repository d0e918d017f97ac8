/**
 * The engine of an edge gateway: requests prepared at the edge (ids and image files) run on a pool of GPU hosts, each
 * a `pixtral serve --internal-secret` whose internal routes speak wire.ts.
 *
 * Routing: every host reports its queue, running sequences and KV cache use (GET /internal/v1/status). A
 * request goes to the healthy host with the least work: waiting + running as last reported, plus the requests
 * this gateway sent it since. Requests that begin the same way (their first AFFINITY_TOKENS tokens, and the image
 * among them) go to the same host while it has at most AFFINITY_SLACK more work than the least loaded one: its
 * prefix cache holds what they share (an earlier turn of the conversation, the same image). Rendezvous hashing
 * names that host, so every gateway isolate agrees without shared state and a host that leaves moves only its
 * own prefixes. Statuses are refreshed on demand when older than `statusTtlMs` (edge isolates
 * have no background timers between requests), without delaying a request while some host is known healthy.
 *
 * Failures: a host that fails before the request's first token (refused connection, error status, queue full,
 * a stream cut off) is left out and the request goes to the next host; no token has reached the client, so
 * nothing is lost or duplicated. A host that fails after tokens were relayed ends the stream with an error
 * (EngineUnavailableError), never with a silent, truncated finish. With no host able to take a request the
 * error is EngineUnavailableError (HTTP 503), or EngineBusyError (429) when every host said its queue is full.
 *
 * Cancellation: stopping the token generator, or aborting its signal, closes the connection to the host,
 * which cancels the sequence there and frees its KV cache.
 */
import { log } from "../log.ts";
import { stalling } from "../stalling.ts";
import { ImageDecodeError, ImageTooLargeError } from "../images/errors.ts";
import { Counter } from "../metrics.ts";
import {
  type EncodedImage,
  type Engine,
  EngineBusyError,
  EngineClosedError,
  type EngineStats,
  EngineUnavailableError,
  type FinishReason,
  type GenerateRequest,
  InvalidRequestError,
  mix32,
  RequestTooLongError,
  type TokenEvent,
} from "./engine.ts";
import {
  BINARY,
  decodeFrame,
  decodeStatus,
  type ErrorKind,
  type HostStatus,
  readFrames,
  requestParts,
  STALL_MS,
  WIRE_MAGIC,
} from "./wire.ts";

/** Tokens of a request's beginning that choose its preferred host. */
export const AFFINITY_TOKENS = 64;
/** How much more work (waiting + running) than the least loaded host the preferred one may have. */
export const AFFINITY_SLACK = 4;

/**
 * A 32-bit digest of the request's first AFFINITY_TOKENS tokens and of the first image when its [IMG] tokens
 * start among them (a sample of its file's bytes: enough to tell images apart for routing).
 */
export function routingKey(request: GenerateRequest<EncodedImage>, imageToken: number): number {
  let h = 0x811c9dc5;
  const head = request.ids.slice(0, AFFINITY_TOKENS);
  for (const id of head) h = mix32((h ^ id) + 0x9e3779b9 >>> 0);
  const image = request.images[0];
  if (image && head.includes(imageToken)) {
    const { bytes } = image;
    const stride = Math.max(1, Math.floor(bytes.length / 4096));
    h = mix32(h ^ image.rows ^ (image.cols << 16) ^ bytes.length);
    for (let i = 0; i < bytes.length; i += stride) h = mix32((h ^ bytes[i]) + 0x9e3779b9 >>> 0);
  }
  return h;
}

export interface RemoteEngineOptions {
  /** Base URLs of the GPU hosts, e.g. `http://10.0.0.5:8080`. */
  hosts: readonly string[];
  /** The hosts' shared secret (`pixtral serve --internal-secret`). */
  secret: string;
  /** Age after which a host's status is asked again (default 2000 ms). */
  statusTtlMs?: number;
  /** Time a host has to answer a status request (default 2000 ms). */
  statusTimeoutMs?: number;
  /** Time a host has to start answering a generation, or to send its tokenizer (default 10 s). */
  timeoutMs?: number;
  /** Time without a byte after which a host's response is taken for dead (default STALL_MS). */
  stallMs?: number;
}

interface Host {
  readonly url: string;
  /** The last status it reported. */
  status?: HostStatus;
  /** Why requests do not go to it now; undefined: healthy. */
  down?: string;
  /** When its status was last asked for (ms since the epoch). */
  checked: number;
  /** Requests this gateway sent it since its last status. */
  sent: number;
  /** Whether its last status said it serves another model or tokenizer than the gateway's. */
  mismatched?: boolean;
  /** Whether it refused the gateway's internal secret (a 401) when last asked. */
  refused?: boolean;
  /** Whether its last status had other settings than the gateway's, of those only the gateway applies. */
  otherPolicy?: boolean;
  /**
   * When a status last said it serves the gateway's model. A host that stops answering still counts as serving
   * it for SUPERSEDE_AFTER_MS of checks after that (paused, restarting), so that the gateway is not rebuilt for
   * the other model then; counted from its last check, not from now: a gateway without requests checks nothing.
   */
  servedAt?: number;
  /** The status request in flight, if any. */
  checking?: Promise<void>;
  /** A digest of its URL, for rendezvous hashing. */
  readonly seed: number;
  /** Its counters, kept from going back when it restarts (see Counted). */
  readonly counted: Counted;
}

type CounterName = "prefixHitTokens" | "preemptions";

/**
 * A host's counters as the gateway sums them. A host that restarts counts from 0 again: what it had counted is
 * kept, so that the gateway's sums never go back (Prometheus reads a drop as a reset of the whole sum).
 */
class Counted {
  readonly #before = { prefixHitTokens: 0, preemptions: 0 };
  readonly #last = { prefixHitTokens: 0, preemptions: 0 };
  /** When the host's model was loaded: another value is a restart, even one whose counts passed the old ones. */
  #started?: number;

  update(stats: EngineStats, started: number): void {
    const restarted = this.#started !== undefined && started !== this.#started;
    this.#started = started;
    for (const name of ["prefixHitTokens", "preemptions"] as const) {
      const now = stats[name] ?? 0;
      if (restarted || now < this.#last[name]) this.#before[name] += this.#last[name];
      this.#last[name] = now;
    }
  }

  get(name: CounterName): number {
    return this.#before[name] + this.#last[name];
  }
}

/** A host's refusal or failure of one request. */
/** Every host refused the gateway's internal secret: a misconfiguration, which no retry mends. */
export class SecretRefusedError extends Error {
  override name = "SecretRefusedError";
}

class HostFailure extends Error {
  constructor(
    readonly host: Host,
    readonly kind: ErrorKind,
    message: string,
    readonly retryAfter?: number,
    /** The request's image at fault, and the HTTP status the host gave (413: too many pixels). */
    readonly image?: { index: number; status: number },
  ) {
    super(message);
  }
}

/** A host's 401: the gateway's internal secret is not its own. */
class SecretRefusal extends HostFailure {}

function describe(err: unknown): string {
  if (err instanceof Error) {
    return err.cause instanceof Error ? `${err.message}: ${err.cause.message}` : err.message;
  }
  return String(err);
}

/**
 * A host's failure as clients may read it: without the addresses of the GPU hosts, which stay in the logs (hosts
 * are named by their place in the list, "GPU host 2 of 3"). `names`: the hosts' URLs, hosts and hostnames.
 */
function publicReason(message: string, names: readonly string[]): string {
  let text = message;
  for (const name of names) text = text.replaceAll(name, "[address]");
  return text
    .replace(/\(?\bhttps?:\/\/[^\s)]*\)?/g, "")
    .replace(/\[[0-9a-f:.]*:[0-9a-f:.]*\](:\d+)?/gi, "[address]")
    .replace(/\b[0-9a-f]{0,4}(:[0-9a-f]{0,4}){2,7}\b/gi, "[address]")
    .replace(/\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b/g, "[address]")
    .replace(/\s+:/g, ":").replace(/\s{2,}/g, " ").trim();
}

/** How long a host that served the gateway's model and stopped answering keeps the gateway from being rebuilt. */
const SUPERSEDE_AFTER_MS = 10_000;

/**
 * A host that could not be reached: the network's words (addresses, names on certificates) go to the log, the
 * rest of the gateway sees "unreachable".
 */
function unreachable(host: Host, err: unknown): Error {
  log.warn("GPU host unreachable", { host: host.url, error: describe(err) });
  return new Error("unreachable (connection or TLS failure; see the gateway's log)");
}

/** The longest Retry-After passed on from a host, in seconds. */
const MAX_RETRY_AFTER = 300;

/** The error frame of a failed response, or one made from its status line. */
async function failureOf(host: Host, res: Response): Promise<HostFailure> {
  const text = await res.text().catch(() => "");
  if (res.status === 401) {
    return new SecretRefusal(host, "unavailable", "it refused the gateway's internal secret");
  }
  try {
    const frame = decodeFrame(text.trim());
    if ("error" in frame) {
      const image = frame.image === undefined ? undefined : { index: frame.image, status: res.status };
      return new HostFailure(host, frame.kind, frame.error, frame.retryAfter, image);
    }
  } catch { /* not one of ours: a proxy's page, say */ }
  const kind: ErrorKind = res.status === 429 ? "busy" : "unavailable";
  log.warn("GPU host answered with an error that is not a wire frame", {
    host: host.url,
    status: res.status,
    body: text.slice(0, 200),
  });
  return new HostFailure(host, kind, `HTTP ${res.status}`);
}

/** The first place where two settings objects differ, as `path theirs, the gateway's ours`; undefined if none. */
function difference(a: unknown, b: unknown, path = ""): string | undefined {
  if (typeof a === "object" && a !== null && typeof b === "object" && b !== null) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const found = difference(
        (a as Record<string, unknown>)[k],
        (b as Record<string, unknown>)[k],
        `${path}.${k}`,
      );
      if (found) return found;
    }
    return undefined;
  }
  return a === b ? undefined : `${path.slice(1)} ${JSON.stringify(a)}, the gateway's ${JSON.stringify(b)}`;
}

/**
 * Where a host computes or checks requests otherwise than the gateway prepares them (image layout and token ids,
 * vocabulary, fewer images taken): it cannot serve them. Undefined when it can.
 */
function layoutDiffers(status: HostStatus, ref: HostStatus): string | undefined {
  const layout = (
    { images: { enabled, resize, orientation, maxImageSize, patchSize, tokens }, vocabSize }: HostStatus,
  ) => ({ images: { enabled, resize, orientation, maxImageSize, patchSize, tokens }, vocabSize });
  const found = difference(layout(status), layout(ref));
  if (found || status.images.maxImages >= ref.images.maxImages) return found;
  return `images.maxImages ${status.images.maxImages}, the gateway's ${ref.images.maxImages}`;
}

/**
 * Whether a host's settings that only the gateway applies (image fetching and limits, sampling defaults) differ
 * from the gateway's: it serves, and once every serving host has others the gateway is built again with them.
 */
function policyDiffers(status: HostStatus, ref: HostStatus): boolean {
  return difference({ images: status.images, defaults: status.defaults }, {
    images: ref.images,
    defaults: ref.defaults,
  }) !==
    undefined;
}

export class RemoteEngine implements Engine {
  readonly #hosts: Host[];
  readonly #auth: string;
  readonly #ttl: number;
  readonly #statusTimeout: number;
  readonly #timeout: number;
  readonly #stall: number;
  /** The hosts' URLs, hosts and hostnames, longest first: kept out of what clients read. */
  readonly #names: string[];
  /** The first status seen fixes the model, tokenizer and wire format that every host must share. */
  #reference?: HostStatus;
  #turn = 0;
  #closed = false;
  readonly #inflight = new Set<AbortController>();
  /** Requests moved to another host because theirs failed before the first token. */
  readonly retries = new Counter("pixtral_gateway_retries_total", "Requests retried on another GPU host");

  constructor(options: RemoteEngineOptions) {
    if (options.hosts.length === 0) throw new Error("the gateway needs at least one GPU host URL");
    this.#hosts = options.hosts.map((url, i) => {
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        throw new Error(`entry ${i + 1} is not a GPU host URL (http://host:port)`);
      }
      if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
        throw new Error(`entry ${i + 1} is not an http(s) URL`);
      }
      const href = parsed.href.replace(/\/+$/, "");
      let seed = 0;
      for (const byte of new TextEncoder().encode(href)) seed = mix32((seed ^ byte) + 0x9e3779b9 >>> 0);
      return { url: href, checked: 0, sent: 0, seed, counted: new Counted() };
    });
    this.#names = this.#hosts.flatMap(({ url }) => {
      const { host, hostname } = new URL(url);
      return [url, host, hostname];
    }).sort((x, y) => y.length - x.length);
    this.#auth = `Bearer ${options.secret}`;
    this.#ttl = options.statusTtlMs ?? 2000;
    this.#statusTimeout = options.statusTimeoutMs ?? 2000;
    this.#timeout = options.timeoutMs ?? 10_000;
    this.#stall = options.stallMs ?? STALL_MS;
  }

  /** Asks every host for its status; resolves with the model's facts once one is ready, else throws. */
  async start(): Promise<HostStatus> {
    await this.#refresh();
    // The model most ready hosts serve (the first listed among equals), whichever answered first.
    const answered = this.#hosts.flatMap((h) =>
      h.status?.ready && h.status.wire === WIRE_MAGIC ? [h.status] : []
    );
    const same = (a: HostStatus, b: HostStatus) =>
      a.model.id === b.model.id && a.tokenizer === b.tokenizer && layoutDiffers(a, b) === undefined &&
      !policyDiffers(a, b);
    this.#reference = answered.reduce<HostStatus | undefined>(
      (best, s) =>
        best && answered.filter((r) => same(r, best)).length >= answered.filter((r) => same(r, s)).length
          ? best
          : s,
      undefined,
    );
    for (const host of this.#hosts) if (host.status) this.#judge(host, host.status);
    const ready = this.#hosts.find((h) => !h.down);
    if (!ready && this.#hosts.every((h) => h.refused)) {
      throw new SecretRefusedError(
        "every GPU host refused the gateway's internal secret: PIXTRAL_INTERNAL_SECRET must equal the hosts' " +
          "--internal-secret",
      );
    }
    if (!ready) throw new EngineUnavailableError(`no GPU host is ready: ${this.#reasons()}`);
    return ready.status!;
  }

  /** The tokenizer's binary form (Tokenizer.fromCache), from a healthy host, checked against its hash. */
  async tokenizer(): Promise<Uint8Array> {
    const failures: string[] = [];
    for (const host of this.#hosts.filter((h) => !h.down)) {
      try {
        const res = await this.#get(host, "/internal/v1/tokenizer");
        const bytes = new Uint8Array(await res.arrayBuffer());
        const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
        const hex = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
        if (hex !== this.#reference?.tokenizer) {
          throw new Error("the tokenizer's hash differs from its status");
        }
        return bytes;
      } catch (err) {
        log.warn("GPU host did not serve its tokenizer", { host: host.url, error: describe(err) });
        failures.push(`${this.#name(host)}: ${this.#public(describe(err))}`);
      }
    }
    throw new EngineUnavailableError(`no GPU host served its tokenizer: ${failures.join("; ")}`);
  }

  /**
   * Tokens a request may hold: the smallest context among the hosts serving, so that a request the gateway takes
   * fits every host (and one without max_tokens, given the rest of the context, is not sent to one host only).
   * Reading it asks for stale statuses in the background: a host that went away stops counting soon after.
   */
  get contextLength(): number {
    void this.#refresh();
    const lengths = this.#hosts.filter((h) => !h.down).map((h) => h.status!.contextLength!);
    const known = this.#hosts.flatMap((h) => h.status?.contextLength ?? []);
    return lengths.length ? Math.min(...lengths) : known.length ? Math.min(...known) : 0;
  }

  /**
   * Asks the hosts whose status is stale (an edge isolate has no timers between requests: /health and /metrics
   * call this) and says why no request can run now, if none can.
   */
  async refresh(): Promise<string | undefined> {
    // As for a request: the answers are awaited only when no host is known healthy, so that a host that does not
    // answer delays no health check while another serves.
    const refreshed = this.#refresh();
    if (!this.#hosts.some((h) => !h.down)) await refreshed;
    return this.#hosts.some((h) => !h.down) ? undefined : `no GPU host can serve: ${this.#reasons()}`;
  }

  /**
   * Whether every host that answers serves another model (or tokenizer) than the one this gateway started with:
   * after an upgrade of all hosts, the gateway has to be built again (functions/edge.ts does).
   */
  get superseded(): boolean {
    const serving = this.#hosts.filter((h) => !h.down);
    // Every serving host has settings of its own (restarted with other limits or defaults): built again with them.
    if (serving.length && serving.every((h) => h.otherPolicy)) return true;
    return this.#hosts.some((h) => h.mismatched) &&
      !this.#hosts.some((h) => h.servedAt !== undefined && h.checked - h.servedAt < SUPERSEDE_AFTER_MS);
  }

  get vocabSize(): number {
    return this.#reference?.vocabSize ?? 0;
  }

  /** Healthy hosts' load, summed. */
  stats(): EngineStats {
    const total = {
      waiting: 0,
      running: 0,
      kvUsage: 0,
      kvBlocks: 0,
      kvBlocksUsed: 0,
      prefixHitTokens: 0,
      preemptions: 0,
    };
    for (const host of this.#hosts) {
      // Counters keep a host's count when it goes down or restarts, so that their sums never go back.
      total.prefixHitTokens += host.counted.get("prefixHitTokens");
      total.preemptions += host.counted.get("preemptions");
      const stats = host.status?.stats;
      if (!stats || host.down) continue;
      total.waiting += stats.waiting;
      total.running += stats.running;
      total.kvBlocks += stats.kvBlocks;
      total.kvBlocksUsed += stats.kvBlocksUsed;
    }
    total.kvUsage = total.kvBlocks ? total.kvBlocksUsed / total.kvBlocks : 0;
    return total;
  }

  /** Each host's URL and why it is not used (undefined: healthy), for diagnostics. */
  health(): { url: string; down?: string }[] {
    return this.#hosts.map(({ url, down }) => ({ url, down }));
  }

  generate(request: GenerateRequest, signal?: AbortSignal): AsyncGenerator<TokenEvent, FinishReason> {
    if (this.#closed) throw new EngineClosedError("the gateway is shutting down");
    if (!request.images.every((image) => "bytes" in image)) {
      throw new InvalidRequestError("a gateway sends images as files: the GPU hosts decode them");
    }
    return this.#run(request as GenerateRequest<EncodedImage>, signal);
  }

  async close(graceMs = 0): Promise<void> {
    this.#closed = true;
    const deadline = Date.now() + graceMs;
    while (this.#inflight.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const attempt of this.#inflight) attempt.abort(new DOMException("the gateway closed", "AbortError"));
    await Promise.all(this.#hosts.map((h) => h.checking));
  }

  async *#run(
    request: GenerateRequest<EncodedImage>,
    signal?: AbortSignal,
  ): AsyncGenerator<TokenEvent, FinishReason> {
    const body = requestParts(request);
    const tried = new Set<Host>();
    const failures: HostFailure[] = [];
    let key: number | undefined;
    while (true) {
      signal?.throwIfAborted();
      const needed = request.ids.length + request.maxTokens;
      const host = await this.#pick(
        tried,
        needed,
        () => key ??= routingKey(request, this.#reference!.images.tokens.img),
      );
      if (!host) {
        // Too long only when no host known holds it; otherwise the hosts that do are busy or failing.
        const known = this.#hosts.flatMap((h) => h.status?.contextLength ?? []);
        if (known.length && Math.max(...known) < needed) {
          throw new RequestTooLongError(
            `the prompt (${request.ids.length} tokens) plus max_tokens (${request.maxTokens}) is ${needed} ` +
              `tokens, more than the context of any GPU host (at most ${Math.max(...known)})`,
          );
        }
        if (!failures.length && this.#hosts.some((h) => !h.down && !tried.has(h))) {
          throw new EngineUnavailableError(
            `no GPU host whose context holds ${needed} tokens can take the request now: ${this.#reasons()}`,
          );
        }
        throw this.#exhausted(failures);
      }
      if (failures.length) this.retries.inc();
      tried.add(host);
      const attempt = new AbortController();
      const abort = () => attempt.abort(signal!.reason);
      signal?.addEventListener("abort", abort);
      this.#inflight.add(attempt);
      let relayed = 0;
      try {
        const res = await this.#post(host, body, attempt);
        if (!res.ok || !res.body) throw await failureOf(host, res);
        for await (
          const frame of readFrames(stalling(res.body, this.#stall, `no answer for ${this.#stall} ms`))
        ) {
          if ("token" in frame) {
            const { token } = frame;
            const ids = [token, ...token.top ?? [], ...(token.prompt ?? []).flatMap((p) => p.top ?? [])];
            if (!ids.every(({ id }) => id < this.vocabSize)) {
              throw new HostFailure(host, "internal", `it sent token ${token.id}, outside the vocabulary`);
            }
            relayed++;
            yield token;
          } else if ("finish" in frame) {
            return frame.finish;
          } else {
            throw new HostFailure(host, frame.kind, frame.error, frame.retryAfter);
          }
        }
        throw new HostFailure(host, "internal", "the stream ended without finishing (the host went away)");
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        const failure = err instanceof HostFailure ? err : new HostFailure(host, "internal", describe(err));
        if (failure.kind === "too_long") throw new RequestTooLongError(failure.message);
        // The request is at fault (a schema that cannot compile, an image that does not decode): any host would
        // refuse it.
        if (failure.image) {
          const { index, status } = failure.image;
          throw Object.assign(
            status === 413 ? new ImageTooLargeError(failure.message) : new ImageDecodeError(failure.message),
            { image: index },
          );
        }
        if (failure.kind === "bad_request") throw new InvalidRequestError(failure.message);
        if (relayed > 0) {
          host.down = failure.message;
          log.warn("GPU host failed during a response", { host: host.url, error: failure.message });
          throw new EngineUnavailableError(
            `the GPU host failed after ${relayed} tokens of this response: ${this.#public(failure.message)}`,
          );
        }
        // Nothing reached the client yet: another host can take the request from the start.
        if (failure.kind !== "busy") host.down = failure.message;
        failures.push(failure);
        log.warn("GPU host failed before the first token; trying another", {
          host: host.url,
          kind: failure.kind,
          error: failure.message,
        });
      } finally {
        signal?.removeEventListener("abort", abort);
        this.#inflight.delete(attempt);
        // Ends the host's stream when the consumer stopped early (the host then frees the sequence).
        attempt.abort();
      }
    }
  }

  /** Why no host could take a request: all busy (429) or none available (503). */
  #exhausted(failures: HostFailure[]): Error {
    if (failures.length && failures.every((f) => f.kind === "busy")) {
      return new EngineBusyError(
        `every GPU host's queue is full (${failures.length} tried)`,
        Math.min(MAX_RETRY_AFTER, Math.max(1, ...failures.map((f) => f.retryAfter ?? 1))),
      );
    }
    const reasons = failures.length
      ? failures.map((f) => `${this.#name(f.host)}: ${this.#public(f.message)}`).join("; ")
      : this.#reasons();
    return new EngineUnavailableError(`no GPU host can take the request: ${reasons}`);
  }

  /** Each host's state, for clients (see publicReason). */
  #reasons(): string {
    return this.#hosts.map((h) =>
      `${this.#name(h)}: ${h.down ? this.#public(h.down) : `healthy (context ${h.status!.contextLength})`}`
    ).join(
      "; ",
    );
  }

  #public(message: string): string {
    return publicReason(message, this.#names);
  }

  #name(host: Host): string {
    return `GPU host ${this.#hosts.indexOf(host) + 1} of ${this.#hosts.length}`;
  }

  /**
   * The least loaded healthy host not in `exclude` whose context holds `needed` tokens, counted as sent to at once (so that concurrent picks
   * spread); stale statuses are refreshed, and awaited only when no host is known healthy.
   */
  async #pick(exclude: Set<Host>, needed: number, key: () => number): Promise<Host | undefined> {
    const refreshed = this.#refresh();
    if (!this.#best(exclude, needed, key)) await refreshed;
    const host = this.#best(exclude, needed, key);
    if (host) host.sent++;
    return host;
  }

  #best(exclude: Set<Host>, needed: number, key: () => number): Host | undefined {
    const load = (h: Host) => h.status!.stats!.waiting + h.status!.stats!.running + h.sent;
    const candidates = this.#hosts.filter((h) =>
      !h.down && !exclude.has(h) && h.status!.contextLength! >= needed
    );
    if (candidates.length === 0) return undefined;
    const least = Math.min(...candidates.map(load));
    const k = key();
    const score = (h: Host) => mix32((k ^ h.seed) >>> 0);
    const preferred = candidates.reduce((a, b) => score(b) > score(a) ? b : a);
    if (load(preferred) <= least + AFFINITY_SLACK) return preferred;
    const tied = candidates.filter((h) => load(h) === least);
    const kv = Math.min(...tied.map((h) => h.status!.stats!.kvUsage));
    const best = tied.filter((h) => h.status!.stats!.kvUsage === kv);
    return best[this.#turn++ % best.length];
  }

  /** Asks the hosts whose status is stale, each at most once at a time (a host that hangs delays no other). */
  async #refresh(): Promise<void> {
    const now = Date.now();
    await Promise.all(this.#hosts.map((host) => {
      if (!host.checking && now - host.checked >= this.#ttl) {
        host.checking = this.#check(host).finally(() => host.checking = undefined);
      }
      return host.checking;
    }));
  }

  async #check(host: Host): Promise<void> {
    try {
      const res = await this.#get(host, "/internal/v1/status", this.#statusTimeout);
      const status = decodeStatus(await res.json());
      host.status = status;
      if (status.stats) host.counted.update(status.stats, status.model.created);
      host.sent = 0;
      host.refused = false;
      this.#judge(host, status);
    } catch (err) {
      host.refused = err instanceof SecretRefusal;
      host.down = describe(err); // what it serves is not known: servedAt and mismatched stay
    } finally {
      host.checked = Date.now();
    }
    if (host.down) log.debug("GPU host not used", { host: host.url, reason: host.down });
  }

  /** Whether a host can serve, from its status. */
  #judge(host: Host, status: HostStatus): void {
    const mismatch = this.#mismatch(status);
    host.mismatched = mismatch !== undefined && status.wire === WIRE_MAGIC;
    host.otherPolicy = status.ready && this.#reference !== undefined &&
      policyDiffers(status, this.#reference);
    host.down = mismatch ??
      (status.ready ? undefined : status.failure ? `its model failed to load: ${status.failure}` : "loading");
    if (host.mismatched) host.servedAt = undefined;
    else if (!host.down) host.servedAt = Date.now();
  }

  /** Why a host cannot serve this gateway's model, if it cannot. */
  #mismatch(status: HostStatus): string | undefined {
    if (status.wire !== WIRE_MAGIC) return `it speaks wire format ${status.wire}, this gateway ${WIRE_MAGIC}`;
    if (!status.ready) return undefined;
    const ref = this.#reference ??= status; // until start() chooses among all the hosts' answers
    if (status.model.id !== ref.model.id || status.tokenizer !== ref.tokenizer) {
      return `it serves model "${status.model.id}" (tokenizer ${status.tokenizer.slice(0, 12)}), ` +
        `the gateway "${ref.model.id}" (tokenizer ${ref.tokenizer.slice(0, 12)})`;
    }
    // The gateway lists and accepts the reference's adapters: a host without them would refuse their requests.
    const loras = (s: HostStatus) => JSON.stringify([...s.model.loras ?? []].sort());
    if (loras(status) !== loras(ref)) {
      return `it serves the LoRA adapters ${loras(status)}, the gateway ${loras(ref)}`;
    }
    const differ = layoutDiffers(status, ref);
    return differ && `its settings differ from the gateway's (${differ})`;
  }

  /** A GET of an internal route, its body read within `timeoutMs`. */
  async #get(host: Host, path: string, timeoutMs = this.#timeout): Promise<Response> {
    try {
      const res = await fetch(host.url + path, {
        headers: { authorization: this.#auth },
        signal: AbortSignal.timeout(timeoutMs),
      });
      if (!res.ok) throw await failureOf(host, res);
      return new Response(await res.arrayBuffer(), res);
    } catch (err) {
      if ((err as Error).name === "TimeoutError") throw new Error(`no answer within ${timeoutMs} ms`);
      if (err instanceof HostFailure) throw err;
      throw unreachable(host, err);
    }
  }

  /** Posts a prepared request; the host has `timeoutMs` to start answering (the tokens may take longer). */
  async #post(host: Host, body: Uint8Array[], attempt: AbortController): Promise<Response> {
    const timer = setTimeout(
      () => attempt.abort(new Error(`no answer within ${this.#timeout} ms`)),
      this.#timeout,
    );
    try {
      return await fetch(`${host.url}/internal/v1/generate`, {
        method: "POST",
        headers: { authorization: this.#auth, "content-type": BINARY },
        body: streamOf(body),
        signal: attempt.signal,
      });
    } catch (err) {
      throw attempt.signal.aborted ? err : unreachable(host, err);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** A body streamed from its parts, so that no attempt copies a request's images. */
function streamOf(parts: Uint8Array[]): ReadableStream<Uint8Array> {
  let next = 0;
  return new ReadableStream({
    pull(controller) {
      if (next < parts.length) controller.enqueue(parts[next++]);
      else controller.close();
    },
  });
}
