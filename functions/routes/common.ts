/** Checks shared by the routes; their errors become OpenAI-shaped responses in app.onError. */
import type { Context } from "hono";
import { EngineClosedError } from "../../runtime/engine/engine.ts";
import { RequestError } from "../schema/chat.ts";
import type { Service } from "../service.ts";

/** The model named in a request is not served here (404, as OpenAI answers). */
export class UnknownModelError extends Error {
  override name = "UnknownModelError";
}

export async function readJson(c: Context): Promise<unknown> {
  const text = await c.req.text();
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new RequestError(`the request body is not valid JSON: ${(err as Error).message}`);
  }
}

export function requireModel(service: Service, name: string | undefined | null): void {
  if (name == null || name === service.model.id || service.model.aliases.includes(name)) return;
  throw new UnknownModelError(
    `the model "${name}" does not exist here; this server serves "${service.model.id}"`,
  );
}

export function requireEngine(service: Service) {
  if (service.engine) return service.engine;
  throw new EngineClosedError(
    service.failure ? `the model failed to load: ${service.failure}` : "the model is loading",
  );
}
