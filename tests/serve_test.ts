import assert from "node:assert/strict";
import { lines, pixtral } from "./helpers.ts";

Deno.test("pixtral serve listens, answers /health, and exits 0 on SIGTERM", async () => {
  const child = pixtral(["serve", "--port", "0"]).spawn();
  const log = lines(child.stdout);
  const next = async () => {
    const { value, done } = await log.next();
    return done ? undefined : JSON.parse(value);
  };
  const listening = await next();
  assert.equal(listening?.msg, "listening");
  const res = await fetch(`${listening.url}/health`);
  assert.equal(res.status, 200);
  assert.equal((await res.json()).status, "ok");

  child.kill("SIGTERM");
  assert.equal((await next())?.msg, "shutting down");
  assert.equal(await next(), undefined);
  await child.stderr.cancel();
  assert.equal((await child.status).code, 0);
});
