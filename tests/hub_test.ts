import assert from "node:assert/strict";
import { HubError, parseRepoRef, resolveCachedRepo } from "../runtime/hub/cache.ts";
import { resolveHubModel } from "../runtime/hub/model.ts";
import { pickGguf, pull, type PullOptions } from "../runtime/hub/pull.ts";
import { locateModel } from "../runtime/model/locate.ts";
import { closeModelFiles, openModelFiles, withLocalModel } from "../runtime/model/boot.ts";
import { openModel } from "../runtime/model/open.ts";
import { pixtral } from "./helpers.ts";
import { type FakeHub, type FakeRepo, gitBlobId, sha256, startFakeHub } from "./hub_fake.ts";
import { tempDir, TINY } from "./weights_helpers.ts";

const read = (p: string) => Deno.readFileSync(`${TINY}${p}`);
const COMMIT_A = "a".repeat(40);
const COMMIT_B = "b".repeat(40);
const COMMIT_C = "c".repeat(40);
const LORA = new URL("./fixtures/lora/peft/", import.meta.url).pathname;

function repos(): Record<string, FakeRepo> {
  return {
    "tiny/pixtral-native": {
      commit: COMMIT_A,
      branches: { main: COMMIT_A },
      files: {
        "params.json": { bytes: read("mistral/params.json"), lfs: false },
        "tekken.json": { bytes: read("mistral/tekken.json"), lfs: false },
        "consolidated.safetensors": { bytes: read("mistral/consolidated.safetensors"), lfs: true },
        "README.md": { bytes: new TextEncoder().encode("# tiny"), lfs: false },
      },
    },
    "tiny/pixtral-hf": {
      commit: COMMIT_B,
      branches: { main: COMMIT_B, v1: COMMIT_B },
      token: "secret-token",
      files: {
        "config.json": { bytes: read("hf/config.json"), lfs: false },
        "tokenizer_config.json": { bytes: read("hf/tokenizer_config.json"), lfs: false },
        "model.safetensors": { bytes: read("hf/model.safetensors"), lfs: true },
        "images/example.png": { bytes: new Uint8Array(10), lfs: false },
      },
    },
    "tiny/pixtral-lora": {
      commit: COMMIT_A,
      branches: { main: COMMIT_A },
      files: {
        "adapter_config.json": {
          // Naming its base model on the hub, as a fine-tune's adapter does.
          bytes: new TextEncoder().encode(JSON.stringify({
            ...JSON.parse(Deno.readTextFileSync(`${LORA}adapter_config.json`)),
            base_model_name_or_path: "tiny/pixtral-native",
          })),
          lfs: false,
        },
        "adapter_model.safetensors": {
          bytes: Deno.readFileSync(`${LORA}adapter_model.safetensors`),
          lfs: true,
        },
        "README.md": { bytes: new TextEncoder().encode("# adapter"), lfs: false },
      },
    },
    "tiny/pixtral-lora-gguf": {
      commit: COMMIT_B,
      branches: { main: COMMIT_B },
      files: {
        "pixtral-lora-F32.gguf": { bytes: Deno.readFileSync(`${LORA}../plain.gguf`), lfs: true },
        "pixtral-embed-F32.gguf": { bytes: Deno.readFileSync(`${LORA}../embed.gguf`), lfs: true },
      },
    },
    "tiny/pixtral-gguf": {
      commit: COMMIT_C,
      branches: { main: COMMIT_C },
      files: {
        "tiny-pixtral-text-Q4_K_M.gguf": { bytes: read("gguf/tiny-pixtral-text-Q4_K_M.gguf"), lfs: true },
        "tiny-pixtral-text-Q8_0.gguf": { bytes: read("gguf/tiny-pixtral-text-Q8_0.gguf"), lfs: true },
        "mmproj-tiny-pixtral-Q8_0.gguf": { bytes: read("gguf/tiny-pixtral-mmproj-Q8_0.gguf"), lfs: true },
      },
    },
  };
}

