/** `pixtral serve`: the HTTP server on Deno.serve. */
import { createApp } from "../functions/app.ts";
import { log } from "../runtime/log.ts";
import { parseFlags, parsePort } from "./args.ts";

export const usage = `pixtral serve [--port N] [--host ADDR]

  --port N     port to listen on (default: $PORT or 8080; 0 picks a free one)
  --host ADDR  address to bind (default: $HOST or 127.0.0.1; 0.0.0.0 for every interface)`;

export async function serve(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, { port: { type: "string" }, host: { type: "string" } });
  const port = flags.port !== undefined
    ? parsePort(flags.port, "--port")
    : parsePort(Deno.env.get("PORT") ?? "8080", "PORT");
  const hostname = flags.host ?? Deno.env.get("HOST") ?? "127.0.0.1";

  const app = createApp();
  const server = Deno.serve({
    port,
    hostname,
    onListen: (addr) => log.info("listening", { url: `http://${addr.hostname}:${addr.port}` }),
  }, app.fetch);

  const stop = () => {
    log.info("shutting down");
    server.shutdown();
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await server.finished;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
}
