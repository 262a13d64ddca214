/**
 * The coordinator's Prometheus metrics. Most are derived from the run's events (`eventSink`, registered with
 * `EventLog.addSink`), so the event log stays the one source of truth and a metric can never disagree with
 * events.jsonl; the few things events do not carry (per-step timing, reduce and SVD time, basis widths) have
 * explicit `observe*` calls. Accuracies are exported as ratios (percent / 100), durations in seconds.
 */
import { readFileSync } from "node:fs";
import { Counter, Gauge, Histogram, type Metric, Registry } from "prom-client";
import {
  InfoMetric,
  METRIC_PREFIX as P,
  registerProcessMetrics,
  registerTfjsMemoryMetrics,
} from "../common/metrics_runtime.js";
import type { CovarianceResult, TrainStepResult } from "../common/protocol.js";
import { type RunMetrics, runMetrics } from "./evaluation.js";
import type { EventName, RunEvent } from "./events.js";
import { PHASES as TASK_PHASES } from "./methods.js";

export type AllReduceKind = "gradients" | "covariance" | "class_stats";
export type LinalgKind = "design" | "dualgpm" | "alignment";
export type RunStatus = "running" | "finished" | "failed";
/**
 * Which evaluation an accuracy comes from: `final` is the task's evaluation (after alignment where the method
 * aligns); `before_alignment` the one before it, for methods with classifier alignment only.
 */
export type AccuracyStage = "before_alignment" | "final";

/** Every method's phases; `DONE` is set by run_finished (the trainer emits no phase_started for it). */
const PHASES = [...TASK_PHASES, "DONE"];
const STATUSES: readonly RunStatus[] = ["running", "finished", "failed"];
const EVENT_NAMES: readonly EventName[] = [
  "run_started",
  "run_finished",
  "run_failed",
  "task_started",
  "task_finished",
  "phase_started",
  "epoch_started",
  "epoch_finished",
  "checkpoint_written",
  "checkpoint_damaged",
  "alignment_epoch",
  "alignment_finished",
  "worker_joined",
  "worker_left",
  "worker_failed",
  "shards_reissued",
  "reissue_settled",
];

/** ViT-B/16 steps take 0.1–2 s on a GPU; the tiny CPU fixtures take milliseconds. */
const STEP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const REDUCE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];
/** 12 float64 SVDs of 768×768 take seconds to minutes, depending on the machine. */
const LINALG_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

/** Bytes the workers sent for one step's gradients: what the coordinator reduced. */
export function trainStepBytes(results: readonly TrainStepResult[]): number {
  let n = 0;
  for (const r of results) {
    for (const g of r.gradAk) n += g.byteLength;
    for (const g of r.gradAv) n += g.byteLength;
    n += r.gradHeadW.byteLength + r.gradHeadB.byteLength;
  }
  return n;
}

/** Bytes of one batch's covariance partial sums. */
export function covarianceBytes(results: readonly CovarianceResult[]): number {
  let n = 0;
  for (const r of results) for (const s of r.sums) n += s.byteLength;
  return n;
}

const num = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined);
const ratio = (percent: number): number => percent / 100;

export class CoordinatorMetrics {
  readonly registry = new Registry();
  /** The run `observe*` calls label; "" until the first setRun or run_started. */
  private run = "";
  private readonly info: InfoMetric;
  /** Per run and stage (keyed by both): the accuracy curves and matrix so far, to derive forgetting. */
  private readonly accuracy = new Map<string, { cil: number[]; withTask: number[]; matrix: number[][] }>();
  private readonly readyWorkers = new Map<string, Set<string>>();
  private readonly epochs = new Map<string, { tasks: number; completed: number; epochFraction: number }>();
  private readonly basisLabels = new Map<string, Array<{ layer: string; type: string }>>();

