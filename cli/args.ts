/** Command-line parsing shared by the subcommands (node:util's parseArgs, which Deno provides without npm). */
import { parseArgs, type ParseArgsConfig } from "node:util";

/** A mistake in how the command was called: printed without a stack trace, exit status 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

export function parseFlags<T extends NonNullable<ParseArgsConfig["options"]>>(argv: string[], options: T) {
  // `deno task serve -- --port 8095` (npm's habit) passes the `--` on: the flags follow it.
  const args = argv[0] === "--" ? argv.slice(1) : argv;
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export function parsePort(text: string, source: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535) {
    throw new UsageError(`${source} must be a port number 0-65535, got "${text}"`);
  }
  return port;
}

/** A flag that must be one of `choices`. */
export function choice<T extends string>(
  flag: string,
  value: string | undefined,
  choices: readonly T[],
): T | undefined {
  if (value !== undefined && !choices.includes(value as T)) {
    throw new UsageError(`${flag} must be one of ${choices.join(", ")}, got "${value}"`);
  }
  return value as T | undefined;
}

/** An integer flag of at least `min` (1 unless given); undefined when absent. */
export function positiveInt(flag: string, value: string | undefined, min = 1): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < min) {
    throw new UsageError(
      `${flag} must be ${min === 1 ? "a positive integer" : `an integer of at least ${min}`}, got "${value}"`,
    );
  }
  return Number(value);
}
