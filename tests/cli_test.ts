import assert from "node:assert/strict";
import { pixtral } from "./helpers.ts";

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
});
