/**
 * `deno task build`: the edge gateway (functions/edge.ts) as one ES module, dist/edge.js, beside the WASM module
 * it imports, dist/pixtral_wasm_bg.wasm; what wrangler.toml deploys and what `deno serve` runs.
 *
 * The WASM is imported as a compiled module (`import source`, which workerd, Cloudflare Workers and Deno all
 * take) instead of being read from a file: edge runtimes have no file system. The entry that does so is
 * written here, because TypeScript cannot parse `import source` yet.
 */
import * as esbuild from "esbuild";

const ROOT = new URL("../", import.meta.url);
export const WASM_NAME = "pixtral_wasm_bg.wasm";

const ENTRY = `import source wasm from "./${WASM_NAME}";
import { edgeWorker } from "./functions/edge.ts";
export default edgeWorker(wasm);
`;

export interface EdgeBuild {
  /** Paths and sizes (bytes, and gzip-compressed as Workers count them) of the bundle and the WASM. */
  files: { path: string; bytes: number; gzipBytes: number }[];
}

async function gzipSize(bytes: Uint8Array<ArrayBuffer>): Promise<number> {
  const compressed = new Blob([bytes]).stream().pipeThrough(new CompressionStream("gzip"));
  return (await new Response(compressed).arrayBuffer()).byteLength;
}

export async function buildEdge(outdir = new URL("dist/", ROOT).pathname): Promise<EdgeBuild> {
  const outfile = `${outdir.replace(/\/$/, "")}/edge.js`;
  try {
    await esbuild.build({
      stdin: { contents: ENTRY, resolveDir: ROOT.pathname, sourcefile: "edge_entry.js", loader: "js" },
      outfile,
      bundle: true,
      format: "esm",
      platform: "neutral",
      target: "es2022",
      supported: { "import-source": true },
      external: [`./${WASM_NAME}`],
      minify: true,
      logLevel: "warning",
    });
  } finally {
    await esbuild.stop();
  }
  const wasm = `${outdir.replace(/\/$/, "")}/${WASM_NAME}`;
  await Deno.copyFile(new URL(`wasm/pkg/${WASM_NAME}`, ROOT), wasm);
  const files = [];
  for (const path of [outfile, wasm]) {
    const bytes = await Deno.readFile(path);
    files.push({ path, bytes: bytes.length, gzipBytes: await gzipSize(bytes) });
  }
  return { files };
}

if (import.meta.main) {
  const { files } = await buildEdge();
  const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
  for (const { path, bytes, gzipBytes } of files) {
    console.log(`${path}  ${kib(bytes)}  (gzip ${kib(gzipBytes)})`);
  }
  const total = files.reduce((n, f) => n + f.gzipBytes, 0);
  console.log(`total gzip ${kib(total)} (Workers: 3 MiB on the free plan, 10 MiB paid)`);
}
