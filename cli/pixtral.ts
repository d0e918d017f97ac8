/**
 * The `pixtral` command: `deno task pixtral <command> [flags]`. One entry point for the server and the tools;
 * each subcommand lives in its own module here.
 */
import { logToStderr } from "../runtime/log.ts";
import { UsageError } from "./args.ts";
import { batch, usage as batchUsage } from "./batch.ts";
import { generate, usage as generateUsage } from "./generate.ts";
import { logits, usage as logitsUsage } from "./logits.ts";
import { plan, usage as planUsage } from "./plan.ts";
import { pull, usage as pullUsage } from "./pull.ts";
import { preprocess, usage as preprocessUsage } from "./preprocess.ts";
import { serve, usage as serveUsage } from "./serve.ts";
import { detokenize, detokenizeUsage, tokenize, tokenizeUsage } from "./tokenize.ts";

interface Command {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<void>;
}

const COMMANDS: Record<string, Command> = {
  serve: { summary: "start the HTTP server", usage: serveUsage, run: serve },
  batch: {
    summary: "run a file of requests (OpenAI's batch format) through the model, without a server",
    usage: batchUsage,
    run: batch,
  },
  pull: {
    summary: "download a model from the Hugging Face hub into the local cache",
    usage: pullUsage,
    run: pull,
  },
  plan: {
    summary: "print the GPU memory plan for a model (works from a params.json alone)",
    usage: planUsage,
    run: plan,
  },
  tokenize: { summary: "print the token ids of a text (Tekken)", usage: tokenizeUsage, run: tokenize },
  detokenize: { summary: "print the text of token ids (Tekken)", usage: detokenizeUsage, run: detokenize },
  preprocess: { summary: "run one image through the patcher", usage: preprocessUsage, run: preprocess },
  logits: { summary: "write the logits of a token sequence with images", usage: logitsUsage, run: logits },
  generate: { summary: "print the answer to one prompt (with images)", usage: generateUsage, run: generate },
};

function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  const lines = Object.entries(COMMANDS).map(([name, cmd]) => `  ${name.padEnd(width)}  ${cmd.summary}`);
  return `usage: pixtral <command> [flags]\n\ncommands:\n${lines.join("\n")}\n\n` +
    "pixtral <command> --help shows a command's flags.";
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(help());
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`pixtral: unknown command "${name}"\n\n${help()}`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(command.usage);
    return 0;
  }
  // The server's stdout is its log; the tools' is their result.
  if (name !== "serve") logToStderr();
  try {
    await command.run(rest);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      // The mistake alone, not buried under every flag.
      console.error(`pixtral ${name}: ${err.message}\n(pixtral ${name} --help lists the flags)`);
      return 2;
    }
    console.error(`pixtral ${name}: ${err instanceof Error ? err.message : err}`);
    if (Deno.env.get("PIXTRAL_DEBUG")) console.error(err);
    return 1;
  }
}

Deno.exit(await main(Deno.args));
