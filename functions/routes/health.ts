import { Hono } from "hono";

/** Liveness for load balancers and orchestrators. */
export const health = new Hono().get("/health", (c) => c.json({ status: "ok", model: null }));
