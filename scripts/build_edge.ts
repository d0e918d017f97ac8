/** `deno task build`: bundles the edge entry (functions/edge.ts) into dist/edge.js with esbuild. */
import * as esbuild from "esbuild";

const ROOT = new URL("../", import.meta.url);

export async function buildEdge(
  outfile = new URL("dist/edge.js", ROOT).pathname,
): Promise<esbuild.BuildResult> {
  try {
    return await esbuild.build({
      entryPoints: [new URL("functions/edge.ts", ROOT).pathname],
      outfile,
      bundle: true,
      format: "esm",
      platform: "neutral",
      target: "es2022",
      minify: true,
      metafile: true,
      logLevel: "warning",
    });
  } finally {
    await esbuild.stop();
  }
}

if (import.meta.main) {
  const result = await buildEdge();
  for (const [file, { bytes }] of Object.entries(result.metafile!.outputs)) {
    console.log(`${file}  ${(bytes / 1024).toFixed(1)} KiB`);
  }
}
