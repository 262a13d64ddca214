/**
 * The coordinator of one run (one seed): a phase machine over the tasks. The method (methods.ts) decides
 * which phases a task has; InfLoRA's are
 *
 *   COVARIANCE_PRE → DESIGN → TRAIN → COVARIANCE_POST → DUALGPM → EVAL → CHECKPOINT → (next task)
 *
 * and the methods with classifier alignment put CLASS_STATS → EVAL_BEFORE_ALIGNMENT → ALIGNMENT before EVAL.
 *
 * The trainer owns every piece of state that must agree (docs/design.md#processes); each phase's work
 * lives in its own module, the files in RunDir, and the algorithm code never knows which transport
 * carries the requests.
 */

import type { AdapterSet, Head } from "../common/adapters.js";
import type { RunConfig } from "../common/config.js";
import type { DataOptions } from "../common/data/options.js";
import type { DatasetIndex } from "../common/data/types.js";
import { log } from "../common/log.js";
import { PROTOCOL_VERSION, type TaskState } from "../common/protocol.js";
import type { VitConfig } from "../common/vit_config.js";
import { type CheckpointState, writeCheckpoint, writeClassStats, writePredictions } from "./checkpoint.js";
import { type Evaluation, evaluateLogits, type RunMetrics, runMetrics } from "./evaluation.js";
import { EventLog } from "./events.js";
import { alignClassifier, type ClassStatistics } from "./inflora/alignment.js";
import { appendStatistics } from "./inflora/class_stats.js";
import { initialHead, randomB } from "./inflora/design.js";
import { type LayerMemory, threshold } from "./inflora/dualgpm.js";
import { designAllB, updateAllLayers, warmLayerThreads } from "./inflora/layers_parallel.js";
import { type Mat, mat } from "./linalg/matrix.js";
import { logitNormOf, type Method, methodOf, type Phase, PhaseTable } from "./methods.js";
import type { CoordinatorMetrics } from "./metrics.js";
import { taskOptimizer } from "./optim/recipe.js";
import { classStatisticsPass, covariancePass, evaluationPass, type PassContext } from "./passes.js";
import { buildPlan, type RunPlan, type TaskPlan, testSamples } from "./plan.js";
import type { TaskProgress } from "./progress.js";
import { toFloat32 } from "./reduce.js";
import { type DamagedFile, type ResumeCheck, type ResumeState, RunDir } from "./run_dir.js";
import { freshStart, startFromProgress, TaskTraining, type TrainContext } from "./task_training.js";
import type { WorkerPool } from "./worker_pool.js";

export type { Phase } from "./methods.js";

export interface TrainerInput {
  readonly cfg: RunConfig;
  readonly seed: number;
  readonly runDir: string;
  readonly runId: string;
  readonly index: DatasetIndex;
  readonly model: VitConfig;
  readonly weightsFingerprint: string;
  readonly data: DataOptions;
  readonly pool: WorkerPool;
  readonly resume: boolean;
  /** For run.json: the compute backend and package versions. */
  readonly backend: string;
  readonly versions: Record<string, string>;
  /** Prometheus metrics of this coordinator (optional). */
  readonly metrics?: CoordinatorMetrics;
  /** Called after every training step (progress bars). */
  readonly onStep?: TrainContext["onStep"];
}

/**
 * Labels of the covariance passes' augmentation keys: -1 before training, -2 after
 * (docs/design.md#quirk-augmented-covariance).
 */
const COV_PRE_EPOCH = -1;
const COV_POST_EPOCH = -2;

export class Trainer {
  phase: Phase | "DONE";
  task = 0;
  readonly method: Method;
  private readonly table: PhaseTable;
  private readonly plan: RunPlan;
  private readonly dir: RunDir;
  private readonly events: EventLog;
  private readonly D: number;
  private readonly depth: number;
  // Versions start from the clock so a restarted coordinator never reuses one a surviving worker holds.
  private stateVersion = Date.now() * 1000;
  private paramsVersion = Date.now() * 1000;
  private resumeProgress: TaskProgress | undefined;
  /** Files the resume found damaged and passed over, reported after run_started. */
  private damaged: DamagedFile[] = [];
  /** Finished tasks' adapters (float32, as sent to workers and checkpointed). */
  private readonly adapters: AdapterSet[] = [];
  private readonly heads: Head[] = [];
  private memory: (LayerMemory | undefined)[];
  private covariances: Mat[] = [];
  private currentB: Float32Array[] = [];
  private readonly cil: number[] = [];
  private readonly withTask: number[] = [];
  private readonly matrix: number[][] = [];
  /** Classifier alignment: the statistics of every class so far, and the accuracies before each alignment. */
  private classStats: ClassStatistics | undefined;
  private readonly before = { cil: [] as number[], withTask: [] as number[], matrix: [] as number[][] };
  private readonly phases: { readonly [P in Phase]: (t: TaskPlan) => Promise<void> } = {
    COVARIANCE_PRE: (t) => this.covariancePre(t),
    DESIGN: (t) => this.design(t),
    TRAIN: (t) => this.train(t),
    COVARIANCE_POST: (t) => this.covariancePost(t),
    DUALGPM: () => this.updateMemory(),
    CLASS_STATS: (t) => this.classStatistics(t),
    EVAL_BEFORE_ALIGNMENT: (t) => this.evaluateBeforeAlignment(t),
    ALIGNMENT: (t) => this.align(t),
    EVAL: (t) => this.evaluate(t),
    CHECKPOINT: () => this.checkpoint(),
  };

