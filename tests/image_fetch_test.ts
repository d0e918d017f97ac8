import assert from "node:assert/strict";
import { AddressAllowList, isPublicAddress } from "../functions/images/address.ts";
import { DEFAULT_IMAGE_FETCH, fetchImageBytes, ImageSourceError } from "../functions/images/fetch.ts";
import { PinnedRelay } from "../functions/images/relay.ts";

const PNG = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4]);

function isSourceError(status: number, pattern: RegExp) {
  return (err: Error) => {
    assert.ok(err instanceof ImageSourceError, String(err));
    assert.equal(err.status, status);
    assert.match(err.message, pattern);
    return true;
  };
}

/** A loopback HTTP server for one test, with routes given as handlers. */
async function withServer(
  routes: Record<string, (req: Request, base: string) => Response | Promise<Response>>,
  body: (base: string) => Promise<void>,
) {
  const server: Deno.HttpServer<Deno.NetAddr> = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => {
      const route = routes[new URL(req.url).pathname];
      return route ? route(req, `http://127.0.0.1:${server.addr.port}`) : new Response("no", { status: 404 });
    },
  );
  try {
    await body(`http://127.0.0.1:${server.addr.port}`);
  } finally {
    await server.shutdown();
  }
}

const allowLoopback = {
  ...DEFAULT_IMAGE_FETCH,
  allow: new AddressAllowList(["127.0.0.0/8"]),
  timeoutMs: 2000,
};

Deno.test("address classification: private, loopback, link-local and embedded IPv4 are not public", () => {
  for (
    const a of [
      "127.0.0.1",
      "10.1.2.3",
      "172.31.0.1",
      "192.168.1.1",
      "169.254.169.254",
      "100.64.0.1",
      "0.0.0.0",
    ]
  ) {
    assert.equal(isPublicAddress(a), false, a);
  }
  for (
    const a of [
      "::1",
      "::",
      "fe80::1",
      "fd00::1",
      "::ffff:127.0.0.1",
      "::ffff:7f00:1",
      "64:ff9b::a00:1",
      // IPv4-compatible, IPv4-translated, 6to4 and Teredo forms of loopback and private addresses.
      "::127.0.0.1",
      "::ffff:0:127.0.0.1",
      "2002:7f00:1::",
      "2002:a00:1::1",
      "2001:0:4136:e378:8000:63bf:f5ff:fffe", // Teredo, client 10.0.0.1
      "fec0::1", // site-local
      "2001:2::1", // benchmarking
      "3fff::1", // documentation
    ]
  ) {
    assert.equal(isPublicAddress(a), false, a);
  }
  for (
    const a of [
      "8.8.8.8",
      "1.1.1.1",
      "2606:4700:4700::1111",
      "::ffff:8.8.8.8",
      "172.32.0.1",
      "2002:808:808::1",
      "2001:0:4136:e378:8000:63bf:f7f7:f7f7", // Teredo, server 65.54.227.120, client 8.8.8.8
    ]
  ) {
    assert.equal(isPublicAddress(a), true, a);
  }
  assert.equal(isPublicAddress("not-an-ip"), false);
  const allow = new AddressAllowList(["10.0.0.0/8", "images.internal", "::1"]);
  assert.ok(
    allow.allowsAddress("10.9.8.7") && allow.allowsAddress("::1") && allow.allowsHost("Images.Internal"),
  );
  assert.ok(!allow.allowsAddress("11.0.0.1") && !allow.allowsHost("other.internal"));
  assert.throws(() => new AddressAllowList(["10.0.0.0/40"]), /CIDR/);
});

