/**
 * The coordinator of one run (one seed): an explicit phase machine over the tasks,
 *
 *   COVARIANCE_PRE → DESIGN → TRAIN → COVARIANCE_POST → DUALGPM → EVAL → CHECKPOINT → (next task)
 *
 * owning every piece of state that must agree (docs/design.md#processes). Workers only compute; the
 * algorithm code here never knows which transport carries the requests.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../common/atomic_write.js";
import type { RunConfig } from "../common/config.js";
import { taskHyper } from "../common/config.js";
import { counterRng } from "../common/data/counter_rng.js";
import type { DataOptions } from "../common/data/options.js";
import type { DatasetIndex } from "../common/data/types.js";
import { log } from "../common/log.js";
import {
  type AdapterPayload,
  type HeadPayload,
  type MicroShard,
  type ModelSpec,
  PROTOCOL_VERSION,
  type TaskState,
} from "../common/protocol.js";
import {
  type CheckpointState,
  checkpointName,
  type Head,
  readCheckpoint,
  type TaskAdapters,
  writeCheckpoint,
  writePredictions,
} from "./checkpoint.js";
import { evaluateLogits, type RunMetrics, runMetrics } from "./evaluation.js";
import { EventLog } from "./events.js";
import { type LayerMemory, threshold } from "./inflora/dualgpm.js";
import { designAllB, updateAllLayers, warmLayerThreads } from "./inflora/layers_parallel.js";
import { type Mat, mat } from "./linalg/matrix.js";
import { type CoordinatorMetrics, covarianceBytes, trainStepBytes } from "./metrics.js";
import { makeOptimizer } from "./optim/optimizer.js";
import { learningRate } from "./optim/schedule.js";
import type { ParamsBroadcast } from "./params_broadcast.js";
import {
  batches,
  buildPlan,
  epochOrder,
  microShards,
  type RunPlan,
  type TaskPlan,
  testSamples,
} from "./plan.js";
import { PROGRESS_FILE, readProgress, type TaskProgress, writeProgress } from "./progress.js";
import { reduceStep, toFloat32 } from "./reduce.js";
import type { WorkerPool } from "./worker_pool.js";

export type Phase =
  | "COVARIANCE_PRE"
  | "DESIGN"
  | "TRAIN"
  | "COVARIANCE_POST"
  | "DUALGPM"
  | "EVAL"
  | "CHECKPOINT"
  | "DONE";

export interface TrainerInput {
  readonly cfg: RunConfig;
  readonly seed: number;
  readonly runDir: string;
  readonly runId: string;
  readonly index: DatasetIndex;
  readonly model: ModelSpec;
  readonly weightsFingerprint: string;
  readonly data: DataOptions;
  readonly pool: WorkerPool;
  readonly resume: boolean;
  /** For run.json: the compute backend and package versions. */
  readonly backend: string;
  readonly versions: Record<string, string>;
  /** Prometheus metrics of this coordinator (optional). */
  readonly metrics?: CoordinatorMetrics;
  /** Publishes each step's parameters once for every subscribed worker (NATS); else gRPC carries them. */
  readonly broadcast?: ParamsBroadcast;
  /** Called after every training step (progress bars). */
  readonly onStep?: (info: {
    task: number;
    epoch: number;
    step: number;
    steps: number;
    loss: number;
  }) => void;
}

const HEAD_STREAM = 0x4845_4144;
const SEQ_B_STREAM = 0x5345_5142;

/**
 * Labels of the covariance passes' augmentation keys: -1 before training, -2 after
 * (docs/design.md#quirk-augmented-covariance).
 */
const COV_PRE_EPOCH = -1;
const COV_POST_EPOCH = -2;

export class Trainer {
  phase: Phase = "COVARIANCE_PRE";
  task = 0;
  private readonly plan: RunPlan;
  private readonly events: EventLog;
  private readonly D: number;
  private readonly depth: number;
  // Versions start from the clock so a restarted coordinator never reuses one a surviving worker holds.
  private stateVersion = Date.now() * 1000;
  private paramsVersion = Date.now() * 1000;
  private resumeProgress: TaskProgress | undefined;
  /** Finished tasks' adapters (float32, as sent to workers and checkpointed). */
  private readonly adapters: TaskAdapters[] = [];
  private readonly heads: Head[] = [];
  private memory: (LayerMemory | undefined)[];
  private covariances: Mat[] = [];
  private currentB: Float32Array[] = [];
  private readonly cil: number[] = [];
  private readonly withTask: number[] = [];
  private readonly matrix: number[][] = [];

