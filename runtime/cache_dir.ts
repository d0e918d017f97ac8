/** Where pixtral-server keeps what it can rebuild (the demo model, tokenizer caches): $PIXTRAL_CACHE, else
 * $XDG_CACHE_HOME/pixtral, else ~/.cache/pixtral. */
import { join } from "node:path";

export function cacheDir(): string {
  const home = Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE") ?? ".";
  return Deno.env.get("PIXTRAL_CACHE") ??
    join(Deno.env.get("XDG_CACHE_HOME") ?? join(home, ".cache"), "pixtral");
}