  constructor(private readonly input: TrainerInput) {
    const { cfg } = input;
    this.method = methodOf(cfg);
    this.table = new PhaseTable(this.method);
    this.phase = this.table.first;
    this.D = input.model.embedDim;
    this.depth = input.model.depth;
    this.memory = new Array(this.depth).fill(undefined);
    this.plan = buildPlan(input.index, {
      shuffle: cfg.shuffle,
      seed: input.seed,
      initCls: cfg.init_cls,
      increment: cfg.increment,
      totalSessions: cfg.total_sessions,
      source: cfg.file,
    });
    if (cfg.rank > this.D)
      throw new Error(`${cfg.file}: key "rank" (${cfg.rank}) exceeds the model width ${this.D}`);
    this.dir = new RunDir(input.runDir);
    this.dir.create();
    this.events = new EventLog(this.dir.eventsJsonl, input.runId);
  }

  get eventLog(): EventLog {
    return this.events;
  }

  get runPlan(): RunPlan {
    return this.plan;
  }

  async run(): Promise<RunMetrics> {
    await this.startPool();
    const entry = this.input.resume ? await this.restore() : "a new run";
    await this.writeRunJson();
    if (this.task >= this.plan.tasks.length) this.phase = "DONE";
    log.info({ task: this.task, phase: this.phase, why: entry }, "entering the phase machine");
    this.events.emit("run_started", {
      seed: this.input.seed,
      method: this.method.name,
      tasks: this.plan.tasks.length,
      resumed_at_task: this.task,
      entry_phase: this.phase,
    });
    for (const d of this.damaged) this.events.emit("checkpoint_damaged", { ...d });
    if (this.phase !== "DONE") this.events.emit("task_started", { task: this.task });
    try {
      while (this.phase !== "DONE") await this.advance(this.phase);
    } catch (err) {
      try {
        this.events.emit("run_failed", { task: this.task, phase: this.phase, error: (err as Error).message });
      } catch (appendErr) {
        // On a full disk the event cannot be appended either; the run's own error is the one to report.
        log.error({ err: appendErr }, "could not record run_failed in the event log");
      }
      throw err;
    }
    const metrics = this.metricsSoFar();
    this.events.emit("run_finished", { ...metrics });
    return metrics;
  }

  /** Runs `phase` and moves to the next one of the method's table. */
  private async advance(phase: Phase): Promise<void> {
    this.events.emit("phase_started", { task: this.task, phase });
    await this.phases[phase](this.plan.tasks[this.task]);
    const next = this.table.after(phase);
    if (next !== "NEXT_TASK") {
      this.phase = next;
      return;
    }
    this.task++;
    if (this.task >= this.plan.tasks.length) this.phase = "DONE";
    else {
      this.phase = this.table.first;
      this.events.emit("task_started", { task: this.task });
    }
  }

  private async startPool(): Promise<void> {
    const { pool } = this.input;
    pool.observe({
      joined: (m) =>
        this.events.emit("worker_joined", {
          worker: m.id,
          backend: m.reply?.backend,
          device: m.reply?.device,
          ...(m.reply?.adapter ? { adapter: m.reply.adapter } : {}),
          ...m.reply?.transport,
        }),
      failed: (m, reason) => this.events.emit("worker_failed", { worker: m.id, reason, status: m.status }),
      left: (m, reason) => this.events.emit("worker_left", { worker: m.id, reason }),
      reissued: (copy, late, shards, lateMs) =>
        this.events.emit("shards_reissued", {
          worker: copy.id,
          late_worker: late.id,
          shards,
          late_ms: Math.round(lateMs),
        }),
      reissueSettled: (copy, late, winner) =>
        this.events.emit("reissue_settled", { worker: copy.id, late_worker: late.id, winner }),
    });
    await pool.start({
      runId: this.input.runId,
      protocolVersion: PROTOCOL_VERSION,
      weightsPath: this.input.cfg.weights,
      weightsFingerprint: this.input.weightsFingerprint,
      model: this.input.model,
      data: this.input.data,
    });
  }

