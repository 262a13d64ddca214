import { type Command, InvalidArgumentError, Option } from "commander";
import { log } from "../../common/log.js";
import { BACKEND_NAMES } from "../../worker/backend_names.js";

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("expected a positive integer");
  return n;
}

export function registerTrain(program: Command): void {
  program
    .command("train")
    .description("Run InfLoRA over every task of a config and write the run directory")
    .requiredOption("--config <file>", "run config (JSON; the reference's keys plus ours)")
    .requiredOption("--out <dir>", "run directory (checkpoints, predictions, metrics.json, events.jsonl)")
    .option("--workers <n>", "number of local workers", positiveInt, 1)
    .addOption(new Option("--backend <name>", "compute backend (default: first available)").choices([...BACKEND_NAMES]))
    .option("--resume", "continue after the last finished task (or mid-task) in --out", false)
    .addHelpText(
      "after",
      `
Examples:
  $ inflora train --config configs/fixture_tiny.json --out runs/fixture
  $ inflora train --config configs/cifar100_inflora.json --out runs/c100 --backend wasm
  $ inflora train --config configs/cifar100_inflora.json --out runs/c100 --resume`,
    )
    .action(async (o: { config: string; out: string; workers: number; backend?: string; resume: boolean }) => {
      const { train } = await import("../train.js");
      const results = await train(o);
      for (const [seed, m] of results) {
        log.info({ seed, final: m.final_accuracy, average: m.average_accuracy, forgetting: m.forgetting }, "run finished");
        process.stdout.write(
          `seed ${seed}: final ${m.final_accuracy.toFixed(2)}  average ${m.average_accuracy.toFixed(2)}  ` +
            `forgetting ${m.forgetting === null ? "-" : m.forgetting.toFixed(2)}\n`,
        );
      }
    });
}
