/**
 * A Hugging Face hub on loopback for the pull tests: the model API (/api/models/REPO/revision/REV?blobs=true),
 * /REPO/resolve/REV/PATH with the hub's headers (LFS files redirect to a CDN path), Range requests, a gated
 * repository, and hooks that cut a download short, corrupt a file, or lie in a header.
 */
import { createHash } from "node:crypto";

export interface FakeFile {
  bytes: Uint8Array;
  /** Stored in LFS (served through a redirect, listed with lfs.sha256). */
  lfs: boolean;
}

export interface FakeRepo {
  commit: string;
  branches: Record<string, string>;
  files: Record<string, FakeFile>;
  /** When set, requests need `Authorization: Bearer TOKEN`. */
  token?: string;
}

export interface RequestRecord {
  path: string;
  range: string | null;
  authorization: string | null;
  acceptEncoding: string | null;
}

export interface FakeHub {
  url: string;
  requests: RequestRecord[];
  /** Cut the next download of this path after this many bytes. */
  interrupt: Map<string, number>;
  /** Serve these paths with one byte flipped. */
  corrupt: Set<string>;
  /** Claim a wrong X-Linked-Size for these paths. */
  wrongSize: Set<string>;
  /** Ignore Range requests for these paths (answer 200 with the whole file). */
  noRange: Set<string>;
  /** Send these paths slowly (64 KiB every 5 ms), so that downloads overlap. */
  slow: Set<string>;
  /** Send the first 64 KiB of these paths, then nothing for 2 s, then end. */
  silent: Set<string>;
  /** Answer every request for these paths with 416 and an error page (a broken server). */
  refuse: Set<string>;
  /** Redirect the resolve requests of these (git) paths to the given location. */
  redirect: Map<string, string>;
  /** Changes the API's answers before they are sent (a hub that lies). */
  tamper?: (answer: { sha: string; siblings: Record<string, unknown>[] }) => void;
  close(): Promise<void>;
}

export const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
export const gitBlobId = (b: Uint8Array) =>
  createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");

function ranged(
  request: Request,
  bytes: Uint8Array,
  headers: Headers,
  cut?: number,
  noRange = false,
  slow = false,
  silent = false,
): Response {
  const range = noRange ? null : /^bytes=(\d+)-$/.exec(request.headers.get("range") ?? "");
  let start = 0;
  let status = 200;
  if (range) {
    start = Number(range[1]);
    if (start >= bytes.length) {
      headers.set("content-range", `bytes */${bytes.length}`);
      return new Response(null, { status: 416, headers });
    }
    status = 206;
    headers.set("content-range", `bytes ${start}-${bytes.length - 1}/${bytes.length}`);
  }
  const body = bytes.slice(start);
  headers.set("accept-ranges", "bytes");
  if (silent) {
    const stream = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(body.slice(0, 65536));
        await new Promise((r) => setTimeout(r, 2000));
        controller.close();
      },
    });
    return new Response(stream, { status, headers });
  }
  if (slow) {
    headers.set("content-length", String(body.length));
    const stream = new ReadableStream<Uint8Array>({
      async start(controller) {
        for (let at = 0; at < body.length; at += 65536) {
          controller.enqueue(body.slice(at, at + 65536));
          await new Promise((r) => setTimeout(r, 5));
        }
        controller.close();
      },
    });
    return new Response(stream, { status, headers });
  }
  if (cut === undefined) {
    headers.set("content-length", String(body.length));
    return new Response(body, { status, headers });
  }
  // Send `cut` bytes, give them time to arrive, then break the connection.
  const stream = new ReadableStream<Uint8Array>({
    async start(controller) {
      controller.enqueue(body.slice(0, cut));
      await new Promise((r) => setTimeout(r, 100));
      controller.error(new Error("connection cut by the test"));
    },
  });
  return new Response(stream, { status, headers });
}

