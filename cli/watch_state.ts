/**
 * The live view's model of a run, folded from its events (coordinator/events.ts) in order. Pure: the same
 * events give the same state, whether they come from events.jsonl or from NATS, live or replayed.
 */
import type { RunEvent } from "../coordinator/events.js";

export type RunStatus = "waiting" | "running" | "finished" | "failed";
export type WorkerStatus = "up" | "failed" | "left";

export interface WatchState {
  run?: string;
  seed?: number;
  tasks?: number;
  status: RunStatus;
  task?: number;
  phase?: string;
  epoch?: number;
  epochs?: number;
  lr?: number;
  loss?: number;
  trainAccuracy?: number;
  imagesPerSecond?: number;
  epochSeconds?: number;
  /** Workers the coordinator reported in its last epoch. */
  workersInUse?: number;
  readonly workers: Map<string, { status: WorkerStatus; reason?: string }>;
  /** A_t, task-aware accuracy and the accuracy matrix so far, percent. */
  readonly cil: number[];
  readonly withTask: number[];
  readonly matrix: number[][];
  result?: { final: number; average: number; forgetting: number | null; bwt: number | null };
  error?: string;
  lastEventTime?: string;
  events: number;
}

export function emptyState(): WatchState {
  return { status: "waiting", workers: new Map(), cil: [], withTask: [], matrix: [], events: 0 };
}

const num = (v: unknown): number | undefined => (typeof v === "number" && !Number.isNaN(v) ? v : undefined);
const pct = (v: number | undefined, digits = 2): string => (v === undefined ? "-" : `${v.toFixed(digits)}%`);
const numOrNull = (v: unknown): number | null => (typeof v === "number" ? v : null);

/**
 * Applies one event and returns the plain-text line that describes it, or undefined for events that only
 * move the state (phase and epoch starts), which a log would repeat too often.
 */