  private async publish(opts: { training: boolean; heads: boolean }): Promise<number> {
    const finished = this.adapters.map((a, task) => ({ task, ...a }));
    const state: TaskState = {
      version: ++this.stateVersion,
      task: this.task,
      finished,
      currentB: opts.training ? { rank: this.input.cfg.rank, B: this.currentB } : undefined,
      heads: opts.heads ? this.heads.map((h) => ({ ...h })) : [],
    };
    await this.input.pool.publishState(state);
    return state.version;
  }

  private passContext(stateVersion: number): PassContext {
    return { cfg: this.input.cfg, pool: this.input.pool, metrics: this.input.metrics, stateVersion };
  }

  private augmentKey(epoch: number) {
    return this.input.cfg.augment ? { seed: this.input.seed, task: this.task, epoch } : undefined;
  }

  private async covariancePre(t: TaskPlan): Promise<void> {
    // The layer threads start while the workers compute, not while they wait for B.
    warmLayerThreads(this.D, this.depth);
    await this.covariancePass(t, COV_PRE_EPOCH);
  }

  private async covariancePost(t: TaskPlan): Promise<void> {
    await this.covariancePass(t, COV_POST_EPOCH);
  }

  private async covariancePass(t: TaskPlan, epoch: number): Promise<void> {
    const ctx = this.passContext(await this.publish({ training: false, heads: false }));
    const shape = { depth: this.depth, D: this.D };
    this.covariances = await covariancePass(ctx, t.train, this.augmentKey(epoch), shape);
  }

  private async design(t: TaskPlan): Promise<void> {
    const { cfg } = this.input;
    const started = performance.now();
    if (this.method.design === "random") {
      this.currentB = randomB(this.input.seed, t.task, this.depth, cfg.rank, this.D);
    } else {
      const b = await designAllB(this.covariances, cfg.rank, this.task > 0 ? this.memory : undefined);
      this.currentB = b.map((x) => Float32Array.from(x));
    }
    const seconds = (performance.now() - started) / 1000;
    this.input.metrics?.observeLinalg("design", seconds);
    log.info({ task: t.task, seconds }, "designed B");
  }

  private async train(t: TaskPlan): Promise<void> {
    const { cfg } = this.input;
    const from = this.resumeProgress;
    this.resumeProgress = undefined;
    if (from) this.currentB = from.B;
    const classes = t.classEnd - t.classStart;
    const ctx: TrainContext = {
      cfg,
      seed: this.input.seed,
      task: t,
      D: this.D,
      pool: this.input.pool,
      runDir: this.dir,
      events: this.events,
      metrics: this.input.metrics,
      recipe: taskOptimizer(this.method.optimizer, cfg, t.task),
      stateVersion: await this.publish({ training: true, heads: false }),
      nextParamsVersion: () => ++this.paramsVersion,
      augment: (epoch) => this.augmentKey(epoch),
      onStep: this.input.onStep,
    };
    const start = from ? startFromProgress(from) : freshStart(this.initialParams(t));
    const p = await new TaskTraining(ctx, this.currentB, start).run();
    const B = this.currentB;
    this.adapters.push({ rank: cfg.rank, Bk: B, Bv: B, Ak: p.Ak.map(toFloat32), Av: p.Av.map(toFloat32) });
    this.heads.push({ classes, weight: toFloat32(p.headW), bias: toFloat32(p.headB) });
  }

  /** A_t = 0 (so the model starts as the previous one) and head t as the config initialises it. */
  private initialParams(t: TaskPlan) {
    const { cfg, seed } = this.input;
    const zeros = () => Array.from({ length: this.depth }, () => new Float64Array(this.D * cfg.rank));
    const head = initialHead(cfg.head_init, seed, t.task, t.classEnd - t.classStart, this.D);
    return { Ak: zeros(), Av: zeros(), headW: head.w, headB: head.b };
  }

