import assert from "node:assert/strict";
import { fixture, pixtral } from "./helpers.ts";

async function run(args: string[]) {
  const { code, stdout, stderr } = await pixtral(args).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code, stdout: decode(stdout), stderr: decode(stderr) };
}

Deno.test("pixtral --help lists the subcommands and exits 0", async () => {
  const { code, stdout } = await run(["--help"]);
  assert.equal(code, 0);
  assert.match(stdout, /usage: pixtral <command>/);
  assert.match(stdout, /serve\s+start the HTTP server/);
});

Deno.test("pixtral with an unknown command exits 2 and names it", async () => {
  const { code, stderr } = await run(["frobnicate"]);
  assert.equal(code, 2);
  assert.match(stderr, /unknown command "frobnicate"/);
});

Deno.test("pixtral serve rejects a bad port or an unknown flag with exit 2", async () => {
  const bad = await run(["serve", "--port", "70000"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--port must be a port number/);
  const unknown = await run(["serve", "--prot", "1"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /--prot/);
  // Flags after npm's `--` (which `deno task serve -- --port 1` passes on) are read as flags.
  const dashed = await run(["serve", "--", "--port", "70000"]);
  assert.equal(dashed.code, 2);
  assert.match(dashed.stderr, /--port must be a port number/);
});

Deno.test("pixtral serve: a key file without keys, a port in use and a model that fails to load each end it", async () => {
  const keys = await Deno.makeTempFile();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    await Deno.writeTextFile(keys, "# keys go here\n\n");
    const open = await run(["serve", "--port", "0", "--api-key-file", keys]);
    assert.equal(open.code, 2);
    assert.match(open.stderr, /holds no API key: the server would accept requests without one/);
    // The mistake alone, not every flag after it.
    assert.doesNotMatch(open.stderr, /--max-body/);
    const port = String((listener.addr as Deno.NetAddr).port);
    const taken = await run(["serve", "--port", port]);
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(--host, --port`));
    // A model that cannot load: the process exits (1) for its supervisor to see, rather than answer 503 forever.
    const small = await run([
      "serve",
      "--port",
      "0",
      "--model",
      fixture("mistral").pathname,
      "--gpu-memory",
      "1MB",
    ]);
    assert.equal(small.code, 1);
    assert.match(small.stderr, /the model failed to load: .*; exiting/);
  } finally {
    listener.close();
    await Deno.remove(keys);
  }
});
