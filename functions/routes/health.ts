import { Hono } from "hono";
import type { Service } from "../service.ts";

/**
 * `GET /`: the server is up. `GET /health`: readiness for load balancers: 200 once the model serves, 503 while it
 * loads, after it failed, when stopping, or (a gateway) while none of its GPU hosts can serve.
 */
export function healthRoutes(service: Service): Hono {
  return new Hono()
    // Liveness, as Ollama's root answers it (its CLI's heartbeat is HEAD /; apps probe GET / before /api/tags).
    .get("/", (c) => c.text(`pixtral-server is running (${service.model.id})`))
    .get("/health", async (c) => {
      if (service.stopping) return c.json({ status: "stopping", model: service.model.id }, 503);
      if (service.engine) {
        // A gateway is healthy only while one of its GPU hosts is.
        const unavailable = await service.engine.refresh?.();
        if (unavailable) {
          return c.json({ status: "unavailable", model: service.model.id, error: unavailable }, 503);
        }
        return c.json({ status: "ok", model: service.model.id });
      }
      if (service.failure) {
        return c.json({ status: "failed", model: service.model.id, error: service.failure }, 503);
      }
      return c.json({ status: "loading", model: service.model.id }, 503);
    });
}