Deno.test("data: URLs decode base64 of any declared type and are checked for encoding and size", async () => {
  const url = `data:image/png;base64,${PNG.toBase64()}`;
  assert.deepEqual(await fetchImageBytes(url), PNG);
  // As a URL parser reads it: the scheme in any case, blanks around the URL dropped.
  assert.deepEqual(await fetchImageBytes(` Data${url.slice(4)}\n`), PNG);
  assert.deepEqual(await fetchImageBytes(`\x01${url}\x00`), PNG);
  await assert.rejects(fetchImageBytes("data:image/png,rawbytes"), isSourceError(400, /base64/));
  for (const type of ["image", "text/plain", ""]) {
    assert.deepEqual(await fetchImageBytes(`data:${type};base64,${PNG.toBase64()}`), PNG, type);
  }
  await assert.rejects(fetchImageBytes("data:image/png;base64,***"), isSourceError(400, /not valid base64/));
  await assert.rejects(fetchImageBytes("data:image/png;base64,"), isSourceError(400, /holds no image/));
  const big = `data:image/png;base64,${new Uint8Array(2048).toBase64()}`;
  await assert.rejects(
    fetchImageBytes(big, { ...DEFAULT_IMAGE_FETCH, maxBytes: 1000 }),
    isSourceError(413, /1000/),
  );
});

Deno.test("image URLs to loopback or private addresses are refused unless allowed", async () => {
  await withServer(
    { "/a.png": () => new Response(PNG, { headers: { "content-type": "image/png" } }) },
    async (base) => {
      await assert.rejects(fetchImageBytes(`${base}/a.png`), isSourceError(400, /private, loopback/));
      await assert.rejects(
        fetchImageBytes(`http://localhost:1/a.png`),
        isSourceError(400, /private, loopback/),
      );
      const rebinding = {
        ...DEFAULT_IMAGE_FETCH,
        resolve: () => Promise.resolve(["93.184.215.14", "10.0.0.5"]),
      };
      await assert.rejects(
        fetchImageBytes("http://public.example/a.png", rebinding),
        isSourceError(400, /10\.0\.0\.5/),
      );
      assert.deepEqual(await fetchImageBytes(`${base}/a.png`, allowLoopback), PNG);
    },
  );
  await assert.rejects(fetchImageBytes("file:///etc/passwd"), isSourceError(400, /http\(s\) or data/));
  await assert.rejects(
    fetchImageBytes("https://x.test/a.png", { ...DEFAULT_IMAGE_FETCH, fetchUrls: false }),
    /data: URLs/,
  );
});

Deno.test("redirects are followed up to the limit and each hop is checked again", async () => {
  await withServer({
    "/a.png": () => new Response(PNG, { headers: { "content-type": "image/png" } }),
    "/hop": (_, base) => Response.redirect(`${base}/a.png`, 302),
    "/loop": (_, base) => Response.redirect(`${base}/loop`, 302),
    "/to-v6": () => Response.redirect("http://[::1]:9/a.png", 302),
  }, async (base) => {
    assert.deepEqual(await fetchImageBytes(`${base}/hop`, allowLoopback), PNG);
    await assert.rejects(
      fetchImageBytes(`${base}/loop`, allowLoopback),
      isSourceError(400, /redirects more than 3/),
    );
    await assert.rejects(
      fetchImageBytes(`${base}/to-v6`, allowLoopback),
      isSourceError(400, /private, loopback/),
    );
  });
});

Deno.test("wrong content types, HTTP errors, oversized bodies and slow servers give clear errors", async () => {
  const never = Promise.withResolvers<Response>();
  await withServer({
    "/page": () => new Response("<html>", { headers: { "content-type": "text/html" } }),
    "/missing": () => new Response("gone", { status: 410 }),
    "/big": () => new Response(new Uint8Array(5000), { headers: { "content-type": "image/png" } }),
    "/stream": () =>
      new Response(
        new ReadableStream({
          start(c) {
            for (let i = 0; i < 5; i++) c.enqueue(new Uint8Array(1000));
            c.close();
          },
        }),
        { headers: { "content-type": "image/png" } },
      ),
    "/slow": () => never.promise,
  }, async (base) => {
    await assert.rejects(fetchImageBytes(`${base}/page`, allowLoopback), isSourceError(400, /text\/html/));
    await assert.rejects(fetchImageBytes(`${base}/missing`, allowLoopback), isSourceError(400, /HTTP 410/));
    const small = { ...allowLoopback, maxBytes: 4096 };
    await assert.rejects(fetchImageBytes(`${base}/big`, small), isSourceError(413, /4096/));
    await assert.rejects(fetchImageBytes(`${base}/stream`, small), isSourceError(413, /4096/));
    const quick = { ...allowLoopback, timeoutMs: 200 };
    await assert.rejects(fetchImageBytes(`${base}/slow`, quick), isSourceError(400, /longer than 200 ms/));
    never.resolve(new Response(PNG));
  });
});

