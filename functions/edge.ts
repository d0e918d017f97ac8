/** Edge entry (Deno Deploy, Cloudflare Workers): the same API without a GPU, bundled by `deno task build`. */
import { createApp } from "./app.ts";

const app = createApp();

export default { fetch: app.fetch };
