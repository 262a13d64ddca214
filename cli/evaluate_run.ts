/**
 * `inflora eval`: re-evaluates a run's checkpoint on the run's test data (or another folder with the same
 * classes) through the same worker code the run used, and compares the result with the run's own
 * metrics. Also the reader of a run directory that `inflora export` shares.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import type { RunConfig } from "../common/config.js";
import { openDatasetIndex } from "../common/data/open_index.js";
import type { DataOptions } from "../common/data/options.js";
import { PROTOCOL_VERSION } from "../common/protocol.js";
import type { VitConfig } from "../common/vit_config.js";
import { checkpointName, readCheckpoint } from "../coordinator/checkpoint.js";
import { type Evaluation, evaluateLogits, type RunMetrics, runMetrics } from "../coordinator/evaluation.js";
import { evaluateInShards } from "../coordinator/passes.js";
import { buildPlan, type RunPlan, testSamples } from "../coordinator/plan.js";
import { RunDir } from "../coordinator/run_dir.js";
import { selectBackend } from "../worker/backend.js";
import { WorkerEngine } from "../worker/engine.js";
import { RunDirError } from "./train.js";

/** What `run.json` records that evaluation and export need (paths already absolute). */
export interface RunInfo {
  readonly dir: string;
  readonly runId: string;
  readonly seed: number;
  readonly config: Omit<RunConfig, "file" | "configDir" | "sha256" | "source">;
  readonly classOrder: number[];
  readonly classNames: string[];
  readonly taskSizes: number[];
  readonly model: VitConfig;
  readonly weightsSha256: string;
}

export function readRunInfo(runDir: string): RunInfo {
  const file = new RunDir(runDir).runJson;
  if (!existsSync(file)) {
    throw new RunDirError(`${runDir}: no run.json; --run must be a run directory written by inflora train`);
  }
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new RunDirError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  for (const key of ["config", "class_order", "task_sizes", "model", "weights_sha256", "seed"]) {
    if (json[key] === undefined) throw new RunDirError(`${file}: key "${key}" is missing`);
  }
  return {
    dir: runDir,
    runId: String(json.run_id ?? ""),
    seed: json.seed as number,
    config: json.config as RunInfo["config"],
    classOrder: json.class_order as number[],
    classNames: (json.class_names as string[] | undefined) ?? [],
    taskSizes: json.task_sizes as number[],
    model: json.model as VitConfig,
    weightsSha256: json.weights_sha256 as string,
  };
}

/** `task` when its checkpoint exists, the newest finished task when it is undefined. */
export function resolveTask(runDir: string, task: number | undefined): number {
  const done = new RunDir(runDir).finishedTasks();
  if (done.length === 0) throw new RunDirError(`${runDir}: no checkpoints/task-XX.safetensors yet`);
  if (task === undefined) return done[done.length - 1];
  if (!done.includes(task)) {
    throw new RunDirError(
      `${runDir}: no checkpoint for task ${task} (${checkpointName(task)}); finished tasks: ${done.join(", ")}`,
    );
  }
  return task;
}

export function checkpointFile(runDir: string, task: number): string {
  return new RunDir(runDir).checkpoint(task);
}

export interface EvaluateOptions {
  readonly run: string;
  readonly task?: number;
  /** Another dataset folder with the same classes; default: the run's. */
  readonly dataPath?: string;
  readonly backend?: string;
  /** After each evaluated task (progress). */
  readonly onTask?: (task: number, of: number) => void;
}

export interface TaskEvaluation {
  readonly task: number;
  readonly evaluation: Evaluation;
  readonly labels: Int32Array;
  readonly logits: Float32Array;
}

export interface EvaluateReport {
  readonly task: number;
  readonly dataPath: string;
  readonly tasks: TaskEvaluation[];
  readonly metrics: RunMetrics;
  /** Differences from the run's metrics.json (empty when they agree), or undefined when it has none. */
  readonly differences?: string[];
}

export interface RunData {
  readonly run: RunInfo;
  readonly data: DataOptions;
  readonly plan: RunPlan;
}

/**
 * A run's data options and task plan rebuilt from its run.json (on `dataPath` when given), checked to give
 * the run's own class order and class names.
 */
