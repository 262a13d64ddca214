import { type Command, Option } from "commander";
import { BACKEND_NAMES } from "../../worker/backend_names.js";
import { positiveInt } from "./train.js";

export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description(
      "Pretrain a small ViT on half of the embedded Fashion-MNIST (a stand-in for ImageNet-21k pretraining), " +
        "run InfLoRA, sequential LoRA and a joint upper bound on the other half, and write a report",
    )
    .option("--out <dir>", "output folder (backbone cache, runs, report.md)", "runs/demo")
    .option("--quick", "cut the epochs (CI): a few minutes instead of about ten", false)
    .option("--workers <n>", "number of local workers per run", positiveInt, 2)
    .addOption(
      new Option(
        "--backend <name>",
        "compute backend; wasm by default, which every install has, so the numbers and times match the report",
      )
        .choices([...BACKEND_NAMES])
        .default("wasm"),
    )
    .option("--retrain-backbone", "pretrain the backbone even when a matching cached one exists", false)
    .addHelpText(
      "after",
      `
The backbone is cached in OUT/backbone/ with a record of its recipe, data and SHA-256, and reused while they
match. Runs go to OUT/inflora, OUT/seqlora and OUT/joint (replaced on every demo), the report to
OUT/report.md with OUT/accuracy.svg and .png, the numbers to OUT/summary.json.

Examples:
  $ npm run demo
  $ inflora demo --out runs/demo --workers 2
  $ inflora demo --quick --out /tmp/demo-ci`,
    )
    .action(
      async (
        o: { out: string; quick: boolean; workers: number; backend: string; retrainBackbone: boolean },
        cmd: Command,
      ) => {
        const global = cmd.parent?.opts<{ logFormat?: "json" | "pretty"; logLevel?: string }>() ?? {};
        if (
          process.stdout.isTTY &&
          global.logLevel === undefined &&
          process.env.INFLORA_LOG_LEVEL === undefined
        ) {
          // Bars on a terminal: info lines on stderr would tear them, and the bars carry that information.
          // Local worker processes inherit the environment, so they stay quiet too.
          process.env.INFLORA_LOG_LEVEL = "warn";
          const { configureLogging } = await import("../../common/log.js");
          configureLogging({ format: global.logFormat, level: "warn" });
        }
        const { runDemo } = await import("../../demo/pipeline.js");
        const result = await runDemo({
          out: o.out,
          mode: o.quick ? "quick" : "full",
          workers: o.workers,
          backend: o.backend,
          retrainBackbone: o.retrainBackbone,
          say: (line) => process.stdout.write(`${line}\n`),
        });
        process.stdout.write(
          `\n${result.table}\n\n` +
            `backbone: ${result.backbone.cached ? "cached" : "pretrained"}, its own head ${result.backbone.testAccuracy.toFixed(2)}% ` +
            "on the test split (it stands in for ImageNet-21k pretraining)\n" +
            `report: ${result.report}\nwall time: ${result.seconds.toFixed(0)} s\n`,
        );
      },
    );
}