  private async updateMemory(): Promise<void> {
    const { cfg } = this.input;
    const eps = threshold(cfg.lamb, cfg.lame, this.task, cfg.total_sessions);
    const started = performance.now();
    this.memory = await updateAllLayers(this.memory, this.covariances, {
      threshold: eps,
      gpmOnly: this.method.memory === "GPM",
    });
    this.covariances = [];
    const seconds = (performance.now() - started) / 1000;
    const memory = this.memory as LayerMemory[];
    this.input.metrics?.observeLinalg("dualgpm", seconds);
    this.input.metrics?.setBasisWidths(
      memory.map((m) => m.basis.cols),
      memory.map((m) => m.type),
    );
    const widths = memory.map((m) => `${m.basis.cols}${m.type === "retain" ? "r" : ""}`).join(" ");
    log.info({ task: this.task, threshold: eps, seconds, widths }, `${this.method.memory} updated`);
  }

  /**
   * After the memory update, for every class of task t: the mean and covariance of its training images'
   * features with the adapters of tasks 0..t, added to the earlier classes' (which are never recomputed).
   */
  private async classStatistics(t: TaskPlan): Promise<void> {
    const ctx = this.passContext(await this.publish({ training: false, heads: false }));
    const added = await classStatisticsPass(ctx, t, this.D);
    this.classStats = appendStatistics(this.classStats, added);
    const file = this.dir.classStats(this.task);
    await writeClassStats(file, this.task, this.classStats);
    log.info({ task: t.task, classes: added.classes, file: this.dir.relative(file) }, "class statistics");
  }

  private async evaluateBeforeAlignment(t: TaskPlan): Promise<void> {
    const { ev } = await this.measure(t);
    this.before.cil[this.task] = ev.cil;
    this.before.withTask[this.task] = ev.withTask;
    this.before.matrix[this.task] = ev.perTask;
    log.info(
      { task: this.task, cil: ev.cil, row: ev.perTask },
      `task ${this.task} evaluated before alignment`,
    );
  }

  /** Retrains heads 0..t on features sampled from the class statistics; the reference skips task 0. */
  private async align(t: TaskPlan): Promise<void> {
    if (this.task === 0) return;
    const stats = this.classStats;
    if (!stats) throw new Error(`task ${this.task}: no class statistics to align the classifier with`);
    const logitNorm = logitNormOf(this.method, this.input.cfg.dataset);
    if (logitNorm === undefined) throw new Error(`method ${this.method.name} has no alignment settings`);
    const started = performance.now();
    const result = await alignClassifier(this.heads, stats, {
      task: this.task,
      latestTaskSize: t.classEnd - t.classStart,
      seed: this.input.seed,
      logitNorm,
      onEpoch: (e) => {
        this.events.emit("alignment_epoch", { task: this.task, ...e });
        log.info(
          { task: this.task, epoch: e.epoch, loss: e.loss },
          `alignment epoch ${e.epoch + 1}/${e.epochs}`,
        );
      },
    });
    this.heads.splice(0, this.heads.length, ...result.heads);
    const seconds = (performance.now() - started) / 1000;
    this.input.metrics?.observeLinalg("alignment", seconds);
    this.events.emit("alignment_finished", { task: this.task, epoch_loss: result.epochLoss, seconds });
  }

  /** The test samples of every class so far under the current heads. */
  private async measure(t: TaskPlan): Promise<{ ev: Evaluation; logits: Float32Array; labels: Int32Array }> {
    const ctx = this.passContext(await this.publish({ training: false, heads: true }));
    const { samples, labels } = testSamples(this.plan, t.classEnd);
    const logits = await evaluationPass(ctx, samples, t.classEnd);
    const ev = evaluateLogits(logits, labels, this.plan.tasks.slice(0, this.task + 1));
    return { ev, logits, labels };
  }

  /** metrics.json: the curve and matrix, and with alignment the same figures before it. */
  private metricsSoFar(): RunMetrics {
    const m: RunMetrics = runMetrics(this.cil, this.withTask, this.matrix);
    const b = this.before;
    if (!this.table.has("EVAL_BEFORE_ALIGNMENT") || b.matrix.length === 0) return m;
    return { ...m, before_alignment: runMetrics(b.cil, b.withTask, b.matrix) };
  }

  private async evaluate(t: TaskPlan): Promise<void> {
    const { ev, logits, labels } = await this.measure(t);
    this.cil[this.task] = ev.cil;
    this.withTask[this.task] = ev.withTask;
    this.matrix[this.task] = ev.perTask;
    await writePredictions(this.dir.predictions(this.task), this.task, {
      labels,
      pred: ev.pred,
      predWithTask: ev.predWithTask,
      logits,
      classes: t.classEnd,
    });
    await this.dir.writeMetrics(this.metricsSoFar());
    log.info(
      { task: this.task, cil: ev.cil, with_task: ev.withTask, row: ev.perTask },
      `task ${this.task} evaluated`,
    );
  }

