import { Hono } from "hono";
import type { Service } from "../service.ts";

/** Prometheus scrape endpoint. */
export function metricsRoutes(service: Service): Hono {
  return new Hono().get("/metrics", async (c) => {
    await service.engine?.refresh?.(); // a gateway's gauges are its hosts' last reports
    return c.body(service.metrics.registry.render(), 200, {
      "content-type": "text/plain; version=0.0.4; charset=utf-8",
    });
  });
}