export function startFakeHub(repos: Record<string, FakeRepo>): FakeHub {
  const requests: RequestRecord[] = [];
  const interrupt = new Map<string, number>();
  const corrupt = new Set<string>();
  const wrongSize = new Set<string>();
  const noRange = new Set<string>();
  const slow = new Set<string>();
  const silent = new Set<string>();
  const refuse = new Set<string>();
  const redirect = new Map<string, string>();
  const byLfs = new Map<string, { repo: string; path: string; file: FakeFile }>();
  for (const [repo, r] of Object.entries(repos)) {
    for (const [path, file] of Object.entries(r.files)) {
      if (file.lfs) byLfs.set(sha256(file.bytes), { repo, path, file });
    }
  }
  const allowed = (repo: FakeRepo, request: Request) =>
    repo.token === undefined || request.headers.get("authorization") === `Bearer ${repo.token}`;
  const served = (path: string, file: FakeFile) => {
    if (!corrupt.has(path)) return file.bytes;
    const copy = file.bytes.slice();
    copy[copy.length >> 1] ^= 0xff;
    return copy;
  };

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const url = new URL(request.url);
    const path = decodeURIComponent(url.pathname);
    requests.push({
      path,
      range: request.headers.get("range"),
      authorization: request.headers.get("authorization"),
      acceptEncoding: request.headers.get("accept-encoding"),
    });

    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/.exec(path);
    if (api) {
      const repo = repos[api[1]];
      // The real hub answers 401 for repositories that do not exist or that the caller may not see.
      if (!repo) return Response.json({ error: "Repository not found" }, { status: 401 });
      if (!allowed(repo, request)) return Response.json({ error: "gated" }, { status: 401 });
      const commit = repo.branches[api[2]] ?? (api[2] === repo.commit ? repo.commit : undefined);
      if (!commit) return Response.json({ error: "Invalid rev id" }, { status: 404 });
      const blobs = url.searchParams.get("blobs") === "true";
      const siblings = Object.entries(repo.files).map(([rfilename, f]) =>
        blobs
          ? {
            rfilename,
            size: f.bytes.length,
            blobId: f.lfs ? "0".repeat(40) : gitBlobId(f.bytes),
            ...(f.lfs ? { lfs: { sha256: sha256(f.bytes), size: f.bytes.length, pointerSize: 134 } } : {}),
          }
          : { rfilename }
      );
      const answer = { id: api[1], modelId: api[1], sha: commit, siblings };
      hub.tamper?.(answer);
      return Response.json(answer);
    }

    const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(path);
    if (cdn) {
      const entry = byLfs.get(cdn[1]);
      if (!entry) return new Response("no such object", { status: 404 });
      const cut = interrupt.get(entry.path);
      interrupt.delete(entry.path);
      if (refuse.has(entry.path)) return new Response("<html>range not satisfiable</html>", { status: 416 });
      return ranged(
        request,
        served(entry.path, entry.file),
        new Headers(),
        cut,
        noRange.has(entry.path),
        slow.has(entry.path),
        silent.has(entry.path),
      );
    }

    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (resolve) {
      const repo = repos[resolve[1]];
      if (!repo) return new Response("Repository not found", { status: 401 });
      if (!allowed(repo, request)) return new Response("gated", { status: 401 });
      const commit = repo.branches[resolve[2]] ?? (resolve[2] === repo.commit ? repo.commit : undefined);
      const file = repo.files[resolve[3]];
      if (!commit || !file) return new Response("Entry not found", { status: 404 });
      const headers = new Headers({ "x-repo-commit": commit });
      if (file.lfs) {
        const sha = sha256(file.bytes);
        headers.set("x-linked-etag", `"${sha}"`);
        headers.set(
          "x-linked-size",
          String(wrongSize.has(resolve[3]) ? file.bytes.length + 1 : file.bytes.length),
        );
        headers.set("location", `/cdn/${sha}`); // relative, as a CDN URL may be
        return new Response(null, { status: 302, headers });
      }
      const elsewhere = redirect.get(resolve[3]);
      if (elsewhere) return new Response(null, { status: 302, headers: { location: elsewhere } });
      headers.set("etag", `"${gitBlobId(file.bytes)}"`);
      const cut = interrupt.get(resolve[3]);
      interrupt.delete(resolve[3]);
      return ranged(request, served(resolve[3], file), headers, cut, noRange.has(resolve[3]));
    }
    return new Response("not found", { status: 404 });
  });
  const { port } = server.addr as Deno.NetAddr;
  const hub: FakeHub = {
    url: `http://127.0.0.1:${port}`,
    requests,
    interrupt,
    corrupt,
    wrongSize,
    noRange,
    slow,
    silent,
    refuse,
    redirect,
    close: () => server.shutdown(),
  };
  return hub;
}
