import assert from "node:assert/strict";
import { lines, pixtral } from "./helpers.ts";

Deno.test("pixtral serve (the README's command): listens, loads the demo model, serves, exits 0 on SIGTERM", async () => {
  const child = pixtral(["serve", "--port", "0"]).spawn();
  const log = lines(child.stdout);
  const until = async (msg: string) => {
    for (let next = await log.next(); !next.done; next = await log.next()) {
      const entry = JSON.parse(next.value);
      if (entry.msg === msg) return entry;
    }
    throw new Error(`the server exited before logging "${msg}"`);
  };
  const { url } = await until("listening");
  const early = await fetch(`${url}/health`);
  assert.ok(early.status === 503 || early.status === 200);
  await early.body?.cancel();
  const ready = await until("ready");
  // Mesa's lavapipe (CI) gets short prefill chunks, so that a long prompt does not stop the server answering.
  assert.equal(ready.prefillChunk, /llvmpipe/.test(ready.adapter) ? 64 : 512);
  const health = await fetch(`${url}/health`);
  assert.equal(health.status, 200);
  assert.equal((await health.json()).model, "pixtral-demo-random");
  const models = await (await fetch(`${url}/v1/models`)).json();
  assert.equal(models.data[0].demo, true);
  assert.match(models.data[0].description, /RANDOM weights/);
  const chat = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    body: JSON.stringify({ messages: [{ role: "user", content: "Hello" }], max_tokens: 2 }),
  });
  assert.equal(chat.status, 200);
  assert.equal((await chat.json()).usage.completion_tokens, 2);
  // Listening on loopback, it answers to its address but not to a name a web page could rebind.
  // (fetch writes its own Host header: the request is written by hand.)
  const socket = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(url).port) });
  await socket.write(
    new TextEncoder().encode("GET /v1/models HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"),
  );
  const rebound = await new Response(socket.readable).text();
  assert.match(rebound, /^HTTP\/1\.1 403 /);
  assert.match(rebound, /"host_not_allowed"/);

  child.kill("SIGTERM");
  await until("shutting down");
  for (let next = await log.next(); !next.done; next = await log.next());
  await child.stderr.cancel();
  assert.equal((await child.status).code, 0);
});

Deno.test("pixtral serve: out of file descriptors, it stops accepting, shuts down in order and exits 1", async () => {
  // Deno's server closes no idle connection: clients that hold connections open use the descriptors up.
  const cli = new URL("../cli/pixtral.ts", import.meta.url).pathname;
  const serve = ["run", "--unstable-no-legacy-abort", "-A", cli, "serve", "--port", "0", "--grace", "0"];
  const child = new Deno.Command("bash", {
    args: ["-c", 'ulimit -n 256 && exec "$@"', "bash", Deno.execPath(), ...serve],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const log = lines(child.stdout);
  const until = async (msg: RegExp) => {
    for (let next = await log.next(); !next.done; next = await log.next()) {
      const entry = JSON.parse(next.value);
      if (msg.test(entry.msg)) return entry;
    }
    throw new Error(`the server exited before logging ${msg}`);
  };
  const { url } = await until(/^listening$/);
  const { hostname, port } = new URL(url);
  const held: Deno.TcpConn[] = [];
  const stopped = until(/stopped accepting connections/);
  let failure;
  while (!failure) {
    try {
      held.push(await Deno.connect({ hostname, port: Number(port) }));
    } catch (err) {
      // The listener closed between two looks at the log.
      if (!(err instanceof Deno.errors.ConnectionRefused)) throw err;
      failure = await stopped;
      break;
    }
    failure = await Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, 5))]);
    assert.ok(held.length < 1000, "the server never ran out of descriptors");
  }
  assert.match(failure.msg, /Too many open files/);
  await until(/^shutting down$/);
  for (const conn of held) conn.close();
  for (let next = await log.next(); !next.done; next = await log.next());
  await child.stderr.cancel();
  assert.equal((await child.status).code, 1);
});
