#!/usr/bin/env node
/** The `inflora` command: one file per subcommand under cli/commands/. */
import { Command, InvalidArgumentError } from "commander";
import { configureLogging, type LogFormat, log } from "../common/log.js";
import { registerDemo } from "./commands/demo.js";
import { registerEval } from "./commands/eval.js";
import { registerExport } from "./commands/export.js";
import { registerTrain } from "./commands/train.js";
import { registerWatch } from "./commands/watch.js";
import { registerWeights } from "./commands/weights.js";
import { registerWorker } from "./commands/worker.js";

/** Exit codes: 0 success, 1 unexpected failure, 2 usage or config error, 3 bad input data/weights. */
export const EXIT = { ok: 0, failure: 1, usage: 2, input: 3 } as const;

const program = new Command();
program
  .name("inflora")
  .description("Distributed continual-learning trainer: InfLoRA for Vision Transformers on TensorFlow.js")
  .option("--log-format <format>", "json | pretty (default: pretty on a terminal, json otherwise)")
  .option("--log-level <level>", "trace | debug | info | warn | error (default: $INFLORA_LOG_LEVEL or info)")
  .hook("preAction", (cmd) => {
    const o = cmd.opts<{ logFormat?: LogFormat; logLevel?: string }>();
    if (o.logFormat && o.logFormat !== "json" && o.logFormat !== "pretty") {
      throw new InvalidArgumentError(`--log-format must be json or pretty, got ${o.logFormat}`);
    }
    configureLogging({ format: o.logFormat, level: o.logLevel });
  });

// Commander's own usage errors (unknown option, missing argument) exit like ours: code 2.
program.exitOverride((err) => {
  if (err.exitCode === 0) process.exit(0);
  process.exit(EXIT.usage);
});

registerTrain(program);
registerDemo(program);
registerExport(program);
registerEval(program);
registerWeights(program);
registerWorker(program);
registerWatch(program);

/** Errors the user fixes by changing the command or config (exit 2) or the input files (exit 3). */
const USAGE_ERRORS = new Set([
  "ConfigError",
  "InvalidArgumentError",
  "RunDirError",
  "PlanError",
  "BackendError",
  "WatchError",
]);
const INPUT_ERRORS = new Set([
  "SafetensorsError",
  "NpyError",
  "ZipError",
  "PickleError",
  "PthError",
  "WeightsError",
  "CheckpointConversionError",
  "DataError",
  "CheckpointError",
  "DamagedFileError",
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