  private readonly events = this.counter("events_total", "Run events emitted, by event name", ["event"]);
  private readonly status = this.gauge("run_status", "1 for the run's current status, 0 for the others", [
    "status",
  ]);
  private readonly tasks = this.gauge("run_tasks", "Tasks in the run");
  private readonly tasksCompleted = this.gauge(
    "tasks_completed",
    "Tasks trained, evaluated and checkpointed",
  );
  private readonly progress = this.gauge(
    "run_progress_ratio",
    "Fraction of the run done: finished tasks plus the finished epochs of the current one, over all tasks",
  );
  private readonly currentTask = this.gauge("current_task", "Index (0-based) of the task in progress");
  private readonly currentEpoch = this.gauge("current_epoch", "Index (0-based) of the epoch in progress");
  private readonly taskEpochs = this.gauge("task_epochs", "Epochs of the task in progress");
  private readonly phase = this.gauge("phase", "1 for the phase in progress, 0 for the others", ["phase"]);
  private readonly ended = this.gauge(
    "run_finished_timestamp_seconds",
    "Unix time the run ended (run_status says whether it finished or failed); absent while it runs",
  );
  private readonly lastProgress = this.gauge(
    "last_progress_timestamp_seconds",
    "Unix time of the last training step, reduce, SVD or run event: what the no-progress alert watches",
  );
  private readonly learningRate = this.gauge("learning_rate", "Learning rate of the epoch in progress");

  private readonly natsEventFailures = this.counter(
    "nats_event_failures_total",
    "Run events the NATS event stream did not acknowledge (lost, or stored with the ack lost); events.jsonl has them",
  );
  private readonly steps = this.counter("steps_total", "Training steps (global batches) applied");
  private readonly nonFinite = this.counter(
    "nonfinite_losses_total",
    "Training steps whose loss was NaN or infinite",
  );
  private readonly stepDuration = this.histogram(
    "step_duration_seconds",
    "Wall time of one training step: fan-out, worker compute, reduce and optimizer",
    STEP_BUCKETS,
  );
  private readonly trainLoss = this.gauge("train_loss", "Mean cross-entropy of the last training step");
  private readonly epochLoss = this.gauge(
    "epoch_train_loss",
    "Mean training cross-entropy of the last epoch",
  );
  private readonly epochAccuracy = this.gauge(
    "epoch_train_accuracy_ratio",
    "Training accuracy (current head) of the last epoch",
  );
  private readonly images = this.counter("train_images_total", "Training images processed by the workers");
  private readonly imagesPerSecond = this.gauge(
    "train_images_per_second",
    "Training throughput of the last epoch, images per second",
  );

  private readonly reduceBytes = this.counter(
    "allreduce_bytes_total",
    "Bytes of worker partial results reduced on the coordinator",
    ["kind"],
  );
  private readonly reduceDuration = this.histogram(
    "allreduce_duration_seconds",
    "Time to reduce one batch of worker partial results in float64",
    REDUCE_BUCKETS,
    ["kind"],
  );
  private readonly linalgDuration = this.histogram(
    "linalg_duration_seconds",
    "Time of the coordinator's own compute: designing B (SVD), the DualGPM update (all layers), classifier alignment",
    LINALG_BUCKETS,
    ["kind"],
  );
  private readonly basisWidth = this.gauge(
    "dualgpm_basis_width",
    "Columns of each layer's DualGPM basis; type remove or retain",
    ["layer", "type"],
  );

  private readonly taskAccuracy = this.gauge(
    "task_accuracy_ratio",
    "Accuracy matrix: class-incremental accuracy on task `task`'s test samples after training task `after_task`",
    ["after_task", "task", "stage"],
  );
  private readonly taskAccuracyCurrent = this.gauge(
    "task_accuracy_current_ratio",
    "Class-incremental accuracy on each task's test samples after the latest finished task",
    ["task", "stage"],
  );
  private readonly taskForgetting = this.gauge(
    "task_forgetting_ratio",
    "Per earlier task: its best accuracy after any earlier task minus its accuracy after the latest one",
    ["task", "stage"],
  );
  private readonly incremental = this.gauge(
    "incremental_accuracy_ratio",
    "A_t: class-incremental accuracy over all classes seen after training task `after_task`",
    ["after_task", "stage"],
  );
  private readonly taskAware = this.gauge(
    "task_aware_accuracy_ratio",
    "Task-aware accuracy over all classes seen after training task `after_task`",
    ["after_task", "stage"],
  );
  private readonly average = this.gauge(
    "average_accuracy_ratio",
    "Mean of A_t over the tasks finished so far",
    ["stage"],
  );
  private readonly final = this.gauge(
    "final_accuracy_ratio",
    "A_T, the accuracy after the last task (finished runs)",
    ["stage"],
  );
  private readonly forgetting = this.gauge(
    "forgetting_ratio",
    "Average forgetting over the tasks finished so far",
    ["stage"],
  );
  private readonly bwt = this.gauge("bwt_ratio", "Backward transfer over the tasks finished so far", [
    "stage",
  ]);

