/** The gateway's request bodies whole, as tests send them to the internal route. */
import type { EncodedImage, GenerateRequest } from "../runtime/engine/engine.ts";
import { requestParts } from "../runtime/engine/wire.ts";
import { concat } from "./images_helpers.ts";

/** The request as one body for the internal route: its parts (requestParts) joined. */
export const encodeRequest = (request: GenerateRequest<EncodedImage>) => concat(...requestParts(request));
