/** Checks shared by the routes; their errors become error responses (OpenAI's or Anthropic's shape) in app.onError. */
import type { Context } from "hono";
// The `requestId` context variable the app's requestId middleware sets.
import type {} from "hono/request-id";
import { EngineClosedError } from "../../runtime/engine/engine.ts";
import { bodyText, BodyTimeoutError, BodyTooLargeError } from "../middleware/body.ts";
import { RequestError } from "../schema/chat.ts";
import { loraNamed, type Service } from "../service.ts";

/** The model named in a request is not served here (404, as OpenAI answers). */
export class UnknownModelError extends Error {
  override name = "UnknownModelError";
}

/** The client closed the connection before its request body arrived: nobody reads the answer (499). */
export class ClientClosedError extends Error {
  override name = "ClientClosedError";
}

/** What Deno raises when a connection drops while its body is read (matched by name: the edge has no Deno). */
const CONNECTION_ERRORS = new Set([
  "BadResource",
  "Http",
  "ConnectionReset",
  "ConnectionAborted",
  "Interrupted",
]);

export async function readJson(c: Context): Promise<unknown> {
  return (await readJsonText(c)).body;
}

/** The body as JSON, and its text (for what must be read as Python reads it, see runtime/prompt/pyjson.ts). */
export async function readJsonText(c: Context): Promise<{ body: unknown; text: string }> {
  let text: string;
  try {
    text = await bodyText(c);
  } catch (err) {
    if (err instanceof BodyTimeoutError || err instanceof BodyTooLargeError) throw err;
    if (c.req.raw.signal.aborted || CONNECTION_ERRORS.has((err as Error)?.name)) {
      throw new ClientClosedError("the client closed the connection while sending its request");
    }
    throw err;
  }
  try {
    return { body: JSON.parse(text), text };
  } catch (err) {
    throw new RequestError(`the request body is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * Checks that the request names a model served here (or none); returns the LoRA adapter it names, when it names
 * one served per request instead of the model itself.
 */
export function requireModel(service: Service, name: string | undefined | null): string | undefined {
  if (name == null) return undefined;
  const lora = loraNamed(service, name);
  if (lora !== undefined) return lora;
  // Also by the name Ollama's API lists it under (`id:latest`), as Ollama's OpenAI-compatible routes take it.
  const known = (n: string) => n === service.model.id || service.model.aliases.includes(n);
  if (known(name) || known(name.replace(/:latest$/, ""))) return undefined;
  const loras = service.model.loras?.length
    ? ` and its LoRA adapters ${JSON.stringify(service.model.loras)}`
    : "";
  throw new UnknownModelError(
    `the model "${name}" does not exist here; this server serves "${service.model.id}"${loras}`,
  );
}

export function requireEngine(service: Service) {
  if (service.engine) return service.engine;
  throw new EngineClosedError(
    service.failure ? `the model failed to load: ${service.failure}` : "the model is loading",
  );
}