  private checkpointState(): CheckpointState {
    return {
      task: this.task,
      adapters: this.adapters,
      heads: this.heads,
      memory: this.memory.map((m) => m ?? { basis: mat(this.D, 0), type: "remove" as const }),
      classOrder: this.plan.classOrder,
      configSha256: this.input.cfg.sha256,
      classStats: this.classStats,
    };
  }

  private async checkpoint(): Promise<void> {
    const file = this.dir.checkpoint(this.task);
    await writeCheckpoint(file, this.checkpointState(), this.D);
    this.events.emit("checkpoint_written", { task: this.task, file: this.dir.relative(file) });
    this.dir.removeProgress();
    const b = this.before;
    this.events.emit("task_finished", {
      task: this.task,
      cil: this.cil[this.task],
      with_task: this.withTask[this.task],
      accuracy_row: this.matrix[this.task],
      ...(b.matrix[this.task] && {
        before_alignment: {
          cil: b.cil[this.task],
          with_task: b.withTask[this.task],
          accuracy_row: b.matrix[this.task],
        },
      }),
    });
  }

  /**
   * Continues after the newest finished task whose checkpoint in RUN_DIR/checkpoints is intact (damaged
   * ones are passed over and reported), at the phase named here: the task's first, or TRAIN when a
   * progress state holds the task's B (designed before the restart) and its training so far. Returns why.
   */
  private async restore(): Promise<string> {
    const resume = await this.dir.readResume(this.plan.tasks.length, this.resumeCheck());
    const { last, finished } = resume;
    if (finished) this.restoreFinished(last, finished);
    this.task = last + 1;
    this.resumeProgress = resume.progress;
    this.damaged = resume.damaged;
    if (this.resumeProgress) {
      this.phase = "TRAIN";
      const { epoch, step } = this.resumeProgress;
      return `a progress state of task ${this.task} (epoch ${epoch}, step ${step}) holds its designed B`;
    }
    this.phase = this.table.first;
    if (last < 0) return "no intact finished task to resume from";
    return `resuming after the last ${this.damaged.length ? "intact " : ""}finished task ${last}`;
  }

  /** The state after task `last`: its checkpoint and the metrics so far. */
  private restoreFinished(last: number, finished: NonNullable<ResumeState["finished"]>): void {
    const { state, metrics: m } = finished;
    this.adapters.push(...state.adapters);
    this.heads.push(...state.heads);
    this.memory = state.memory.map((x) => ({ basis: x.basis, type: x.type }));
    this.classStats = state.classStats;
    if (this.table.has("CLASS_STATS") && !this.classStats)
      throw new Error(
        `${this.dir.checkpoint(last)}: holds no class statistics, which ${this.method.name} needs`,
      );
    const b = m.before_alignment;
    for (let t = 0; t <= last; t++) {
      this.cil[t] = m.curve.cil[t];
      this.withTask[t] = m.curve.with_task[t];
      this.matrix[t] = m.accuracy_matrix[t];
      if (b?.accuracy_matrix[t]) {
        this.before.cil[t] = b.curve.cil[t];
        this.before.withTask[t] = b.curve.with_task[t];
        this.before.matrix[t] = b.accuracy_matrix[t];
      }
    }
  }

  private resumeCheck(): ResumeCheck {
    const { cfg } = this.input;
    const { depth, D } = this;
    return { depth, D, rank: cfg.rank, configSha256: cfg.sha256, classOrder: this.plan.classOrder };
  }

  private async writeRunJson(): Promise<void> {
    const { cfg } = this.input;
    const { source, configDir, sha256, file, ...resolved } = cfg;
    await this.dir.writeRunJson({
      run_id: this.input.runId,
      seed: this.input.seed,
      config: resolved,
      config_file: file,
      config_sha256: sha256,
      class_order: this.plan.classOrder,
      class_names: this.plan.classOrder.map((c) => this.input.index.classNames[c]),
      task_sizes: this.plan.taskSizes,
      thresholds: this.plan.tasks.map((_, t) => threshold(cfg.lamb, cfg.lame, t, cfg.total_sessions)),
      model: this.input.model,
      weights_sha256: this.input.weightsFingerprint,
      backend: this.input.backend,
      workers: this.input.pool.size,
      // What each worker that set up computes on; workers joining later are in events.jsonl.
      worker_devices: this.input.pool
        .list()
        .filter((m) => m.reply)
        .map((m) => ({
          worker: m.id,
          backend: m.reply!.backend,
          device: m.reply!.device,
          ...(m.reply!.adapter ? { adapter: m.reply!.adapter } : {}),
        })),
      versions: this.input.versions,
      started: new Date().toISOString(),
    });
  }
}