  constructor(private readonly input: TrainerInput) {
    const { cfg } = input;
    this.D = input.model.embedDim;
    this.depth = input.model.depth;
    this.memory = new Array(this.depth).fill(undefined);
    this.plan = buildPlan(input.index, {
      shuffle: cfg.shuffle,
      seed: input.seed,
      initCls: cfg.init_cls,
      increment: cfg.increment,
      totalSessions: cfg.total_sessions,
      source: configSource(cfg),
    });
    if (cfg.rank > this.D)
      throw new Error(`${configSource(cfg)}: key "rank" (${cfg.rank}) exceeds the model width ${this.D}`);
    mkdirSync(path.join(input.runDir, "checkpoints"), { recursive: true });
    mkdirSync(path.join(input.runDir, "predictions"), { recursive: true });
    this.events = new EventLog(path.join(input.runDir, "events.jsonl"), input.runId);
  }

  get eventLog(): EventLog {
    return this.events;
  }

  get runPlan(): RunPlan {
    return this.plan;
  }

  async run(): Promise<RunMetrics> {
    const { cfg } = this.input;
    const pool = this.input.pool;
    pool.observe({
      joined: (m) =>
        this.events.emit("worker_joined", {
          worker: m.id,
          backend: m.reply?.backend,
          device: m.reply?.device,
          // Whether it takes each step's parameters from the NATS publish (else one gRPC copy each).
          params_over_nats: m.reply?.paramsSubscribed === true,
        }),
      failed: (m, reason) => this.events.emit("worker_failed", { worker: m.id, reason, status: m.status }),
      left: (m, reason) => this.events.emit("worker_left", { worker: m.id, reason }),
    });
    await pool.start({
      runId: this.input.runId,
      protocolVersion: PROTOCOL_VERSION,
      weightsPath: cfg.weights,
      weightsFingerprint: this.input.weightsFingerprint,
      model: this.input.model,
      data: this.input.data,
      ...(this.input.broadcast ? { paramsSubject: this.input.broadcast.subject } : {}),
    });
    if (this.input.resume) await this.restore();
    await this.writeRunJson();
    this.events.emit("run_started", {
      seed: this.input.seed,
      tasks: this.plan.tasks.length,
      resumed_at_task: this.task,
    });
    if (this.task >= this.plan.tasks.length) this.phase = "DONE";
    else this.events.emit("task_started", { task: this.task });
    try {
      while (this.phase !== "DONE") await this.advance();
    } catch (err) {
      this.events.emit("run_failed", { task: this.task, phase: this.phase, error: (err as Error).message });
      throw err;
    }
    const metrics = runMetrics(this.cil, this.withTask, this.matrix);
    this.events.emit("run_finished", { ...metrics });
    return metrics;
  }

  /** Runs the current phase and moves to the next. */
  private async advance(): Promise<void> {
    const t = this.plan.tasks[this.task];
    const seqLora = this.input.cfg.model_name === "SeqLoRA";
    this.events.emit("phase_started", { task: this.task, phase: this.phase });
    switch (this.phase) {
      case "COVARIANCE_PRE":
        if (this.resumeProgress) {
          // Restarted mid-task: B was designed before the restart and is part of the progress state.
          this.phase = "TRAIN";
          return;
        }
        if (!seqLora) {
          warmLayerThreads(this.D, this.depth);
          this.covariances = await this.covariancePass(t, COV_PRE_EPOCH);
        }
        this.phase = "DESIGN";
        return;
      case "DESIGN":
        await this.design(t, seqLora);
        this.phase = "TRAIN";
        return;
      case "TRAIN":
        await this.train(t, this.resumeProgress);
        this.resumeProgress = undefined;
        this.phase = seqLora ? "EVAL" : "COVARIANCE_POST";
        return;
      case "COVARIANCE_POST":
        this.covariances = await this.covariancePass(t, COV_POST_EPOCH);
        this.phase = "DUALGPM";
        return;
      case "DUALGPM":
        await this.updateMemory();
        this.phase = "EVAL";
        return;
      case "EVAL":
        await this.evaluate(t);
        this.phase = "CHECKPOINT";
        return;
      case "CHECKPOINT":
        await this.checkpoint();
        rmSync(path.join(this.input.runDir, "checkpoints", PROGRESS_FILE), { force: true });
        this.events.emit("task_finished", {
          task: this.task,
          cil: this.cil[this.task],
          with_task: this.withTask[this.task],
          accuracy_row: this.matrix[this.task],
        });
        this.task++;
        if (this.task >= this.plan.tasks.length) this.phase = "DONE";
        else {
          this.phase = "COVARIANCE_PRE";
          this.events.emit("task_started", { task: this.task });
        }
        return;
      case "DONE":
        return;
    }
  }

