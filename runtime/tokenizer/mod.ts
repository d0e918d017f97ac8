/** The Tekken tokenizer: `loadTokenizer(path)`, then `encode`, `decode`, `special`, `decoder()`. */
export { cachePath, type LoadOptions, loadTokenizer } from "./load.ts";
export { type GgufVocab, gpt2TokenBytes, gpt2TokenString, partsFromGguf } from "./gguf.ts";
export { StreamDecoder } from "./stream.ts";
export {
  type DecodeOptions,
  type ImageConfig,
  TEKKEN_PATTERN,
  Tokenizer,
  TokenizerError,
  type TokenizerParts,
} from "./tokenizer.ts";
