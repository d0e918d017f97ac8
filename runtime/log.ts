/**
 * Structured logs: one JSON object per line on stdout (or stderr, for tools whose stdout is their result), easy
 * to grep and to ship to a log store.
 */

type Level = "debug" | "info" | "warn" | "error";
const ORDER: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

const threshold = (() => {
  let level: string | undefined;
  try {
    level = globalThis.Deno?.env.get("PIXTRAL_LOG_LEVEL");
  } catch {
    return ORDER.info; // no env permission, or a host without Deno.env
  }
  if (level === undefined || Object.hasOwn(ORDER, level)) return ORDER[(level ?? "info") as Level];
  console.error(JSON.stringify({
    time: new Date().toISOString(),
    level: "warn",
    msg: `PIXTRAL_LOG_LEVEL=${level} is none of debug, info, warn, error: logging at info`,
  }));
  return ORDER.info;
})();

/** Whether lines of `level` are written (PIXTRAL_LOG_LEVEL). */
export function logs(level: Level): boolean {
  return ORDER[level] >= threshold;
}

let print = (line: string) => console.log(line);

/** Sends the logs to stderr from now on. */
export function logToStderr(): void {
  print = (line) => console.error(line);
}

function write(level: Level, msg: string, fields: Record<string, unknown>) {
  if (ORDER[level] < threshold) return;
  print(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }));
}

export const log = {
  debug: (msg: string, fields: Record<string, unknown> = {}) => write("debug", msg, fields),
  info: (msg: string, fields: Record<string, unknown> = {}) => write("info", msg, fields),
  warn: (msg: string, fields: Record<string, unknown> = {}) => write("warn", msg, fields),
  error: (msg: string, fields: Record<string, unknown> = {}) => write("error", msg, fields),
};