  private async publish(opts: { training: boolean; heads: boolean }): Promise<number> {
    const finished: AdapterPayload[] = this.adapters.map((a, task) => ({ task, ...a }));
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

  private augmentKey(epoch: number) {
    return this.input.cfg.augment ? { seed: this.input.seed, task: this.task, epoch } : undefined;
  }

  /** Per block C = (1/N) Σ x xᵀ over every token of the task's training images, reduced in float64. */
  private async covariancePass(t: TaskPlan, epoch: number): Promise<Mat[]> {
    const stateVersion = await this.publish({ training: false, heads: false });
    const { cfg } = this.input;
    const sums = Array.from({ length: this.depth }, () => new Float64Array(this.D * this.D));
    let tokens = 0;
    const augment = this.augmentKey(epoch);
    // Fixed-size shards (not batches): each returns depth × D² sums however many images it covers, so
    // big shards keep the traffic down; the cut never depends on the number of workers.
    const microBatch = Math.ceil(cfg.batch_size / cfg.micro_shards);
    const perRound = Math.max(1, this.input.pool.size);
    const all = batches(t.train, cfg.covariance_shard_images);
    for (let first = 0; first < all.length; first += perRound) {
      const shards: MicroShard[] = all.slice(first, first + perRound).map((samples, k) => ({
        index: first + k,
        split: "train",
        samples,
        augment,
      }));
      await this.input.pool.boundary();
      const results = await this.input.pool.map(shards, (w, s) =>
        w.covariance({ stateVersion, shards: s, microBatch }),
      );
      const reduceStarted = performance.now();
      // Each shard straight into the running sum, in shard order: rounds (which depend on the number of
      // workers) must not change the order of the float64 additions.
      for (const r of results) {
        for (let i = 0; i < this.depth; i++) {
          const acc = sums[i];
          const part = r.sums[i];
          for (let k = 0; k < acc.length; k++) acc[k] += part[k];
        }
        tokens += r.tokens;
      }
      this.input.metrics?.observeAllReduce(
        covarianceBytes(results),
        (performance.now() - reduceStarted) / 1000,
        "covariance",
      );
    }
    return sums.map((s) => {
      const m = mat(this.D, this.D, s);
      for (let k = 0; k < s.length; k++) s[k] /= tokens;
      // Symmetrise: float32 partial sums are symmetric only up to rounding.
      for (let r = 0; r < this.D; r++) {
        for (let c = r + 1; c < this.D; c++) {
          const v = (s[r * this.D + c] + s[c * this.D + r]) / 2;
          s[r * this.D + c] = v;
          s[c * this.D + r] = v;
        }
      }
      return m;
    });
  }

  private async design(t: TaskPlan, seqLora: boolean): Promise<void> {
    const { cfg } = this.input;
    const r = cfg.rank;
    const D = this.D;
    const started = performance.now();
    if (seqLora) {
      // Sequential LoRA baseline: B as nn.Linear initialises it, U(±1/√D), no projection.
      this.currentB = Array.from({ length: this.depth }, (_, i) => {
        const rng = counterRng(this.input.seed, SEQ_B_STREAM, t.task, i);
        const bound = 1 / Math.sqrt(D);
        return Float32Array.from({ length: r * D }, () => (2 * rng.nextFloat() - 1) * bound);
      });
    } else {
      const b = await designAllB(this.covariances, r, this.task > 0 ? this.memory : undefined);
      this.currentB = b.map((x) => Float32Array.from(x));
    }
    const seconds = (performance.now() - started) / 1000;
    this.input.metrics?.observeLinalg("design", seconds);
    log.info({ task: t.task, seconds }, "designed B");
  }

  private initHead(t: TaskPlan): { w: Float64Array; b: Float64Array } {
    const n = t.classEnd - t.classStart;
    const w = new Float64Array(n * this.D);
    const b = new Float64Array(n);
    if (this.input.cfg.head_init === "torch") {
      // nn.Linear's default: weight and bias uniform in ±1/√fan_in.
      const rng = counterRng(this.input.seed, HEAD_STREAM, t.task);
      const bound = 1 / Math.sqrt(this.D);
      for (let i = 0; i < w.length; i++) w[i] = (2 * rng.nextFloat() - 1) * bound;
      for (let i = 0; i < b.length; i++) b[i] = (2 * rng.nextFloat() - 1) * bound;
    }
    return { w, b };
  }

  private async train(t: TaskPlan, from?: TaskProgress): Promise<void> {
    const { cfg } = this.input;
    const hyper = taskHyper(cfg, t.task);
    const D = this.D;
    const r = cfg.rank;
    const classes = t.classEnd - t.classStart;
    let p: { Ak: Float64Array[]; Av: Float64Array[]; headW: Float64Array; headB: Float64Array };
    const optimizer = makeOptimizer(cfg.optim, hyper.weightDecay);
    if (from) {
      this.currentB = from.B;
      p = { Ak: from.Ak, Av: from.Av, headW: from.headW, headB: from.headB };
      optimizer.load(from.optimizer);
    } else {
      const head = this.initHead(t);
      p = {
        Ak: Array.from({ length: this.depth }, () => new Float64Array(D * r)),
        Av: Array.from({ length: this.depth }, () => new Float64Array(D * r)),
        headW: head.w,
        headB: head.b,
      };
    }
    const params = [...p.Ak, ...p.Av, p.headW, p.headB];
    const stateVersion = await this.publish({ training: true, heads: false });
    const every = cfg.checkpoint_every;
    let stepsSinceSave = 0;
    const save = (epoch: number, step: number, acc: { lossSum: number; correct: number; count: number }) =>
      writeProgress(
        path.join(this.input.runDir, "checkpoints", PROGRESS_FILE),
        {
          task: t.task,
          epoch,
          step,
          epochLossSum: acc.lossSum,
          epochCorrect: acc.correct,
          epochCount: acc.count,
          configSha256: cfg.sha256,
          rank: r,
          B: this.currentB,
          Ak: p.Ak,
          Av: p.Av,
          headW: p.headW,
          headB: p.headB,
          optimizer: optimizer.state(),
        },
        D,
      );
    for (let epoch = from?.epoch ?? 0; epoch < hyper.epochs; epoch++) {
      const lr = learningRate(cfg.optim, hyper.lr, epoch, hyper.epochs);
      const firstStep = from && epoch === from.epoch ? from.step : 0;
      if (firstStep === 0) this.events.emit("epoch_started", { task: t.task, epoch, lr });
      const started = performance.now();
      const order = epochOrder(t, cfg.data_order, this.input.seed, epoch);
      const list = batches(order, cfg.batch_size);
      const acc =
        firstStep > 0 && from
          ? { lossSum: from.epochLossSum, correct: from.epochCorrect, count: from.epochCount }
          : { lossSum: 0, correct: 0, count: 0 };
      const countAtStart = acc.count;
      const augment = this.augmentKey(epoch);
      for (let step = firstStep; step < list.length; step++) {
        const positions = list[step];
        const shards: MicroShard[] = microShards(positions, cfg.micro_shards).map((pos, index) => ({
          index,
          split: "train",
          samples: pos.map((q) => t.train[q]),
          targets: pos.map((q) => t.trainLabels[q] - t.classStart),
          augment,
        }));
        const sent = {
          version: ++this.paramsVersion,
          Ak: p.Ak.map(toFloat32),
          Av: p.Av.map(toFloat32),
          head: { classes, weight: toFloat32(p.headW), bias: toFloat32(p.headB) },
        };
        const stepStarted = performance.now();
        await this.input.pool.boundary();
        const digest = this.input.broadcast?.publish(sent, D);
        const published = digest === undefined ? undefined : { sha256: digest };
        const results = await this.input.pool.map(shards, (w, s) =>
          w.trainStep({ stateVersion, params: sent, shards: s, published }),
        );
        const reduceStarted = performance.now();
        const { grads, count: n, lossSum: batchLoss, correct } = reduceStep(results);
        this.input.metrics?.observeAllReduce(
          trainStepBytes(results),
          (performance.now() - reduceStarted) / 1000,
          "gradients",
        );
        this.input.metrics?.observeStep((performance.now() - stepStarted) / 1000, batchLoss / n, n);
        this.input.metrics?.setWorkersUp(this.input.pool.size);
        if (!Number.isFinite(batchLoss)) {
          throw new Error(`task ${t.task} epoch ${epoch} step ${step}: the training loss is ${batchLoss}`);
        }
        optimizer.step(params, grads, lr);
        acc.lossSum += batchLoss;
        acc.correct += correct;
        acc.count += n;
        this.input.onStep?.({ task: t.task, epoch, step, steps: list.length, loss: batchLoss / n });
        stepsSinceSave++;
        if (typeof every === "number" && stepsSinceSave >= every && step + 1 < list.length) {
          await save(epoch, step + 1, acc);
          stepsSinceSave = 0;
        }
      }
      const seconds = (performance.now() - started) / 1000;
      const info = {
        task: t.task,
        epoch,
        epochs: hyper.epochs,
        lr,
        loss: acc.lossSum / acc.count,
        train_accuracy: (100 * acc.correct) / acc.count,
        seconds,
        images_per_second: (acc.count - countAtStart) / seconds,
        workers: this.input.pool.size,
      };
      this.events.emit("epoch_finished", info);
      log.info(info, `task ${t.task} epoch ${epoch + 1}/${hyper.epochs}`);
      if (epoch + 1 < hyper.epochs && (every === "epoch" || typeof every === "number")) {
        await save(epoch + 1, 0, { lossSum: 0, correct: 0, count: 0 });
        stepsSinceSave = 0;
      }
    }
    this.adapters.push({
      rank: r,
      Bk: this.currentB,
      Bv: this.currentB,
      Ak: p.Ak.map(toFloat32),
      Av: p.Av.map(toFloat32),
    });
    this.heads.push({ classes, weight: toFloat32(p.headW), bias: toFloat32(p.headB) });
  }

  private async updateMemory(): Promise<void> {
    const { cfg } = this.input;
    const eps = threshold(cfg.lamb, cfg.lame, this.task, cfg.total_sessions);
    const started = performance.now();
    this.memory = await updateAllLayers(this.memory, this.covariances, {
      threshold: eps,
      gpmOnly: cfg.model_name.startsWith("InfLoRAb5"),
    });
    this.covariances = [];
    const seconds = (performance.now() - started) / 1000;
    this.input.metrics?.observeLinalg("dualgpm", seconds);
    this.input.metrics?.setBasisWidths(
      this.memory.map((m) => m!.basis.cols),
      this.memory.map((m) => m!.type),
    );
    log.info(
      {
        task: this.task,
        threshold: eps,
        seconds,
        widths: this.memory.map((m) => `${m!.basis.cols}${m!.type === "retain" ? "r" : ""}`).join(" "),
      },
      "DualGPM updated",
    );
  }

  private async evaluate(t: TaskPlan): Promise<void> {
    const { cfg } = this.input;
    const stateVersion = await this.publish({ training: false, heads: true });
    const { samples, labels } = testSamples(this.plan, t.classEnd);
    const C = t.classEnd;
    const logits = new Float32Array(samples.length * C);
    let offset = 0;
    for (const batch of batches(samples, cfg.eval_batch_size)) {
      const shards: MicroShard[] = microShards(batch, cfg.micro_shards).map((s, index) => ({
        index,
        split: "test",
        samples: s,
      }));
      await this.input.pool.boundary();
      const results = await this.input.pool.map(shards, (w, s) => w.evaluate({ stateVersion, shards: s }));
      for (const r of results) {
        logits.set(r.logits, offset);
        offset += r.logits.length;
      }
    }
    const seen = this.plan.tasks.slice(0, this.task + 1);
    const ev = evaluateLogits(logits, labels, seen);
    this.cil[this.task] = ev.cil;
    this.withTask[this.task] = ev.withTask;
    this.matrix[this.task] = ev.perTask;
    const name = checkpointName(this.task);
    await writePredictions(path.join(this.input.runDir, "predictions", name), this.task, {
      labels,
      pred: ev.pred,
      predWithTask: ev.predWithTask,
      logits,
      classes: C,
    });
    await writeFileAtomic(
      path.join(this.input.runDir, "metrics.json"),
      `${JSON.stringify(runMetrics(this.cil, this.withTask, this.matrix), null, 1)}\n`,
    );
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
    };
  }

