/** A real server on loopback over the tiny-pixtral fixture, as `pixtral serve --model` runs it. */
import { AddressAllowList } from "../functions/images/address.ts";
import { type RunningServer, type ServerConfig, startServer } from "../cli/serve.ts";
import { fixture } from "./helpers.ts";

export const TINY = fixture("mistral").pathname;

export function serverConfig(overrides: Partial<ServerConfig> = {}): ServerConfig {
  return {
    port: 0,
    hostname: "127.0.0.1",
    model: { model: TINY, quant: "f32", visionQuant: "f32", activations: "f32", kv: "f32", ctx: 2048 },
    apiKeys: [],
    maxBodyBytes: 64 * 1024 * 1024,
    images: {
      maxImages: 8,
      maxBytes: 10_000_000,
      maxPixels: 50_000_000,
      allow: new AddressAllowList(),
      fetchUrls: true,
      resize: "mistral",
      orientation: "exif",
    },
    temperature: 0.7,
    engine: { prefillChunk: 64 },
    graceSeconds: 0,
    ...overrides,
  };
}

export async function withServer(
  overrides: Partial<ServerConfig>,
  body: (server: RunningServer) => Promise<void>,
): Promise<void> {
  const server = await startServer(serverConfig(overrides));
  try {
    await server.ready;
    if (server.service.failure) throw new Error(server.service.failure);
    await body(server);
  } finally {
    await server.shutdown();
  }
}

export async function dataUrl(path: string): Promise<string> {
  const bytes = await Deno.readFile(fixture(path));
  return `data:image/png;base64,${bytes.toBase64()}`;
}

export async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, json: await res.json() };
}