  private readonly workersUp = this.gauge(
    "workers_up",
    "Workers that passed the handshake and have not failed since",
  );
  private readonly workerJoins = this.counter("worker_joins_total", "Workers admitted after a handshake");
  private readonly workerFailures = this.counter(
    "worker_failures_total",
    "Worker failures: errors, deadlines, malformed replies, failed handshakes",
  );
  private readonly workerDepartures = this.counter(
    "worker_departures_total",
    "Workers that left the membership (lease lost or released)",
  );
  private readonly reissues = this.counter(
    "shard_reissues_total",
    "Late blocks of micro-shards re-issued to an idle worker (speculative re-execution of a straggler's work)",
  );
  private readonly reissueWins = this.counter(
    "reissue_wins_total",
    "Races between a re-issued block and its original, by the copy that answered first (original or copy)",
    ["winner"],
  );

  /**
   * Without `run`, no run's series exist until setRun() or a run_started event: a process that has not yet
   * picked its run id must not export a placeholder run that looks like one in progress.
   */
  constructor(opts: { run?: string; processMetrics?: boolean }) {
    this.info = new InfoMetric(this.registry, "coordinator");
    if (opts.processMetrics ?? true) registerProcessMetrics(this.registry);
    registerTfjsMemoryMetrics(this.registry);
    if (opts.run !== undefined) this.startRun(opts.run);
  }

  setInfo(backend: string, version: string): void {
    this.info.set(backend, version);
  }

  /**
   * Makes `run` the run that `observe*`, `setBasisWidths`, `setWorkersUp` and `restoreAccuracy` label. A
   * run_started event does the same; call this first when one process trains several seeds, so calls made
   * before that event (a resume's restoreAccuracy) land on the right run.
   */
  setRun(run: string): void {
    if (run !== this.run) this.startRun(run);
  }

  /**
   * A registry that shows only `run`'s series (and the info metric): what `--pushgateway` pushes under the
   * grouping key `run`. The Pushgateway stamps the grouping labels on every pushed sample, so another
   * run's series in the same push would collide with this run's.
   */
  runRegistry(run: string): Registry {
    const view = new Registry();
    for (const { name } of this.registry.getMetricsAsArray()) {
      const metric = this.registry.getSingleMetric(name);
      if (!metric || !name.startsWith(P)) continue;
      const keep = name === `${P}info` ? () => true : (labels: { run?: unknown }) => labels.run === run;
      // A read-through view: prom-client renders whatever `get()` returns, so no series is copied.
      const filtered = {
        name,
        get: async () => {
          const m = await metric.get();
          return { ...m, values: m.values.filter((v) => keep(v.labels)) };
        },
      };
      view.registerMetric(filtered as unknown as Metric);
    }
    return view;
  }

  /** For `EventLog.addSink`: never throws, so a metrics bug cannot stop a run. */
  eventSink = (e: RunEvent): void => {
    try {
      this.onEvent(e);
    } catch {
      // Metrics are best effort; the event itself is already in events.jsonl.
    }
  };

  observeStep(seconds: number, loss: number, images: number): void {
    const run = { run: this.run };
    this.steps.inc(run);
    this.stepDuration.observe(run, seconds);
    this.images.inc(run, images);
    this.trainLoss.set(run, loss);
    if (!Number.isFinite(loss)) this.nonFinite.inc(run);
    this.touch(this.run);
  }