/**
 * Fetches `url` in a child process whose resolver sends every name to loopback addresses and approves them:
 * 127.0.0.2 comes first among the IPv4 ones (tried before IPv6), where nothing listens, so that the next address
 * is tried. The system's DNS knows none of the test names, and a child may reach them where this process's
 * permissions stop at 127.0.0.1; no proxy from the environment reaches it. Prints the bytes or the error's
 * message.
 */
async function fetchInChild(url: string, trustTestCa = false): Promise<string> {
  const module = (path: string) => new URL(path, import.meta.url);
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      ...(trustTestCa ? ["--cert", module("./fixtures/tls/ca.pem").pathname] : []),
      `import { DEFAULT_IMAGE_FETCH, fetchImageBytes } from "${module("../functions/images/fetch.ts")}";
       import { AddressAllowList } from "${module("../functions/images/address.ts")}";
       const options = { ...DEFAULT_IMAGE_FETCH, allow: new AddressAllowList(["127.0.0.0/8", "::1"]),
         resolve: () => Promise.resolve(["::1", "127.0.0.2", "127.0.0.1"]) };
       try {
         console.log((await fetchImageBytes(${JSON.stringify(url)}, options)).join(","));
       } catch (err) { console.log(err.message); }`,
    ],
    env: {
      NO_COLOR: "1",
      HTTP_PROXY: "",
      HTTPS_PROXY: "",
      ALL_PROXY: "",
      http_proxy: "",
      https_proxy: "",
      all_proxy: "",
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).trim() || new TextDecoder().decode(out.stderr);
}

Deno.test("connections go to the addresses the host check approved, not to a second DNS answer", async () => {
  const hosts: string[] = [];
  await withServer({
    "/a.png": (req) => {
      hosts.push(req.headers.get("host") ?? "");
      return new Response(PNG, { headers: { "content-type": "image/png" } });
    },
    "/hop": (req) => {
      hosts.push(req.headers.get("host") ?? "");
      return Response.redirect(`http://second.test:${new URL(req.url).port}/a.png?x=1`, 302);
    },
  }, async (base) => {
    const port = new URL(base).port;
    // Without pinning, fetch would ask the system's DNS for pinned.test and fail.
    assert.equal(await fetchInChild(`http://pinned.test:${port}/hop`), PNG.join(","));
    assert.deepEqual(hosts, [`pinned.test:${port}`, `second.test:${port}`]);
  });
});

Deno.test("the relay connects only to the host and port it was opened for", async () => {
  const relay = new PinnedRelay(new URL("https://pinned.test:4443/a.png"), ["127.0.0.1"]);
  try {
    for (
      const head of [
        "CONNECT other.test:4443 HTTP/1.1",
        "CONNECT pinned.test:22 HTTP/1.1",
        "GET http://pinned.test/ HTTP/1.1",
      ]
    ) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: relay.port });
      await conn.write(new TextEncoder().encode(`${head}\r\nhost: x\r\n\r\n`));
      const reply = new Uint8Array(64);
      const n = await conn.read(reply);
      assert.match(new TextDecoder().decode(reply.subarray(0, n ?? 0)), /^HTTP\/1\.1 403/, head);
      conn.close();
    }
  } finally {
    relay.close();
  }
});

Deno.test("https image URLs are pinned too, with TLS verified for the URL's host name", async () => {
  const dir = new URL("./fixtures/tls/", import.meta.url);
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: await Deno.readTextFile(new URL("cert.pem", dir)),
    key: await Deno.readTextFile(new URL("key.pem", dir)),
    onListen() {},
  }, () => new Response(PNG, { headers: { "content-type": "image/png" } }));
  try {
    const port = server.addr.port;
    assert.equal(await fetchInChild(`https://pinned.test:${port}/a.png`, true), PNG.join(","));
    // The certificate names pinned.test only: the relay does not make another name's TLS pass.
    assert.match(
      await fetchInChild(`https://other.test:${port}/a.png`, true),
      /fetching the image URL failed/,
    );
  } finally {
    await server.shutdown();
  }
});