  private async checkpoint(): Promise<void> {
    const file = path.join(this.input.runDir, "checkpoints", checkpointName(this.task));
    await writeCheckpoint(file, this.checkpointState(), this.D);
    this.events.emit("checkpoint_written", { task: this.task, file: path.relative(this.input.runDir, file) });
  }

  /** Continues after the newest finished task found in RUN_DIR/checkpoints. */
  private async restore(): Promise<void> {
    const dir = path.join(this.input.runDir, "checkpoints");
    let last = -1;
    while (last + 1 < this.plan.tasks.length && existsSync(path.join(dir, checkpointName(last + 1)))) last++;
    await this.restoreProgress(last + 1);
    if (last < 0) {
      log.info(
        { runDir: this.input.runDir, mid_task: this.resumeProgress !== undefined },
        "no finished task to resume from",
      );
      return;
    }
    const file = path.join(dir, checkpointName(last));
    const ck = await readCheckpoint(file, { depth: this.depth, D: this.D });
    if (ck.configSha256 !== this.input.cfg.sha256) {
      throw new Error(
        `${file}: written for a different config (sha256 ${ck.configSha256}, this config ${this.input.cfg.sha256}); refusing to resume`,
      );
    }
    if (JSON.stringify(ck.classOrder) !== JSON.stringify(this.plan.classOrder)) {
      throw new Error(`${file}: class order differs from this run's; refusing to resume`);
    }
    this.adapters.push(...ck.adapters);
    this.heads.push(...ck.heads);
    this.memory = ck.memory.map((m) => ({ basis: m.basis, type: m.type }));
    const metricsFile = path.join(this.input.runDir, "metrics.json");
    const m = JSON.parse(readFileSync(metricsFile, "utf8")) as RunMetrics;
    if (m.accuracy_matrix.length < last + 1) {
      throw new Error(
        `${metricsFile}: holds ${m.accuracy_matrix.length} tasks but the checkpoint is after task ${last}`,
      );
    }
    for (let t = 0; t <= last; t++) {
      this.cil[t] = m.curve.cil[t];
      this.withTask[t] = m.curve.with_task[t];
      this.matrix[t] = m.accuracy_matrix[t];
    }
    this.task = last + 1;
    this.phase = "COVARIANCE_PRE";
    log.info({ file, task: this.task }, "resuming after the last finished task");
  }

