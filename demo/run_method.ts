/** One method of the demo through the ordinary training harness, with a progress bar over its steps. */
import { rm } from "node:fs/promises";
import { train } from "../cli/train.js";
import { loadConfig, taskHyper } from "../common/config.js";
import type { RunMetrics } from "../coordinator/evaluation.js";
import type { RunEvent } from "../coordinator/events.js";
import type { DemoMethod } from "./methods.js";
import type { Progress } from "./progress.js";

export interface MethodResult {
  readonly method: DemoMethod;
  readonly runDir: string;
  readonly config: string;
  readonly metrics: RunMetrics;
  readonly seconds: number;
}

export interface RunMethodOptions {
  readonly workers: number;
  readonly backend?: string;
  readonly progress: Progress;
}

/** Runs `config` into a fresh `runDir` (an earlier run of the demo there is replaced). */
export async function runMethod(
  method: DemoMethod,
  config: string,
  runDir: string,
  opts: RunMethodOptions,
): Promise<MethodResult> {
  await rm(runDir, { recursive: true, force: true });
  const cfg = loadConfig(config);
  const started = performance.now();
  let bar: ReturnType<Progress["start"]> | undefined;
  let done = 0;
  let tasks = 0;
  let where = "";
  let lastAcc = "";
  const results = await train({
    config,
    out: runDir,
    workers: opts.workers,
    backend: opts.backend,
    resume: false,
    onTrainer: (trainer) => {
      const plan = trainer.runPlan;
      tasks = plan.tasks.length;
      const total = plan.tasks.reduce(
        (n, t) => n + taskHyper(cfg, t.task).epochs * Math.ceil(t.train.length / cfg.batch_size),
        0,
      );
      bar = opts.progress.start(method.label, total);
      trainer.eventLog.addSink((e: RunEvent) => {
        if (e.event === "phase_started") {
          where = `task ${Number(e.task) + 1}/${tasks} ${String(e.phase).toLowerCase()}`;
          bar?.update(done, `${where}${lastAcc}`);
        } else if (e.event === "task_finished") {
          lastAcc = ` · A_${Number(e.task) + 1} ${Number(e.cil).toFixed(2)}%`;
        }
      });
    },
    onStep: (s) => {
      done++;
      bar?.update(done, `${where} epoch ${s.epoch + 1} loss ${s.loss.toFixed(3)}${lastAcc}`);
    },
  });
  const metrics = [...results.values()][0];
  bar?.stop(`final ${metrics.final_accuracy.toFixed(2)}%, average ${metrics.average_accuracy.toFixed(2)}%`);
  return { method, runDir, config, metrics, seconds: (performance.now() - started) / 1000 };
}
