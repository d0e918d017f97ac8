/** The gateway's request bodies whole, as tests send them to the internal route. */
import type { EncodedImage, GenerateRequest } from "../runtime/engine/engine.ts";
import { requestParts } from "../runtime/engine/wire.ts";

/** The request as one body for the internal route: its parts (requestParts) joined. */
export function encodeRequest(request: GenerateRequest<EncodedImage>): Uint8Array<ArrayBuffer> {
  const parts = requestParts(request);
  const body = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let at = 0;
  for (const part of parts) {
    body.set(part, at);
    at += part.length;
  }
  return body;
}