  /** An event the NATS event stream did not acknowledge (`natsEventSink`'s onFailure). */
  observeNatsEventFailure(): void {
    this.natsEventFailures.inc({ run: this.run });
  }

  observeAllReduce(bytes: number, seconds: number, kind: AllReduceKind): void {
    this.reduceBytes.inc({ run: this.run, kind }, bytes);
    this.reduceDuration.observe({ run: this.run, kind }, seconds);
    this.touch(this.run);
  }

  observeLinalg(kind: LinalgKind, seconds: number): void {
    this.linalgDuration.observe({ run: this.run, kind }, seconds);
    this.touch(this.run);
  }

  /** Per layer: the basis' column count and its type ("remove" | "retain"). */
  setBasisWidths(widths: readonly number[], types: readonly string[]): void {
    for (const labels of this.basisLabels.get(this.run) ?? [])
      this.basisWidth.remove({ run: this.run, ...labels });
    const set = widths.map((w, i) => {
      const labels = { layer: String(i), type: types[i] === "retain" ? "retain" : "remove" };
      this.basisWidth.set({ run: this.run, ...labels }, w);
      return labels;
    });
    this.basisLabels.set(this.run, set);
  }

  /** Overrides the count derived from worker events (e.g. with `pool.size` after a boundary). */
  setWorkersUp(n: number): void {
    this.workersUp.set({ run: this.run }, n);
  }

  /**
   * Re-exports the accuracies of tasks finished before a resume, whose task_finished events belong to the
   * previous coordinator: pass RUN_DIR/metrics.json (parsed, or its path).
   */
  restoreAccuracy(saved: Pick<RunMetrics, "curve" | "accuracy_matrix" | "before_alignment"> | string): void {
    const m =
      typeof saved === "string"
        ? (JSON.parse(readFileSync(saved, "utf8")) as Pick<
            RunMetrics,
            "curve" | "accuracy_matrix" | "before_alignment"
          >)
        : saved;
    const stages: Array<[AccuracyStage, Pick<RunMetrics, "curve" | "accuracy_matrix"> | undefined]> = [
      ["final", m],
      ["before_alignment", m.before_alignment],
    ];
    for (const [stage, figures] of stages) {
      if (!figures) continue;
      const acc = this.accuracyOf(this.run, stage);
      figures.accuracy_matrix.forEach((row, t) => {
        acc.cil[t] = figures.curve.cil[t];
        acc.withTask[t] = figures.curve.with_task[t];
        acc.matrix[t] = [...row];
      });
      this.exportAccuracy(this.run, stage);
    }
  }

  private onEvent(e: RunEvent): void {
    const run = typeof e.run === "string" && e.run !== "" ? e.run : this.run;
    if (e.event === "run_started" && run !== this.run) this.startRun(run);
    if ((EVENT_NAMES as readonly string[]).includes(e.event)) this.events.inc({ run, event: e.event });
    this.touch(run);
    const r = { run };
    const task = num(e.task);
    switch (e.event) {
      case "run_started": {
        this.setStatus(run, "running");
        const tasks = num(e.tasks);
        if (tasks !== undefined) this.tasks.set(r, tasks);
        const resumedAt = num(e.resumed_at_task) ?? 0;
        this.progressOf(run).tasks = tasks ?? 0;
        this.progressOf(run).completed = resumedAt;
        this.tasksCompleted.set(r, resumedAt);
        this.exportProgress(run);
        return;
      }
      case "task_started":
        if (task === undefined) return;
        this.currentTask.set(r, task);
        // Tasks before the one starting are done, also when their events predate this process.
        this.progressOf(run).completed = Math.max(this.progressOf(run).completed, task);
        this.progressOf(run).epochFraction = 0;
        this.exportProgress(run);
        return;
      case "phase_started":
        for (const p of PHASES) this.phase.set({ run, phase: p }, p === e.phase ? 1 : 0);
        return;
      case "epoch_started": {
        const epoch = num(e.epoch);
        const lr = num(e.lr);
        if (epoch !== undefined) this.currentEpoch.set(r, epoch);
        if (lr !== undefined) this.learningRate.set(r, lr);
        return;
      }
      case "epoch_finished":
        this.onEpochFinished(run, e);
        return;
      case "task_finished":
        this.onTaskFinished(run, e);
        return;
      case "run_finished":
        this.onRunFinished(run, e);
        return;
      case "run_failed":
        this.setStatus(run, "failed");
        this.ended.set(r, Date.now() / 1000);
        return;
      case "worker_joined":
      case "worker_failed":
      case "worker_left":
        this.onWorker(run, e);
        return;
      case "shards_reissued":
        this.reissues.inc(r);
        return;
      case "reissue_settled":
        if (e.winner === "original" || e.winner === "copy") this.reissueWins.inc({ run, winner: e.winner });
        return;
      default:
        return;
    }
  }

