import assert from "node:assert/strict";
import { buildEdge } from "../scripts/build_edge.ts";

Deno.test("the edge bundle builds and its fetch handler answers in OpenAI's error shape", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const outfile = `${dir}/edge.js`;
    await buildEdge(outfile);
    const { default: worker } = await import(`file://${outfile}`);
    const res: Response = await worker.fetch(new Request("http://edge.test/health"));
    assert.equal(res.status, 503);
    assert.equal((await res.json()).error.code, "no_gpu_hosts");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
