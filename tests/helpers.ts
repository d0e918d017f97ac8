/** Where the shared tiny-pixtral fixtures live: ../shared beside the checkout (as in CI), or $PIXTRAL_FIXTURES. */
export const FIXTURES = new URL(
  Deno.env.get("PIXTRAL_FIXTURES") ?? "../../shared/fixtures/tiny-pixtral/",
  import.meta.url,
);

try {
  Deno.statSync(FIXTURES);
} catch {
  throw new Error(
    `the tiny-pixtral fixtures are not at ${FIXTURES.pathname}: put shared/ beside the checkout (as CI does) or ` +
      "set PIXTRAL_FIXTURES to their folder",
  );
}

export function fixture(path: string): URL {
  return new URL(path, FIXTURES);
}

export async function fixtureJson<T = unknown>(path: string): Promise<T> {
  return JSON.parse(await Deno.readTextFile(fixture(path)));
}

const CLI = new URL("../cli/pixtral.ts", import.meta.url).pathname;

/** The `pixtral` command in a child process, with the permissions `deno task pixtral` grants. */
export function pixtral(args: string[], env: Record<string, string> = {}): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--unstable-no-legacy-abort", "-A", CLI, ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  });
}

/**
 * A loopback address that refuses connections: a privileged port (nothing here binds one), below the range port-0
 * servers are given, so that no test file's server takes it, as one could take a port freed for the purpose.
 */
export const DEAD_URL = "http://127.0.0.1:2";

export { lines } from "../runtime/lines.ts";
