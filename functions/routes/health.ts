import { Hono } from "hono";
import type { Service } from "../service.ts";

/** Readiness for load balancers: 200 once the model serves, 503 while it loads, after it failed, or when stopping. */
export function healthRoutes(service: Service): Hono {
  return new Hono().get("/health", (c) => {
    if (service.stopping) return c.json({ status: "stopping", model: service.model.id }, 503);
    if (service.engine) return c.json({ status: "ok", model: service.model.id });
    if (service.failure) {
      return c.json({ status: "failed", model: service.model.id, error: service.failure }, 503);
    }
    return c.json({ status: "loading", model: service.model.id }, 503);
  });
}
