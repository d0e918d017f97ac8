/**
 * Real text that nobody on this team wrote, for the tokenizer's differential test and benchmark: translated
 * manual pages (Debian's manpages-* packages) and Rust sources (Debian's librust-*-dev crates), which .ci/run
 * installs. The corpus is assembled deterministically (files in sorted order, troff markup stripped) and a
 * missing source is an error, never a skipped check.
 */

export type TextKind = "english" | "latin" | "cjk" | "mixed" | "code";

export const TEXT_KINDS: readonly TextKind[] = ["english", "latin", "cjk", "mixed", "code"];

interface Source {
  /** Directory searched recursively (sorted); a trailing `*` picks the last sibling with that prefix. */
  dir: string;
  /** Debian package that provides it. */
  pkg: string;
  /** File name filter. */
  match: RegExp;
}

const man = (lang: string, pkg: string): Source => ({
  dir: `/usr/share/man/${lang}`,
  pkg,
  match: /\.[1-8]\w*\.gz$/,
});
const crate = (prefix: string, pkg: string): Source => ({
  dir: `/usr/share/cargo/registry/${prefix}*`,
  pkg,
  match: /\.rs$/,
});

/** Each kind draws equal shares from its sources; "mixed" interleaves their paragraphs. */
const SOURCES: Record<TextKind, Source[]> = {
  english: [
    { dir: "/usr/share/man/man2", pkg: "manpages-dev", match: /\.gz$/ },
    { dir: "/usr/share/man/man7", pkg: "manpages", match: /\.gz$/ },
  ],
  latin: [
    man("de", "manpages-de"),
    man("fr", "manpages-fr"),
    man("es", "manpages-es"),
    man("pl", "manpages-pl"),
  ],
  cjk: [man("ja", "manpages-ja"), man("zh_CN", "manpages-zh"), man("zh_TW", "manpages-zh")],
  mixed: [
    man("ru", "manpages-ru"),
    man("ja", "manpages-ja"),
    man("de", "manpages-de"),
    man("zh_CN", "manpages-zh"),
  ],
  code: [
    crate("syn-1", "librust-syn-dev"),
    crate("serde_json-1", "librust-serde-json-dev"),
    crate("regex-1", "librust-regex-dev"),
  ],
};

/** About `bytes` UTF-8 bytes of text of one kind (a little more: whole paragraphs). */
export async function corpus(kind: TextKind, bytes: number): Promise<string> {
  const sources = SOURCES[kind];
  const share = Math.ceil(bytes / sources.length);
  const parts = await Promise.all(sources.map((source) => collect(source, share)));
  if (kind !== "mixed") return parts.join("\n");
  const paragraphs = parts.map((text) => text.split(/\n{2,}/));
  const out: string[] = [];
  for (let i = 0; paragraphs.some((p) => i < p.length); i++) {
    for (const p of paragraphs) if (i < p.length) out.push(p[i]);
  }
  return out.join("\n\n");
}

async function collect(source: Source, bytes: number): Promise<string> {
  let files: string[];
  try {
    files = (await walk(await resolve(source.dir))).filter((f) => source.match.test(f)).sort();
  } catch (err) {
    throw new Error(
      `corpus source ${source.dir} is missing (${(err as Error).message}): apt-get install ${source.pkg}` +
        " (.ci/run installs it)",
    );
  }
  const utf8 = new TextEncoder();
  const texts: string[] = [];
  let size = 0;
  for (const file of files) {
    if (size >= bytes) break;
    const raw = await Deno.readFile(file);
    const text = file.endsWith(".gz") ? stripTroff(await gunzip(raw)) : new TextDecoder().decode(raw);
    texts.push(text);
    size += utf8.encode(text).length;
  }
  if (size < bytes) {
    throw new Error(
      `corpus source ${source.dir} has only ${size} of the ${bytes} bytes needed (${source.pkg})`,
    );
  }
  return texts.join("\n");
}

async function resolve(dir: string): Promise<string> {
  if (!dir.endsWith("*")) return dir;
  const parent = dir.slice(0, dir.lastIndexOf("/"));
  const prefix = dir.slice(parent.length + 1, -1);
  const names: string[] = [];
  for await (const entry of Deno.readDir(parent)) if (entry.name.startsWith(prefix)) names.push(entry.name);
  if (names.length === 0) throw new Error(`no ${dir}`);
  return `${parent}/${names.sort().at(-1)}`;
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) out.push(...await walk(path));
    else if (entry.isFile) out.push(path);
  }
  return out;
}

async function gunzip(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new TextDecoder().decode(await new Response(stream).arrayBuffer());
}

/** Manual page source to plain text: comments and bare layout requests dropped, font escapes removed. */
function stripTroff(source: string): string {
  const lines: string[] = [];
  for (const line of source.split("\n")) {
    if (/^['.]\s*\\"/.test(line) || /^\.\s*[A-Za-z]{1,3}\s*$/.test(line)) continue;
    const text = line.startsWith(".") ? line.replace(/^\.\s*\S+\s*/, "") : line;
    lines.push(
      text.replace(/\\f(\[[^\]]*\]|\(..|.)/g, "").replace(/\\-/g, "-").replace(/\\&/g, "").replace(
        /\\\(em/g,
        "—",
      ),
    );
  }
  return lines.join("\n").replace(/\n{3,}/g, "\n\n");
}