export async function openRunData(runDir: string, dataPath?: string): Promise<RunData> {
  const run = readRunInfo(runDir);
  const cfg = run.config;
  const data: DataOptions = {
    dataset: cfg.dataset,
    dataPath: dataPath ? path.resolve(dataPath) : cfg.data_path,
    imageSize: run.model.imgSize,
    mean: cfg.normalize_mean,
    std: cfg.normalize_std,
    onBadImage: cfg.on_bad_image,
    manifestPath: new RunDir(runDir).splitManifest,
  };
  const index = await openDatasetIndex(data);
  const plan = buildPlan(index, {
    shuffle: cfg.shuffle,
    seed: run.seed,
    initCls: cfg.init_cls,
    increment: cfg.increment,
    totalSessions: cfg.total_sessions,
    source: new RunDir(runDir).runJson,
  });
  if (JSON.stringify(plan.classOrder) !== JSON.stringify(run.classOrder)) {
    throw new RunDirError(`${runDir}: the class order rebuilt from ${data.dataPath} differs from run.json's`);
  }
  const names = plan.classOrder.map((c) => index.classNames[c]);
  if (run.classNames.length > 0 && JSON.stringify(names) !== JSON.stringify(run.classNames)) {
    throw new RunDirError(
      `${data.dataPath}: its classes [${names.slice(0, 5).join(", ")}, …] differ from the run's ` +
        `[${run.classNames.slice(0, 5).join(", ")}, …]; --data-path must hold the same classes`,
    );
  }
  return { run, data, plan };
}

/**
 * Evaluates the state after every task s ≤ t: adapters from checkpoint t (frozen once trained), heads from
 * checkpoint s where it exists, since classifier alignment retrains all heads after every later task.
 */
export async function evaluateRun(opts: EvaluateOptions): Promise<EvaluateReport> {
  const { run, data, plan } = await openRunData(opts.run, opts.dataPath);
  const task = resolveTask(opts.run, opts.task);
  const cfg = run.config;
  const dataPath = data.dataPath;
  const ck = await readCheckpoint(checkpointFile(opts.run, task), {
    depth: run.model.depth,
    D: run.model.embedDim,
  });
  const headsAfter = async (s: number) => {
    const file = checkpointFile(opts.run, s);
    if (s === task || !existsSync(file)) return ck.heads;
    return (await readCheckpoint(file, { depth: run.model.depth, D: run.model.embedDim })).heads;
  };
  await selectBackend(opts.backend);
  const engine = new WorkerEngine({ backend: opts.backend, name: "eval" });
  const tasks: TaskEvaluation[] = [];
  try {
    await engine.setup({
      runId: `eval:${run.runId}`,
      protocolVersion: PROTOCOL_VERSION,
      weightsPath: cfg.weights,
      weightsFingerprint: run.weightsSha256,
      model: run.model,
      data,
    });
    for (let s = 0; s <= task; s++) {
      const version = s + 1;
      await engine.setTaskState({
        version,
        task: s,
        finished: ck.adapters.slice(0, s + 1).map((a, t) => ({ task: t, ...a })),
        heads: (await headsAfter(s)).slice(0, s + 1).map((h) => ({ ...h })),
      });
      const seen = plan.tasks.slice(0, s + 1);
      const { samples, labels } = testSamples(plan, seen[s].classEnd);
      const logits = await evaluateInShards(cfg, samples, seen[s].classEnd, (shards) =>
        engine.evaluate({ stateVersion: version, shards }),
      );
      tasks.push({ task: s, evaluation: evaluateLogits(logits, labels, seen), labels, logits });
      opts.onTask?.(s, task);
    }
  } finally {
    await engine.close();
  }
  const metrics = runMetrics(
    tasks.map((t) => t.evaluation.cil),
    tasks.map((t) => t.evaluation.withTask),
    tasks.map((t) => t.evaluation.perTask),
  );
  return { task, dataPath, tasks, metrics, differences: compareWithRun(opts.run, metrics) };
}

/** Lines naming every figure that differs from RUN_DIR/metrics.json for the evaluated tasks. */
function compareWithRun(runDir: string, m: RunMetrics): string[] | undefined {
  const dir = new RunDir(runDir);
  if (!existsSync(dir.metricsJson)) return undefined;
  const own = dir.readMetrics();
  const out: string[] = [];
  m.curve.cil.forEach((v, t) => {
    if (own.curve.cil[t] !== v) out.push(`A_${t}: ${v} here, ${own.curve.cil[t]} in the run`);
    if (own.curve.with_task[t] !== m.curve.with_task[t]) {
      out.push(
        `task-aware accuracy after task ${t}: ${m.curve.with_task[t]} here, ${own.curve.with_task[t]} in the run`,
      );
    }
    const row = own.accuracy_matrix[t] ?? [];
    if (JSON.stringify(row) !== JSON.stringify(m.accuracy_matrix[t])) {
      out.push(
        `accuracy row ${t}: [${m.accuracy_matrix[t].join(", ")}] here, [${row.join(", ")}] in the run`,
      );
    }
  });
  return out;
}
