/**
 * From a located model to its config and weights. Opening parses headers only (safetensors JSON headers, GGUF
 * metadata and tensor tables) and checks every tensor against the config; no tensor data is read here.
 */
import {
  checkHfQuantization,
  ConfigError,
  configFromGguf,
  type ModelConfig,
  parseHfConfig,
  parseParamsJson,
} from "./config.ts";
import type { ModelLocation } from "./locate.ts";
import { WeightFileError } from "./weights/errors.ts";
import { GgufFile } from "./weights/gguf.ts";
import { quantizationHint } from "./weights/quantization_config.ts";
import { joinBnb } from "./weights/bnb.ts";
import { joinScaled } from "./weights/scaled.ts";
import type { SafetensorsFile } from "./weights/safetensors.ts";
import { createWeightSource, openSafetensors, type WeightSource } from "./weights/source.ts";

export interface OpenedModel {
  location: ModelLocation;
  config: ModelConfig;
  weights: WeightSource;
  /** The GGUF headers (metadata such as tokenizer.ggml.tokens) when the layout is gguf. */
  gguf?: { text: GgufFile; mmproj?: GgufFile };
}

async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new ConfigError(
      path,
      err instanceof Deno.errors.NotFound ? "no such file" : (err as Error).message,
    );
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ConfigError(path, `not valid JSON (${(err as Error).message})`);
  }
}

async function readJsonIfPresent(path: string): Promise<unknown> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch {
    return undefined;
  }
}

const HF_Q_PROJ = /^(?:language_model\.model|model\.language_model)\.layers\.0\.self_attn\.q_proj\.weight$/;

async function hfConfig(
  location: ModelLocation,
  json: unknown,
  files: SafetensorsFile[],
): Promise<ModelConfig> {
  const q = files.flatMap((f) => [...f.tensors.values()]).find((t) => HF_Q_PROJ.test(t.name));
  return parseHfConfig(json, location.configFile, {
    qProjRows: q?.shape[0],
    tokenizerConfig: await readJsonIfPresent(`${location.dir}/tokenizer_config.json`),
  });
}

/**
 * A Hugging Face folder's weight files, each quantized layer's codes and scales joined into one tensor (bnb.ts,
 * scaled.ts), so that the weights are checked under the names and shapes of an unquantized checkpoint.
 */
async function hfFiles(location: ModelLocation, json: unknown): Promise<SafetensorsFile[]> {
  const files = await openSafetensors(location.weightFiles);
  try {
    await joinBnb(files);
    await joinScaled(
      files,
      quantizationHint((json as { quantization_config?: unknown }).quantization_config),
    );
  } catch (err) {
    files.forEach((f) => f.close());
    throw err;
  }
  return files;
}

/** A Hugging Face folder's config.json, its quantization checked before any weight file is parsed. */
async function hfJson(location: ModelLocation): Promise<unknown> {
  const json = await readJson(location.configFile);
  checkHfQuantization(json, location.configFile);
  return json;
}

/** The config alone: needs no weight files (except a GGUF, whose header is its config). */
export async function loadConfig(location: ModelLocation): Promise<ModelConfig> {
  switch (location.layout) {
    case "mistral":
      return parseParamsJson(await readJson(location.configFile), location.configFile);
    case "hf": {
      const json = await hfJson(location);
      const files = location.weightFiles.length ? await hfFiles(location, json) : [];
      try {
        return await hfConfig(location, json, files);
      } finally {
        files.forEach((f) => f.close());
      }
    }
    case "gguf": {
      const { text, mmproj } = await openGguf(location);
      text.close();
      mmproj?.close();
      return configFromGguf(text, mmproj);
    }
  }
}

async function openGguf(location: ModelLocation): Promise<{ text: GgufFile; mmproj?: GgufFile }> {
  const text = await GgufFile.open(location.configFile);
  try {
    return { text, mmproj: location.mmproj ? await GgufFile.open(location.mmproj) : undefined };
  } catch (err) {
    text.close();
    throw err;
  }
}

/** Config and weights, every tensor checked against the config. The caller closes `weights`. */
export async function openModel(location: ModelLocation): Promise<OpenedModel> {
  if (location.weightFiles.length === 0) {
    throw new WeightFileError(
      "missing",
      location.dir,
      `no weight files beside ${location.configFile} (expected ${
        location.layout === "mistral"
          ? "consolidated.safetensors"
          : "model.safetensors or model.safetensors.index.json"
      })`,
    );
  }
  switch (location.layout) {
    case "mistral": {
      const config = parseParamsJson(await readJson(location.configFile), location.configFile);
      return {
        location,
        config,
        weights: createWeightSource("mistral", config, await openSafetensors(location.weightFiles)),
      };
    }
    case "hf": {
      const json = await hfJson(location);
      const files = await hfFiles(location, json);
      let config: ModelConfig;
      try {
        config = await hfConfig(location, json, files);
      } catch (err) {
        files.forEach((f) => f.close());
        throw err;
      }
      return { location, config, weights: createWeightSource("hf", config, files) };
    }
    case "gguf": {
      const gguf = await openGguf(location);
      const files = gguf.mmproj ? [gguf.text, gguf.mmproj] : [gguf.text];
      let config: ModelConfig;
      try {
        config = configFromGguf(gguf.text, gguf.mmproj);
      } catch (err) {
        files.forEach((f) => f.close());
        throw err;
      }
      return { location, config, weights: createWeightSource("gguf", config, files), gguf };
    }
  }
}