  /** Picks up the in-progress state of `task` if the previous coordinator saved one. */
  private async restoreProgress(task: number): Promise<void> {
    const file = path.join(this.input.runDir, "checkpoints", PROGRESS_FILE);
    if (!existsSync(file)) return;
    const progress = await readProgress(file, { depth: this.depth, D: this.D });
    if (progress.configSha256 !== this.input.cfg.sha256) {
      throw new Error(`${file}: written for a different config; refusing to resume`);
    }
    if (progress.task !== task) {
      log.warn({ file, progressTask: progress.task, task }, "ignoring progress state of another task");
      return;
    }
    if (progress.rank !== this.input.cfg.rank)
      throw new Error(`${file}: rank ${progress.rank} differs from the config's`);
    this.resumeProgress = progress;
    log.info({ file, task, epoch: progress.epoch, step: progress.step }, "resuming inside the task");
  }

  private async writeRunJson(): Promise<void> {
    const { cfg } = this.input;
    const { source, configDir, sha256, file, ...resolved } = cfg;
    const run = {
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
      versions: this.input.versions,
      started: new Date().toISOString(),
    };
    await writeFileAtomic(path.join(this.input.runDir, "run.json"), `${JSON.stringify(run, null, 1)}\n`);
  }
}

function configSource(cfg: RunConfig): string {
  return cfg.file;
}

export function headPayload(h: Head): HeadPayload {
  return { classes: h.classes, weight: h.weight, bias: h.bias };
}
