/**
 * What constrained decoding costs the engine's thread per generated token, over Pixtral's 131072-token Tekken
 * vocabulary: the allowed-token mask (xgrammar's, then the control-character filter) and taking the token, along
 * texts that follow a schema and a JSON object. Against xgrammar's own mask call on the same states, in the same
 * process: the ratio is our overhead; the absolute time is to be read against a decode step (a readback alone
 * costs 10 ms in Deno's WebGPU). The engine asks the grammar worker (its own thread) for each mask: the same
 * per token through it, a message there and back. Also the one-time costs: the vocabulary for the grammar
 * engine, a schema.
 *
 *     deno task bench:constraints
 */
import { compileFormat, XGrammarConstraints } from "../runtime/grammar/constraints.ts";
import { vocabulary } from "../runtime/grammar/vocabulary.ts";
import {
  JSON_OBJECT,
  jsonSchemaFormat,
  type OutputFormat,
  toolCallsFormat,
} from "../runtime/grammar/format.ts";
import { loadTokenizer } from "../runtime/tokenizer/mod.ts";
import { GrammarWorker } from "../runtime/grammar/worker.ts";
import { xgrammar } from "../runtime/grammar/xgrammar.ts";

const FIXTURES = new URL(
  Deno.env.get("PIXTRAL_FIXTURES") ?? "../../shared/fixtures/tiny-pixtral/",
  import.meta.url,
);
const tokenizer = await loadTokenizer(new URL("tekken-full.json", FIXTURES).pathname, { cache: false });
const EOS = tokenizer.special("</s>");

const INVOICE = {
  type: "object",
  properties: {
    vendor: { type: "string" },
    date: { type: "string", format: "date" },
    total: { type: "number" },
    lines: {
      type: "array",
      items: {
        type: "object",
        properties: { item: { type: "string" }, qty: { type: "integer", minimum: 1 } },
        required: ["item", "qty"],
      },
    },
  },
  required: ["vendor", "date", "total", "lines"],
};
/** Readings with numeric bounds (pydantic's confloat and conint), which the masks keep digit by digit. */
const READINGS = {
  type: "object",
  properties: {
    station: { type: "string", maxLength: 40 },
    readings: {
      type: "array",
      items: {
        type: "object",
        properties: {
          celsius: { type: "number", minimum: -90, maximum: 60 },
          humidity: { type: "number", minimum: 0, maximum: 1 },
          hour: { type: "integer", minimum: 0, maximum: 23 },
        },
        required: ["celsius", "humidity", "hour"],
      },
    },
  },
  required: ["station", "readings"],
};
/** pydantic's set[str] and set[int]: the masks keep the items apart. */
const SETS = {
  type: "object",
  properties: {
    tags: { type: "array", items: { type: "string" }, uniqueItems: true },
    ids: { type: "array", items: { type: "integer" }, uniqueItems: true },
  },
  required: ["tags", "ids"],
};
/** A forced call over 16 functions of four parameters each, as agent frameworks send them. */
const TOOLS = toolCallsFormat(
  Array.from({ length: 16 }, (_, i) => ({
    name: `tool_${i}`,
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", description: "a city" },
        unit: { enum: ["c", "f"] },
        days: { type: "integer" },
        tags: { type: "array", items: { type: "string" } },
      },
      required: ["city"],
    },
  })),
  false,
);
const TEXTS: [string, OutputFormat, string][] = [
  [
    "invoice schema",
    jsonSchemaFormat(INVOICE),
    JSON.stringify(
      {
        vendor: "Müller & Söhne GmbH, Berlin",
        date: "2024-03-15",
        total: 1234.5,
        lines: [{ item: "Blue widgets, large", qty: 12 }, { item: "Shipping", qty: 1 }],
      },
      null,
      2,
    ),
  ],
  [
    "numeric bounds",
    jsonSchemaFormat(READINGS),
    JSON.stringify(
      {
        station: "Zugspitze",
        readings: [
          { celsius: -12.75, humidity: 0.83, hour: 6 },
          { celsius: -3.5, humidity: 0.6125, hour: 14 },
          { celsius: -8, humidity: 1, hour: 22 },
        ],
      },
      null,
      2,
    ),
  ],
  [
    "uniqueItems",
    jsonSchemaFormat(SETS),
    JSON.stringify(
      {
        tags: ["sofa", "cat", "sofa cushion", "window", "red", "sunlight", "plant", "rug"],
        ids: [3, 14, 15, 92, 65, 35, 8, 97, 932, 38],
      },
      null,
      2,
    ),
  ],
  [
    "tool calls (16 functions)",
    TOOLS,
    '[{"name": "tool_11", "arguments": {"city": "Zürich", "unit": "c", "days": 3, "tags": ["rain", "wind"]}}]',
  ],
  [
    "json_object",
    JSON_OBJECT,
    JSON.stringify({
      caption: "A cat sleeping on a red sofa next to a window",
      objects: ["cat", "sofa"],
      n: 2,
    }),
  ],
];

let t = performance.now();
const constraints = XGrammarConstraints.forTokenizer(tokenizer, tokenizer.vocabSize);
(await constraints.constrain(JSON_OBJECT, [EOS])).release();
const readyMs = performance.now() - t;

// The peer: xgrammar's own matcher over the same vocabulary, without our filter.
const xg = await xgrammar();
const info = await xg.TokenizerInfo.createTokenizerInfo(
  vocabulary(tokenizer, tokenizer.vocabSize).tokens,
  "byte_level",
  false,
  tokenizer.vocabSize,
);
const compiler = await xg.GrammarCompiler.createGrammarCompiler(info, false);
const worker = new GrammarWorker(vocabulary(tokenizer, tokenizer.vocabSize));

const rows: string[] = [];
for (const [name, format, text] of TEXTS) {
  t = performance.now();
  (await constraints.constrain(format, [EOS])).release();
  const compileMs = performance.now() - t;
  const compiled = await compileFormat(compiler, format);
  const ids = [...tokenizer.encode(text), EOS];
  const rounds = 20;
  let ours = 0, peer = 0, threaded = 0;
  for (let r = 0; r < rounds; r++) {
    const constraint = await constraints.constrain(format, [EOS]);
    const remote = await worker.constrain(format, [EOS]);
    const matcher = await xg.GrammarMatcher.createGrammarMatcher(compiled, [EOS]);
    for (const id of ids) {
      let start = performance.now();
      await constraint.allowed();
      if (!constraint.accept(id)) throw new Error(`${name}: token ${id} refused`);
      ours += performance.now() - start;
      start = performance.now();
      await remote.allowed();
      if (!remote.accept(id)) throw new Error(`${name}: token ${id} refused by the worker`);
      threaded += performance.now() - start;
      start = performance.now();
      await matcher.getNextTokenBitmask();
      matcher.acceptToken(id);
      peer += performance.now() - start;
    }
    constraint.release();
    remote.release();
    matcher.dispose();
  }
  compiled.dispose();
  const per = (ms: number) => ms / rounds / ids.length;
  rows.push(
    `| ${name} | ${ids.length} | ${compileMs.toFixed(0)} | ${per(ours).toFixed(3)} | ${
      per(peer).toFixed(3)
    } | ` +
      `${(ours / peer).toFixed(2)} | ${per(threaded).toFixed(3)} |`,
  );
}
console.log(`vocabulary for the grammar engine: ${readyMs.toFixed(0)} ms (once per engine)\n`);
console.log(
  "| format | tokens | first compile ms | ms per token: ours | xgrammar alone | ratio | ours via the worker |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- |");
for (const row of rows) console.log(row);
worker.close();