  private onEpochFinished(run: string, e: RunEvent): void {
    const r = { run };
    const set = (g: Gauge<string>, v: number | undefined, f = (x: number) => x) => {
      if (v !== undefined) g.set(r, f(v));
    };
    set(this.epochLoss, num(e.loss));
    set(this.epochAccuracy, num(e.train_accuracy), ratio);
    set(this.imagesPerSecond, num(e.images_per_second));
    set(this.taskEpochs, num(e.epochs));
    set(this.workersUp, num(e.workers));
    const epoch = num(e.epoch);
    const epochs = num(e.epochs);
    if (epoch !== undefined && epochs !== undefined && epochs > 0) {
      this.progressOf(run).epochFraction = (epoch + 1) / epochs;
      this.exportProgress(run);
    }
  }

  private onTaskFinished(run: string, e: RunEvent): void {
    const task = num(e.task);
    if (task === undefined) return;
    const before = e.before_alignment as Record<string, unknown> | undefined;
    const stages: Array<[AccuracyStage, Record<string, unknown> | undefined]> = [
      ["final", e],
      ["before_alignment", typeof before === "object" && before !== null ? before : undefined],
    ];
    for (const [stage, figures] of stages) {
      if (!figures) continue;
      const acc = this.accuracyOf(run, stage);
      const cil = num(figures.cil);
      const withTask = num(figures.with_task);
      if (cil !== undefined) acc.cil[task] = cil;
      if (withTask !== undefined) acc.withTask[task] = withTask;
      if (Array.isArray(figures.accuracy_row)) acc.matrix[task] = figures.accuracy_row.map((x) => Number(x));
      this.exportAccuracy(run, stage);
    }
    const p = this.progressOf(run);
    p.completed = task + 1;
    p.epochFraction = 0;
    this.tasksCompleted.set({ run }, task + 1);
    this.exportProgress(run);
  }

  private onRunFinished(run: string, e: RunEvent): void {
    const r = { run };
    this.setStatus(run, "finished");
    for (const p of PHASES) this.phase.set({ run, phase: p }, p === "DONE" ? 1 : 0);
    this.ended.set(r, Date.now() / 1000);
    const before = e.before_alignment as Record<string, unknown> | undefined;
    const stages: Array<[AccuracyStage, Record<string, unknown> | undefined]> = [
      ["final", e],
      ["before_alignment", typeof before === "object" && before !== null ? before : undefined],
    ];
    for (const [stage, figures] of stages) {
      if (!figures) continue;
      const pairs: Array<[Gauge<string>, unknown]> = [
        [this.final, figures.final_accuracy],
        [this.average, figures.average_accuracy],
        [this.forgetting, figures.forgetting],
        [this.bwt, figures.bwt],
      ];
      for (const [g, v] of pairs) if (typeof v === "number") g.set({ run, stage }, ratio(v));
    }
    const p = this.progressOf(run);
    if (p.tasks > 0) {
      p.completed = p.tasks;
      p.epochFraction = 0;
      this.exportProgress(run);
    }
  }

  private onWorker(run: string, e: RunEvent): void {
    const r = { run };
    const id = String(e.worker ?? "");
    const ready = this.readyWorkers.get(run) ?? new Set<string>();
    this.readyWorkers.set(run, ready);
    if (e.event === "worker_joined") {
      this.workerJoins.inc(r);
      ready.add(id);
    } else if (e.event === "worker_failed") {
      this.workerFailures.inc(r);
      ready.delete(id);
    } else {
      this.workerDepartures.inc(r);
      ready.delete(id);
    }
    this.workersUp.set(r, ready.size);
  }

