import type { Command } from "commander";
import { Option } from "commander";
import { BACKEND_NAMES } from "../../worker/backend_names.js";
import { nonNegativeInt } from "./export.js";

export function registerEval(program: Command): void {
  program
    .command("eval")
    .description("Evaluate a run's checkpoint on its test data (or another folder with the same classes)")
    .requiredOption("--run <dir>", "run directory written by inflora train")
    .option(
      "--task <t>",
      "evaluate the state after task t (0-based; default: the last finished task)",
      nonNegativeInt,
    )
    .option("--data-path <dir>", "dataset folder with the same classes (default: the run's data_path)")
    .addOption(
      new Option("--backend <name>", "compute backend (default: first available)").choices([
        ...BACKEND_NAMES,
      ]),
    )
    .option("--json", "print the result as JSON", false)
    .addHelpText(
      "after",
      `
Recomputes the class-incremental accuracy after every task s ≤ t from checkpoint t, with the heads of
checkpoint s where it exists (the accuracy-matrix rows and the A_s curves), and compares them with the
run's metrics.json when it evaluates the run's own data.

Examples:
  $ inflora eval --run runs/demo/inflora
  $ inflora eval --run runs/c100 --task 4
  $ inflora eval --run runs/c100 --data-path /data/cifar100-copy --json`,
    )
    .action(async (o: { run: string; task?: number; dataPath?: string; backend?: string; json: boolean }) => {
      const { evaluateRun } = await import("../evaluate_run.js");
      const r = await evaluateRun(o);
      const sameData = o.dataPath === undefined;
      if (o.json) {
        process.stdout.write(
          `${JSON.stringify({ task: r.task, data_path: r.dataPath, ...r.metrics, differences: sameData ? r.differences : undefined }, null, 1)}\n`,
        );
        return;
      }
      const lines = [`${o.run}: state after task ${r.task}, test data ${r.dataPath}`, ""];
      lines.push("after task  A_t %   task-aware %  accuracy row (per task, %)");
      for (const t of r.tasks) {
        const e = t.evaluation;
        lines.push(
          `${String(t.task).padStart(10)}  ${e.cil.toFixed(2).padStart(6)}  ${e.withTask.toFixed(2).padStart(12)}  [${e.perTask.map((v) => v.toFixed(2)).join(", ")}]`,
        );
      }
      const m = r.metrics;
      const f = (x: number | null) => (x === null ? "-" : x.toFixed(2));
      lines.push(
        "",
        `final ${f(m.final_accuracy)}  average ${f(m.average_accuracy)}  forgetting ${f(m.forgetting)}  bwt ${f(m.bwt)}`,
      );
      if (sameData && r.differences !== undefined) {
        lines.push(
          r.differences.length === 0
            ? "matches the run's metrics.json"
            : `differs from the run's metrics.json:\n  ${r.differences.join("\n  ")}`,
        );
      }
      process.stdout.write(`${lines.join("\n")}\n`);
    });
}