export function applyEvent(s: WatchState, e: RunEvent): string | undefined {
  s.events++;
  s.lastEventTime = e.time;
  if (typeof e.run === "string") s.run = e.run;
  const task = num(e.task);
  const ofTasks = (t: number) => `task ${t + 1}/${s.tasks ?? "?"}`;
  switch (e.event) {
    case "run_started": {
      s.status = "running";
      s.seed = num(e.seed);
      s.tasks = num(e.tasks) ?? s.tasks;
      s.error = undefined;
      const resumed = num(e.resumed_at_task) ?? 0;
      return `run ${s.run} started: seed ${s.seed ?? "?"}, ${s.tasks ?? "?"} tasks${resumed > 0 ? `, resumed at task ${resumed + 1}` : ""}`;
    }
    case "task_started":
      if (task === undefined) return undefined;
      s.task = task;
      s.epoch = undefined;
      s.phase = undefined;
      return `${ofTasks(task)} started`;
    case "phase_started":
      s.phase = typeof e.phase === "string" ? e.phase : s.phase;
      if (task !== undefined) s.task = task;
      return undefined;
    case "epoch_started":
      s.epoch = num(e.epoch) ?? s.epoch;
      s.lr = num(e.lr) ?? s.lr;
      return undefined;
    case "epoch_finished": {
      s.epoch = num(e.epoch) ?? s.epoch;
      s.epochs = num(e.epochs) ?? s.epochs;
      s.loss = typeof e.loss === "number" ? e.loss : s.loss;
      s.trainAccuracy = num(e.train_accuracy) ?? s.trainAccuracy;
      s.imagesPerSecond = num(e.images_per_second) ?? s.imagesPerSecond;
      s.epochSeconds = num(e.seconds) ?? s.epochSeconds;
      s.workersInUse = num(e.workers) ?? s.workersInUse;
      s.lr = num(e.lr) ?? s.lr;
      const t = task ?? s.task ?? 0;
      return (
        `${ofTasks(t)} epoch ${(s.epoch ?? 0) + 1}/${s.epochs ?? "?"}: loss ${s.loss?.toFixed(4) ?? "-"}, ` +
        `train accuracy ${pct(s.trainAccuracy)}, ${s.imagesPerSecond?.toFixed(1) ?? "-"} img/s, ` +
        `${s.workersInUse ?? "?"} workers`
      );
    }
    case "task_finished": {
      if (task === undefined) return undefined;
      const cil = num(e.cil);
      const withTask = num(e.with_task);
      if (cil !== undefined) s.cil[task] = cil;
      if (withTask !== undefined) s.withTask[task] = withTask;
      if (Array.isArray(e.accuracy_row)) s.matrix[task] = e.accuracy_row.map((x) => Number(x));
      const row = s.matrix[task]?.map((a) => a.toFixed(2)).join(" ") ?? "";
      const before = e.before_alignment as { cil?: unknown } | undefined;
      const aligned = num(before?.cil) !== undefined ? ` (before alignment ${pct(num(before?.cil))})` : "";
      return `${ofTasks(task)} finished: A_t ${pct(cil)}${aligned}, task-aware ${pct(withTask)}, per task [${row}]`;
    }
    case "alignment_epoch": {
      const t = task ?? s.task ?? 0;
      const loss = num(e.loss);
      return `${ofTasks(t)} alignment epoch ${(num(e.epoch) ?? 0) + 1}/${num(e.epochs) ?? "?"}: loss ${loss?.toFixed(4) ?? "-"}`;
    }
    case "checkpoint_written":
      return `checkpoint ${typeof e.file === "string" ? e.file : `after task ${(task ?? 0) + 1}`} written`;
    case "checkpoint_damaged":
      return `damaged ${String(e.file)} passed over (${String(e.where)}): ${String(e.fallback)}`;
    case "run_finished": {
      s.status = "finished";
      s.phase = undefined;
      s.result = {
        final: num(e.final_accuracy) ?? Number.NaN,
        average: num(e.average_accuracy) ?? Number.NaN,
        forgetting: numOrNull(e.forgetting),
        bwt: numOrNull(e.bwt),
      };
      const r = s.result;
      return (
        `run finished: final ${pct(r.final)}, average ${pct(r.average)}, ` +
        `forgetting ${r.forgetting?.toFixed(2) ?? "-"}, bwt ${r.bwt?.toFixed(2) ?? "-"}`
      );
    }
    case "run_failed":
      s.status = "failed";
      s.error =
        typeof e.error === "string" ? e.error : typeof e.reason === "string" ? e.reason : "unknown error";
      return `run failed: ${s.error}`;
    case "worker_joined":
    case "worker_failed":
    case "worker_left": {
      const id = String(e.worker ?? "?");
      const status: WorkerStatus =
        e.event === "worker_joined" ? "up" : e.event === "worker_failed" ? "failed" : "left";
      const reason = typeof e.reason === "string" ? e.reason : undefined;
      s.workers.set(id, { status, reason });
      const verb = e.event === "worker_joined" ? "joined" : e.event === "worker_failed" ? "failed" : "left";
      return `worker ${id} ${verb}${reason ? `: ${reason}` : ""}`;
    }
    default:
      return undefined;
  }
}

/** Class-incremental average and forgetting over the tasks finished so far (percent points). */
export function summary(s: WatchState): { average?: number; forgetting?: number } {
  const done = s.cil.filter((x) => x !== undefined);
  const average = done.length ? done.reduce((a, b) => a + b, 0) / done.length : undefined;
  const T = s.matrix.length;
  if (T < 2 || s.matrix.some((r) => r === undefined)) return { average };
  let sum = 0;
  for (let t = 0; t < T - 1; t++) {
    let best = Number.NEGATIVE_INFINITY;
    for (let u = t; u < T - 1; u++) best = Math.max(best, s.matrix[u][t]);
    sum += best - s.matrix[T - 1][t];
  }
  return { average, forgetting: sum / (T - 1) };
}
