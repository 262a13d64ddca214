#!/usr/bin/env node
/** The `inflora` command. */
import { Command, InvalidArgumentError, Option } from "commander";
import { configureLogging, type LogFormat, log } from "../common/log.js";
import { BACKEND_NAMES } from "../worker/backend_names.js";

/** Exit codes: 0 success, 1 unexpected failure, 2 usage or config error, 3 bad input data/weights. */
export const EXIT = { ok: 0, failure: 1, usage: 2, input: 3 } as const;

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("expected a positive integer");
  return n;
}

const program = new Command();
program
  .name("inflora")
  .description("Distributed continual-learning trainer: InfLoRA for Vision Transformers on TensorFlow.js")
  .option("--log-format <format>", "json | pretty (default: pretty on a terminal, json otherwise)")
  .option("--log-level <level>", "trace | debug | info | warn | error", "info")
  .hook("preAction", (cmd) => {
    const o = cmd.opts<{ logFormat?: LogFormat; logLevel: string }>();
    if (o.logFormat && o.logFormat !== "json" && o.logFormat !== "pretty") {
      throw new InvalidArgumentError(`--log-format must be json or pretty, got ${o.logFormat}`);
    }
    configureLogging({ format: o.logFormat, level: o.logLevel });
  });

program
  .command("train")
  .description("Run InfLoRA over every task of a config and write the run directory")
  .requiredOption("--config <file>", "run config (JSON; the reference's keys plus ours)")
  .requiredOption("--out <dir>", "run directory (checkpoints, predictions, metrics.json, events.jsonl)")
  .option("--workers <n>", "number of local workers", positiveInt, 1)
  .addOption(
    new Option("--backend <name>", "compute backend (default: first available)").choices([...BACKEND_NAMES]),
  )
  .option("--resume", "continue after the last finished task in --out", false)
  .addHelpText(
    "after",
    `
Examples:
  $ inflora train --config configs/demo_inflora.json --out runs/demo
  $ inflora train --config configs/cifar100_inflora.json --out runs/c100 --backend wasm
  $ inflora train --config configs/cifar100_inflora.json --out runs/c100 --resume`,
  )
  .action(async (o: { config: string; out: string; workers: number; backend?: string; resume: boolean }) => {
    const { train } = await import("./train.js");
    const results = await train(o);
    for (const [seed, m] of results) {
      log.info(
        { seed, final: m.final_accuracy, average: m.average_accuracy, forgetting: m.forgetting },
        "run finished",
      );
      process.stdout.write(
        `seed ${seed}: final ${m.final_accuracy.toFixed(2)}  average ${m.average_accuracy.toFixed(2)}  ` +
          `forgetting ${m.forgetting === null ? "-" : m.forgetting.toFixed(2)}\n`,
      );
    }
  });

/** Errors the user fixes by changing the command or config (exit 2) or the input files (exit 3). */
const USAGE_ERRORS = new Set([
  "ConfigError",
  "InvalidArgumentError",
  "RunDirError",
  "PlanError",
  "BackendError",
]);
const INPUT_ERRORS = new Set([
  "SafetensorsError",
  "NpyError",
  "WeightsError",
  "CheckpointConversionError",
  "DataError",
  "CheckpointError",
  "WorkerSetupError",
]);

program.parseAsync(process.argv).then(
  () => process.exit(EXIT.ok),
  (err: unknown) => {
    const name = (err as Error)?.name ?? "";
    const code = USAGE_ERRORS.has(name) ? EXIT.usage : INPUT_ERRORS.has(name) ? EXIT.input : undefined;
    if (code !== undefined) {
      process.stderr.write(`inflora: ${(err as Error).message}\n`);
      process.exit(code);
    }
    log.error({ err }, "inflora failed");
    process.exit(EXIT.failure);
  },
);