/** A fake hub and an empty cache for one test; progress lines are collected. */
async function withHub(body: (hub: FakeHub, options: PullOptions, lines: string[]) => Promise<void>) {
  const hub = startFakeHub(repos());
  const cache = await tempDir();
  const lines: string[] = [];
  const options: PullOptions = {
    endpoint: hub.url,
    token: null,
    cache,
    progressSink: { write: (t) => lines.push(t), isTerminal: false },
  };
  try {
    await body(hub, options, lines);
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
}

Deno.test("pull: the native layout into an HF-style cache, verified, then loadable as --model hf:ORG/REPO", async () => {
  await withHub(async (hub, options, lines) => {
    const result = await pull("hf:tiny/pixtral-native", options);
    assert.equal(result.commit, COMMIT_A);
    assert.deepEqual(
      result.files.toSorted(),
      ["consolidated.safetensors", "params.json", "tekken.json"],
      "README.md is not needed",
    );
    const repoDir = `${options.cache}/models--tiny--pixtral-native`;
    assert.equal(result.dir, `${repoDir}/snapshots/${COMMIT_A}`);
    assert.equal(await Deno.readTextFile(`${repoDir}/refs/main`), COMMIT_A);
    const weights = read("mistral/consolidated.safetensors");
    assert.equal(
      await Deno.readLink(`${result.dir}/consolidated.safetensors`),
      `../../blobs/${sha256(weights)}`,
    );
    assert.equal(
      await Deno.readLink(`${result.dir}/params.json`),
      `../../blobs/${gitBlobId(read("mistral/params.json"))}`,
    );
    assert.deepEqual(await Deno.readFile(`${result.dir}/consolidated.safetensors`), weights);
    assert.equal(
      result.fetched,
      weights.length + read("mistral/params.json").length + read("mistral/tekken.json").length,
    );

    // The LFS file came through the hub's redirect to its CDN path; the API was asked for blob metadata.
    assert.ok(hub.requests.some((r) => r.path === `/api/models/tiny/pixtral-native/revision/main`));
    assert.ok(hub.requests.some((r) => r.path === `/cdn/${sha256(weights)}`));

    // Progress: JSON lines from start to a final "done" with every byte counted.
    const events = lines.map((l) => JSON.parse(l));
    assert.equal(events[0].msg, "progress");
    assert.equal(events.at(-1).msg, "done");
    assert.equal(events.at(-1).done, events.at(-1).total);
    assert.equal(events.at(-1).task, `pull hf:tiny/pixtral-native@${COMMIT_A.slice(0, 8)}`);

    // --model hf:ORG/REPO reads the cache (offline: no request).
    const before = hub.requests.length;
    const local = await resolveHubModel("hf:tiny/pixtral-native", { ...options, offline: true });
    assert.deepEqual(local, { path: result.dir, mmproj: null });
    assert.equal(hub.requests.length, before);
    const location = await locateModel(local.path);
    assert.equal(location.layout, "mistral");
    assert.equal(location.tokenizer.kind, "tekken");
    const model = await openModel(location);
    model.weights.close();
    assert.equal(model.config.decoder.dim, 256);
    assert.equal(await resolveCachedRepo(`hf:tiny/pixtral-native@${COMMIT_A}`, options.cache), result.dir);

    // A second pull finds everything in place and fetches nothing.
    const again = await pull("hf:tiny/pixtral-native", options);
    assert.equal(again.fetched, 0);
    assert.deepEqual(hub.requests.slice(before).map((r) => r.path), [
      "/api/models/tiny/pixtral-native/revision/main",
    ]);
  });
});

Deno.test("pull: an interrupted download resumes with an HTTP Range request and verifies the whole file", async () => {
  await withHub(async (hub, options) => {
    hub.interrupt.set("consolidated.safetensors", 3_000_000);
    await assert.rejects(
      () => pull("hf:tiny/pixtral-native", options),
      /consolidated\.safetensors: download interrupted .*run the same pull again/,
    );
    const weights = read("mistral/consolidated.safetensors");
    const partial = `${options.cache}/models--tiny--pixtral-native/blobs/${sha256(weights)}.incomplete`;
    const kept = (await Deno.stat(partial)).size;
    assert.ok(kept > 0 && kept <= 3_000_000, `kept ${kept} bytes`);

    const result = await pull("hf:tiny/pixtral-native", options);
    const resumed = hub.requests.filter((r) => r.path === `/cdn/${sha256(weights)}`).at(-1)!;
    assert.equal(resumed.range, `bytes=${kept}-`);
    assert.deepEqual(await Deno.readFile(`${result.dir}/consolidated.safetensors`), weights);
    await assert.rejects(() => Deno.stat(partial));
    assert.equal(result.fetched, weights.length - kept, "only the rest was fetched");

    // A complete download left as .incomplete (stopped before its rename) is checked, not fetched again.
    const blob = partial.replace(/\.incomplete$/, "");
    await Deno.rename(blob, partial);
    const requests = hub.requests.length;
    const again = await pull("hf:tiny/pixtral-native", options);
    assert.equal(again.fetched, 0);
    assert.ok(!hub.requests.slice(requests).some((r) => r.path.startsWith("/cdn/")));
    assert.deepEqual(await Deno.readFile(blob), weights);
  });
});

Deno.test("pull: a server that ignores Range sends the whole file again, which is taken from the start", async () => {
  await withHub(async (hub, options) => {
    hub.interrupt.set("consolidated.safetensors", 1_000_000);
    await assert.rejects(() => pull("hf:tiny/pixtral-native", options), /download interrupted/);
    hub.noRange.add("consolidated.safetensors");
    const result = await pull("hf:tiny/pixtral-native", options);
    const weights = read("mistral/consolidated.safetensors");
    assert.match(hub.requests.filter((r) => r.path.startsWith("/cdn/")).at(-1)!.range ?? "", /^bytes=\d+-$/);
    assert.equal(result.fetched, weights.length);
    assert.deepEqual(await Deno.readFile(`${result.dir}/consolidated.safetensors`), weights);
  });
});

Deno.test("pull: a small (git) file interrupted mid-way resumes too", async () => {
  await withHub(async (hub, options) => {
    hub.interrupt.set("tekken.json", 50_000);
    await assert.rejects(() => pull("hf:tiny/pixtral-native", options), /tekken\.json: download interrupted/);
    const result = await pull("hf:tiny/pixtral-native", options);
    assert.match(
      hub.requests.filter((r) => r.path.endsWith("/tekken.json")).at(-1)!.range ?? "",
      /^bytes=\d+-$/,
    );
    assert.deepEqual(await Deno.readFile(`${result.dir}/tekken.json`), read("mistral/tekken.json"));
  });
});

Deno.test("pull: a sha256 mismatch discards the download and says so", async () => {
  await withHub(async (hub, options) => {
    hub.corrupt.add("consolidated.safetensors");
    const sha = sha256(read("mistral/consolidated.safetensors"));
    await assert.rejects(
      () => pull("hf:tiny/pixtral-native", options),
      (err: Error) => {
        assert.ok(err instanceof HubError);
        assert.match(
          err.message,
          new RegExp(`consolidated\\.safetensors: sha256 mismatch: expected ${sha}, got [0-9a-f]{64}`),
        );
        assert.match(err.message, /discarded/);
        return true;
      },
    );
    const blobs = `${options.cache}/models--tiny--pixtral-native/blobs`;
    await assert.rejects(() => Deno.stat(`${blobs}/${sha}`));
    await assert.rejects(() => Deno.stat(`${blobs}/${sha}.incomplete`));
  });
  await withHub(async (hub, options) => {
    hub.corrupt.add("params.json"); // a git file: checked against its blob id
    await assert.rejects(
      () => pull("hf:tiny/pixtral-native", options),
      /params\.json: git blob sha1 mismatch/,
    );
  });
});

Deno.test("pull: the hub's X-Linked-Size is checked against the API listing", async () => {
  await withHub(async (hub, options) => {
    hub.wrongSize.add("consolidated.safetensors");
    await assert.rejects(
      () => pull("hf:tiny/pixtral-native", options),
      /X-Linked-Size \d+ disagrees with the API's size/,
    );
  });
});

Deno.test("pull: 401 for gated repositories without a token, 404 for unknown revisions and files", async () => {
  await withHub(async (hub, options) => {
    await assert.rejects(() => pull("hf:tiny/pixtral-hf", options), /access denied \(HTTP 401.*set HF_TOKEN/);
    await assert.rejects(
      () => pull("hf:tiny/pixtral-hf", { ...options, token: "wrong" }),
      /HTTP 401.*the token \(HF_TOKEN, or \$HF_HOME\/token\) cannot read it/,
    );
    await assert.rejects(
      () => pull("hf:nobody/nothing", options),
      /hf:nobody\/nothing@main .*access denied \(HTTP 401/,
    );
    await assert.rejects(
      () => pull("hf:tiny/pixtral-native@nope", options),
      /not found \(HTTP 404.*revision/,
    );
    await assert.rejects(
      () => pull("hf:tiny/pixtral-native", { ...options, include: ["*.bin"] }),
      /--include \*\.bin matches none/,
    );

    const result = await pull("hf:tiny/pixtral-hf@v1", { ...options, token: "secret-token" });
    assert.deepEqual(result.files.toSorted(), ["config.json", "model.safetensors", "tokenizer_config.json"]);
    assert.equal(await Deno.readTextFile(`${options.cache}/models--tiny--pixtral-hf/refs/v1`), COMMIT_B);
    assert.ok(
      hub.requests.filter((r) => r.path.startsWith("/tiny/pixtral-hf/")).every((r) =>
        r.authorization === "Bearer secret-token"
      ),
    );
    assert.ok(
      hub.requests.filter((r) => r.path.startsWith("/cdn/")).every((r) =>
        r.authorization === "Bearer secret-token"
      ),
      "same origin keeps the token",
    );
    const local = await resolveHubModel("hf:tiny/pixtral-hf@v1", { ...options, offline: true });
    const model = await openModel(await locateModel(local.path));
    model.weights.close();
    assert.equal(model.location.layout, "hf");
  });
});

Deno.test("GGUF repositories: a :QUANT tag (default Q4_K_M) picks the text file and an mmproj", async () => {
  await withHub(async (hub, options) => {
    const result = await pull("hf:tiny/pixtral-gguf", options);
    assert.deepEqual(result.files.toSorted(), [
      "mmproj-tiny-pixtral-Q8_0.gguf",
      "tiny-pixtral-text-Q4_K_M.gguf",
    ]);
    const q8 = await resolveHubModel("hf:tiny/pixtral-gguf:q8_0", options);
    assert.deepEqual(q8, {
      path: `${result.dir}/tiny-pixtral-text-Q8_0.gguf`,
      mmproj: `${result.dir}/mmproj-tiny-pixtral-Q8_0.gguf`,
    });
    // Both quantizations are cached now: offline, the tag still decides.
    const before = hub.requests.length;
    const q4 = await resolveHubModel("hf:tiny/pixtral-gguf", { ...options, offline: true });
    assert.equal(q4.path, `${result.dir}/tiny-pixtral-text-Q4_K_M.gguf`);
    assert.equal(hub.requests.length, before);
    await assert.rejects(
      () => resolveHubModel("hf:tiny/pixtral-gguf:Q5_K_M", { ...options, offline: true }),
      /no GGUF file of the quantization Q5_K_M; .*tiny-pixtral-text-Q4_K_M\.gguf.*pixtral pull/,
    );
    await assert.rejects(
      () => pull("hf:tiny/pixtral-gguf:Q2_K", options),
      /no GGUF file of the quantization Q2_K/,
    );
    await assert.rejects(
      () => pull("hf:tiny/pixtral-native:Q4_K_M", options),
      /has none: write hf:ORG\/REPO/,
    );
    await assert.rejects(
      () => pull("hf:tiny/pixtral-gguf:Q8_0", { ...options, include: ["*.gguf"] }),
      /--include or with :Q8_0, not both/,
    );
  });
  // The mmproj: the same quantization, else the most precise; a tag is a whole name part.
  const names = [
    "a-Q4_K_M.gguf",
    "a-Q4_K.gguf",
    "mmproj-a-q8_0.gguf",
    "mmproj-a-F16.gguf",
    "mmproj-a-Q4_K.gguf",
  ];
  assert.deepEqual(pickGguf(names), { text: "a-Q4_K_M.gguf", mmproj: "mmproj-a-F16.gguf" });
  assert.deepEqual(pickGguf(names, "q4_k"), { text: "a-Q4_K.gguf", mmproj: "mmproj-a-Q4_K.gguf" });
  assert.deepEqual(pickGguf(["x/m-Q8_0.gguf"], "Q8_0"), { text: "x/m-Q8_0.gguf", mmproj: null });
  assert.throws(() => pickGguf(["a-Q8_0.gguf", "b-Q8_0.gguf"], "Q8_0"), /several GGUF files/);
  assert.throws(() => pickGguf(names, "K_M"), /no GGUF file of the quantization K_M/);
});

Deno.test("--model hf: pulls what the cache lacks, and falls back to the cache when the hub is unreachable", async () => {
  await withHub(async (hub, options) => {
    const model = await withLocalModel({ model: "hf:tiny/pixtral-native", quant: "q8" }, options);
    assert.equal(model.model, `${options.cache}/models--tiny--pixtral-native/snapshots/${COMMIT_A}`);
    assert.equal(model.name, "tiny/pixtral-native");
    assert.equal(model.quant, "q8");
    const files = await openModelFiles(model);
    files.weights.close();
    files.tokenizer.free();
    assert.equal(files.id, "tiny/pixtral-native");

    // A plan fetches the config only, in either layout, and offline finds it again.
    const native = await resolveHubModel("hf:tiny/pixtral-native@" + COMMIT_A, {
      ...options,
      configOnly: true,
    });
    assert.equal(native.path, model.model);
    const nativeCache = { ...options, cache: await tempDir() };
    const nativePlan = await resolveHubModel("hf:tiny/pixtral-native", { ...nativeCache, configOnly: true });
    assert.deepEqual([...Deno.readDirSync(nativePlan.path)].map((e) => e.name), ["params.json"]);
    assert.deepEqual(
      await resolveHubModel("hf:tiny/pixtral-native", { ...nativeCache, configOnly: true, offline: true }),
      nativePlan,
    );
    await Deno.remove(nativeCache.cache, { recursive: true });
    const planned = await withLocalModel({ model: "hf:tiny/pixtral-hf" }, {
      ...options,
      token: "secret-token",
      configOnly: true,
    });
    assert.deepEqual([...Deno.readDirSync(planned.model!)].map((e) => e.name), ["config.json"]);
    // Offline, a cache holding the config alone cannot serve, and says how to fix it.
    await assert.rejects(
      () => resolveHubModel("hf:tiny/pixtral-hf", { ...options, offline: true }),
      /hf:tiny\/pixtral-hf in the cache .*no Pixtral weights found.*pixtral pull hf:tiny\/pixtral-hf/,
    );

    const unreachable = { ...options, endpoint: "http://127.0.0.1:9" };
    assert.equal((await resolveHubModel("hf:tiny/pixtral-native", unreachable)).path, model.model);
    await assert.rejects(() => resolveHubModel("hf:tiny/pixtral-gguf", unreachable), /cannot reach/);
    assert.ok(hub.requests.length > 0);
  });
});

Deno.test("--lora hf:ORG/REPO pulls a PEFT adapter repository into the cache and merges it", async () => {
  await withHub(async (_hub, options) => {
    const local = await withLocalModel(
      { model: "hf:tiny/pixtral-native", lora: ["hf:tiny/pixtral-lora"] },
      options,
    );
    const snapshot = `${options.cache}/models--tiny--pixtral-lora/snapshots/${COMMIT_A}`;
    assert.deepEqual(local.lora, [snapshot]);
    assert.deepEqual(
      [...Deno.readDirSync(snapshot)].map((e) => e.name).sort(),
      ["adapter_config.json", "adapter_model.safetensors"],
    );
    const files = await openModelFiles(local);
    files.weights.close();
    files.tokenizer.free();
    assert.equal(files.weights.merged?.size, 31);
    // Without --model, the base model the adapter names (pulled too).
    const alone = await withLocalModel({ lora: ["hf:tiny/pixtral-lora"] }, options);
    assert.equal(alone.model, `${options.cache}/models--tiny--pixtral-native/snapshots/${COMMIT_A}`);
    assert.equal(alone.name, "tiny/pixtral-native");
    // A repository of LoRA GGUFs: one file, chosen by :TAG where there are several.
    await assert.rejects(
      () => withLocalModel({ model: local.model, lora: ["hf:tiny/pixtral-lora-gguf"] }, options),
      /several LoRA GGUF files: choose one with hf:ORG\/REPO:TAG among pixtral-embed-F32.gguf, pixtral-lora-F32.gguf/,
    );
    const tagged = await withLocalModel(
      { model: local.model, lora: ["hf:tiny/pixtral-lora-gguf:lora-F32"] },
      options,
    );
    assert.deepEqual(tagged.lora, [
      `${options.cache}/models--tiny--pixtral-lora-gguf/snapshots/${COMMIT_B}/pixtral-lora-F32.gguf`,
    ]);
    const merged = await openModelFiles(tagged);
    merged.weights.close();
    merged.tokenizer.free();
    assert.equal(merged.weights.merged?.size, 14);
    // Served per request: pulled the same way, named NAME= or after the repository.
    const served = await withLocalModel(
      {
        model: local.model,
        loraModules: ["ocr=hf:tiny/pixtral-lora-gguf:lora-F32", "hf:tiny/pixtral-lora-gguf:lora-F32"],
      },
      options,
    );
    assert.deepEqual(served.loraModules, [`ocr=${tagged.lora![0]}`, `pixtral-lora-gguf=${tagged.lora![0]}`]);
    const opened = await openModelFiles(served);
    closeModelFiles(opened);
    opened.tokenizer.free();
    assert.deepEqual(opened.loraModules?.map((m) => [m.name, m.adapter.updates.size]), [["ocr", 14], [
      "pixtral-lora-gguf",
      14,
    ]]);
  });
});

Deno.test("hub references and the cache resolver explain what is wrong", async () => {
  assert.deepEqual(parseRepoRef("hf:mistralai/Pixtral-12B-2409"), {
    repo: "mistralai/Pixtral-12B-2409",
    revision: "main",
  });
  assert.deepEqual(parseRepoRef("hf:org/repo@v1.0"), { repo: "org/repo", revision: "v1.0" });
  assert.deepEqual(parseRepoRef("hf:org/repo-GGUF:Q4_K_M@refs/pr/1"), {
    repo: "org/repo-GGUF",
    revision: "refs/pr/1",
    quant: "Q4_K_M",
  });
  for (
    const bad of [
      "hf:norepo",
      "hf:a/b/c",
      "hf:../x/y",
      "hf:org/repo@",
      "hf:org/repo:",
      "hf:o/r:a:b",
      "hf:o/r:*",
      "hf:o/r@v1:Q8_0",
    ]
  ) {
    assert.throws(() => parseRepoRef(bad), HubError, bad);
  }
  const cache = await tempDir();
  try {
    await assert.rejects(
      () => resolveCachedRepo("hf:org/missing", cache),
      /hf:org\/missing is not in the local cache .*pixtral pull hf:org\/missing/,
    );
    await assert.rejects(
      () => resolveHubModel("hf:org/missing", { cache, offline: true }),
      /not in the local cache .*pixtral pull/,
    );
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("pixtral pull (the command) downloads with HF_ENDPOINT/HF_HUB_CACHE, then plan uses --model hf:", async () => {
  await withHub(async (_hub, options) => {
    const env = { HF_ENDPOINT: options.endpoint!, HF_HUB_CACHE: options.cache!, HF_TOKEN: "" };
    const out = await pixtral(["pull", "hf:tiny/pixtral-native"], env).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    const printed = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.equal(printed.path, `${options.cache}/models--tiny--pixtral-native/snapshots/${COMMIT_A}`);
    assert.match(stderr, /"msg":"done"/, "progress as JSON lines when stderr is not a terminal");

    const plan = await pixtral([
      "plan",
      "--model",
      "hf:tiny/pixtral-native",
      "--no-gpu",
      "--json",
      "--ctx",
      "1024",
    ], env).output();
    assert.equal(plan.code, 0, new TextDecoder().decode(plan.stderr));
    assert.equal(JSON.parse(new TextDecoder().decode(plan.stdout)).config.decoder.dim, 256);

    // A repository of LoRA GGUFs, with --lora: the one :TAG names.
    const lora = await pixtral(["pull", "hf:tiny/pixtral-lora-gguf:lora-F32", "--lora"], env).output();
    assert.equal(lora.code, 0, new TextDecoder().decode(lora.stderr));
    assert.deepEqual(JSON.parse(new TextDecoder().decode(lora.stdout)).files, ["pixtral-lora-F32.gguf"]);

    const gated = await pixtral(["pull", "hf:tiny/pixtral-hf"], env).output();
    assert.equal(gated.code, 1);
    assert.match(new TextDecoder().decode(gated.stderr), /pixtral pull: .*access denied.*set HF_TOKEN/);
    const usage = await pixtral(["pull", "tiny/pixtral-native"], env).output();
    assert.equal(usage.code, 2);

    // PIXTRAL_LOG_LEVEL=warn silences the progress lines too (into a fresh cache, so that there is progress); a
    // level that is none of the four says so.
    const quiet = await pixtral(["pull", "hf:tiny/pixtral-native"], {
      ...env,
      HF_HUB_CACHE: await Deno.makeTempDir(),
      PIXTRAL_LOG_LEVEL: "warn",
    }).output();
    assert.equal(quiet.code, 0);
    assert.doesNotMatch(new TextDecoder().decode(quiet.stderr), /"level":"info"/);
    const verbose = await pixtral(["pull", "hf:tiny/pixtral-native"], {
      ...env,
      PIXTRAL_LOG_LEVEL: "verbose",
    })
      .output();
    assert.match(new TextDecoder().decode(verbose.stderr), /PIXTRAL_LOG_LEVEL=verbose is none of debug/);

    // HF_HUB_OFFLINE: nothing fetched (the hub is unreachable here); the cache is checked, as huggingface-cli does.
    const offline = { ...env, HF_HUB_OFFLINE: "1", HF_ENDPOINT: "http://127.0.0.1:9" };
    const cached = await pixtral(["pull", "hf:tiny/pixtral-native"], offline).output();
    assert.equal(cached.code, 0, new TextDecoder().decode(cached.stderr));
    assert.deepEqual(JSON.parse(new TextDecoder().decode(cached.stdout)), {
      model: "hf:tiny/pixtral-native",
      path: printed.path,
      offline: true,
    });
    const absent = await pixtral(["pull", "hf:tiny/pixtral-hf"], offline).output();
    assert.equal(absent.code, 1);
    assert.match(new TextDecoder().decode(absent.stderr), /pixtral pull: .*pixtral-hf.*cache/i);
  });
});

Deno.test("pull: commits and hashes from the API become paths only when they are commits and hashes", async () => {
  const victim = await tempDir();
  await Deno.writeTextFile(`${victim}/params.json`, "mine");
  const lies: [string, (answer: { sha: string; siblings: Record<string, unknown>[] }) => void, RegExp][] = [
    ["a commit that is a path", (a) => a.sha = `../../../..${victim}`, /a commit that is not one/],
    [
      "a blob id that is a path",
      (a) => a.siblings[0].blobId = `../../../..${victim}/params.json`,
      /hash that is not one/,
    ],
    [
      "an LFS sha256 that is a path",
      (a) => (a.siblings[2].lfs as Record<string, unknown>).sha256 = "../x",
      /hash that is not one/,
    ],
    [
      "a file name with a backslash",
      (a) => a.siblings[0].rfilename = "..\\..\\evil.json",
      /refusing the file name/,
    ],
    ["a file name with a newline", (a) => a.siblings[0].rfilename = "a\nb.json", /refusing the file name/],
  ];
  try {
    for (const [what, tamper, message] of lies) {
      await withHub(async (hub, options) => {
        hub.tamper = tamper;
        await assert.rejects(() => pull("hf:tiny/pixtral-native", options), message, what);
      });
    }
    assert.equal(await Deno.readTextFile(`${victim}/params.json`), "mine");
    // A commit asked for is the commit served.
    await withHub(async (_hub, options) => {
      await assert.rejects(
        () => pull(`hf:tiny/pixtral-native@${COMMIT_B}`, options),
        /not found|answered commit/,
      );
    });
  } finally {
    await Deno.remove(victim, { recursive: true });
  }
});

Deno.test("pull: two pulls of one repository at once take turns per file and leave every blob whole", async () => {
  await withHub(async (hub, options) => {
    hub.slow.add("consolidated.safetensors");
    const [a, b] = await Promise.all([
      pull("hf:tiny/pixtral-native", options),
      pull("hf:tiny/pixtral-native", options),
    ]);
    assert.equal(a.commit, b.commit);
    const weights = Deno.readFileSync(`${a.dir}/consolidated.safetensors`);
    assert.equal(sha256(weights), sha256(read("mistral/consolidated.safetensors")));
    // The second found the blob the first made: fetched once in all.
    assert.equal(hub.requests.filter((r) => r.path.startsWith("/cdn/")).length, 1);
    assert.ok(hub.requests.every((r) => r.acceptEncoding === "identity" || r.path.startsWith("/api/")));
  });
});

Deno.test("pull: redirects go only to the web, never down to http; a ref with folders is kept", async () => {
  for (const location of ["file:///etc/hostname", "data:text/plain,hello"]) {
    await withHub(async (hub, options) => {
      hub.redirect.set("params.json", location);
      await assert.rejects(() => pull("hf:tiny/pixtral-native", options), /refusing a redirect/);
    });
  }
  await withHub(async (hub, options) => {
    // A 416 whose retry fails too is an error, not an error page saved as the file.
    hub.interrupt.set("consolidated.safetensors", 1 << 20);
    await assert.rejects(() => pull("hf:tiny/pixtral-native", options), /run the same pull again/);
    hub.refuse.add("consolidated.safetensors");
    await assert.rejects(() => pull("hf:tiny/pixtral-native", options), /HTTP 416 for the whole file/);
    hub.refuse.clear();
    const fake = repos()["tiny/pixtral-native"];
    const info = { ...fake, branches: { ...fake.branches, "refs/pr/1": COMMIT_A } };
    await hub.close();
    const again = startFakeHub({ "tiny/pixtral-native": info });
    try {
      const result = await pull("hf:tiny/pixtral-native@refs/pr/1", { ...options, endpoint: again.url });
      assert.equal(
        await Deno.readTextFile(`${options.cache}/models--tiny--pixtral-native/refs/refs/pr/1`),
        COMMIT_A,
      );
      assert.equal(result.commit, COMMIT_A);
    } finally {
      await again.close();
    }
  });
});

Deno.test("pull: a body that keeps coming is not cut by a timeout; one that stops is, and resumes", async () => {
  await withHub(async (hub, options) => {
    // 9 MB at 64 KiB per 5 ms: about 0.7 s, more than the stall time, with data all along.
    hub.slow.add("consolidated.safetensors");
    const result = await pull("hf:tiny/pixtral-native", { ...options, stallMs: 300 });
    const weights = Deno.readFileSync(`${result.dir}/consolidated.safetensors`);
    assert.equal(sha256(weights), sha256(read("mistral/consolidated.safetensors")));
  });
  await withHub(async (hub, options) => {
    hub.silent.add("consolidated.safetensors");
    await assert.rejects(
      () => pull("hf:tiny/pixtral-native", { ...options, stallMs: 300 }),
      /download interrupted after \d+ of \d+ bytes \(no data for 0.3 s\); run the same pull again/,
    );
    hub.silent.clear();
    const result = await pull("hf:tiny/pixtral-native", options);
    assert.ok(result.fetched < read("mistral/consolidated.safetensors").length, "resumed, not fetched anew");
  });
});

Deno.test("a cached snapshot that a pull left unfinished is not served offline", async () => {
  const cache = await tempDir();
  try {
    const snapshot = `${cache}/models--org--sharded/snapshots/${COMMIT_A}`;
    await Deno.mkdir(snapshot, { recursive: true });
    await Deno.mkdir(`${cache}/models--org--sharded/refs`);
    await Deno.writeTextFile(`${cache}/models--org--sharded/refs/main`, COMMIT_A);
    await Deno.writeTextFile(`${snapshot}/config.json`, "{}");
    await Deno.writeTextFile(`${snapshot}/model-00001-of-00003.safetensors`, "");
    const offline = { cache, offline: true };
    await assert.rejects(
      () => resolveHubModel("hf:org/sharded", offline),
      /lacks model-00002-of-00003\.safetensors, model-00003-of-00003\.safetensors; pixtral pull/,
    );
    await Deno.writeTextFile(`${snapshot}/model-00002-of-00003.safetensors`, "");
    await Deno.writeTextFile(`${snapshot}/model-00003-of-00003.safetensors`, "");
    await Deno.writeTextFile(
      `${snapshot}/model.safetensors.index.json`,
      JSON.stringify({ weight_map: { a: "model-00001-of-00003.safetensors", b: "extra.safetensors" } }),
    );
    await assert.rejects(() => resolveHubModel("hf:org/sharded", offline), /lacks extra\.safetensors/);
    await Deno.writeTextFile(`${snapshot}/extra.safetensors`, "");
    assert.equal((await resolveHubModel("hf:org/sharded", offline)).path, snapshot);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});