  private exportAccuracy(run: string, stage: AccuracyStage): void {
    const { cil, withTask, matrix } = this.accuracyOf(run, stage);
    for (let t = 0; t < matrix.length; t++) {
      const after = String(t);
      matrix[t]?.forEach((a, s) => {
        this.taskAccuracy.set({ run, after_task: after, task: String(s), stage }, ratio(a));
      });
      if (cil[t] !== undefined) this.incremental.set({ run, after_task: after, stage }, ratio(cil[t]));
      if (withTask[t] !== undefined)
        this.taskAware.set({ run, after_task: after, stage }, ratio(withTask[t]));
    }
    // The derived figures need every row: a resumed coordinator has them only after restoreAccuracy().
    const complete = matrix.length > 0 && [...matrix.keys()].every((t) => matrix[t] && cil[t] !== undefined);
    if (!complete) return;
    const last = matrix.length - 1;
    matrix[last].forEach((a, s) => {
      this.taskAccuracyCurrent.set({ run, task: String(s), stage }, ratio(a));
      let best = a;
      for (let t = s; t < last; t++) best = Math.max(best, matrix[t][s]);
      this.taskForgetting.set({ run, task: String(s), stage }, ratio(best - a));
    });
    const m = runMetrics(cil, withTask, matrix);
    this.average.set({ run, stage }, ratio(m.average_accuracy));
    if (m.forgetting !== null) this.forgetting.set({ run, stage }, ratio(m.forgetting));
    if (m.bwt !== null) this.bwt.set({ run, stage }, ratio(m.bwt));
  }

  private exportProgress(run: string): void {
    const p = this.progressOf(run);
    if (p.tasks <= 0) return;
    this.progress.set({ run }, Math.min(1, (p.completed + p.epochFraction) / p.tasks));
  }

  private startRun(run: string): void {
    this.run = run;
    this.setStatus(run, "running");
    // Counters start at 0 so `increase()` sees their first increment.
    const r = { run };
    for (const c of [
      this.steps,
      this.nonFinite,
      this.images,
      this.workerJoins,
      this.workerFailures,
      this.workerDepartures,
      this.reissues,
    ])
      c.inc(r, 0);
    for (const winner of ["original", "copy"]) this.reissueWins.inc({ run, winner }, 0);
    for (const kind of ["gradients", "covariance"]) this.reduceBytes.inc({ run, kind }, 0);
  }

  private setStatus(run: string, status: RunStatus): void {
    for (const s of STATUSES) this.status.set({ run, status: s }, s === status ? 1 : 0);
  }

  private touch(run: string): void {
    this.lastProgress.set({ run }, Date.now() / 1000);
  }

  private accuracyOf(run: string, stage: AccuracyStage) {
    const key = JSON.stringify([run, stage]);
    let a = this.accuracy.get(key);
    if (!a) {
      a = { cil: [], withTask: [], matrix: [] };
      this.accuracy.set(key, a);
    }
    return a;
  }

  private progressOf(run: string) {
    let p = this.epochs.get(run);
    if (!p) {
      p = { tasks: 0, completed: 0, epochFraction: 0 };
      this.epochs.set(run, p);
    }
    return p;
  }

  private gauge(name: string, help: string, labels: string[] = []): Gauge<string> {
    return new Gauge({ name: P + name, help, labelNames: ["run", ...labels], registers: [this.registry] });
  }

  private counter(name: string, help: string, labels: string[] = []): Counter<string> {
    return new Counter({ name: P + name, help, labelNames: ["run", ...labels], registers: [this.registry] });
  }

  private histogram(name: string, help: string, buckets: number[], labels: string[] = []): Histogram<string> {
    return new Histogram({
      name: P + name,
      help,
      buckets,
      labelNames: ["run", ...labels],
      registers: [this.registry],
    });
  }
}
