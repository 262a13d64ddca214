/**
 * The TRAIN phase of one task: epochs of steps, each step's micro-shards fanned out through the pool,
 * their gradients reduced in float64 in shard order and applied by the method's optimizer, with the
 * in-progress state saved every `checkpoint_every` so a restart continues bit-identically.
 */
import type { RunConfig } from "../common/config.js";
import type { AugmentKey } from "../common/data/types.js";
import { log } from "../common/log.js";
import type { MicroShard, TrainParams } from "../common/protocol.js";
import type { EventLog } from "./events.js";
import { type CoordinatorMetrics, trainStepBytes } from "./metrics.js";
import type { LearningRates } from "./optim/optimizer.js";
import type { TaskOptimizer } from "./optim/recipe.js";
import { batches, epochOrder, microShards, type TaskPlan } from "./plan.js";
import { type TaskProgress, writeProgress } from "./progress.js";
import { reduceStep, toFloat32 } from "./reduce.js";
import type { RunDir } from "./run_dir.js";
import type { WorkerPool } from "./worker_pool.js";

export interface TrainContext {
  readonly cfg: RunConfig;
  readonly seed: number;
  readonly task: TaskPlan;
  readonly D: number;
  readonly pool: WorkerPool;
  readonly runDir: RunDir;
  readonly events: EventLog;
  readonly metrics?: CoordinatorMetrics;
  readonly recipe: TaskOptimizer;
  /** The task state (with this task's B) the workers train under. */
  readonly stateVersion: number;
  readonly nextParamsVersion: () => number;
  readonly augment: (epoch: number) => AugmentKey | undefined;
  /** After each training step; a returned promise holds the next step until it settles. */
  readonly onStep?: (info: {
    task: number;
    epoch: number;
    step: number;
    steps: number;
    loss: number;
  }) => void | Promise<void>;
}

/** The trained parameters as float64 masters: per block A [D, r] for k and v, the head [n, D] and [n]. */
export interface TrainedParams {
  readonly Ak: Float64Array[];
  readonly Av: Float64Array[];
  readonly headW: Float64Array;
  readonly headB: Float64Array;
}

/** Where training starts: the first step of epoch 0, or where a saved progress state left off. */
export interface TrainStart {
  readonly params: TrainedParams;
  readonly epoch: number;
  readonly step: number;
  readonly acc: EpochSums;
  readonly optimizer?: Record<string, Float64Array>;
}

interface EpochSums {
  lossSum: number;
  correct: number;
  count: number;
}

const zeroSums = (): EpochSums => ({ lossSum: 0, correct: 0, count: 0 });

export function freshStart(params: TrainedParams): TrainStart {
  return { params, epoch: 0, step: 0, acc: zeroSums() };
}

export function startFromProgress(p: TaskProgress): TrainStart {
  return {
    params: { Ak: p.Ak, Av: p.Av, headW: p.headW, headB: p.headB },
    epoch: p.epoch,
    step: p.step,
    acc: { lossSum: p.epochLossSum, correct: p.epochCorrect, count: p.epochCount },
    optimizer: p.optimizer,
  };
}

export class TaskTraining {
  private readonly p: TrainedParams;
  private readonly flat: Float64Array[];
  private stepsSinceSave = 0;

  constructor(
    private readonly ctx: TrainContext,
    /** This task's B per block, as the workers hold it (saved with the progress state). */
    private readonly B: Float32Array[],
    private readonly start: TrainStart,
  ) {
    this.p = start.params;
    this.flat = [...this.p.Ak, ...this.p.Av, this.p.headW, this.p.headB];
    if (start.optimizer) ctx.recipe.optimizer.load(start.optimizer);
  }

  async run(): Promise<TrainedParams> {
    for (let epoch = this.start.epoch; epoch < this.ctx.recipe.epochs; epoch++) await this.epoch(epoch);
    return this.p;
  }

  private async epoch(epoch: number): Promise<void> {
    const { cfg, task: t, recipe, events } = this.ctx;
    const lr = recipe.learningRate(epoch);
    const headLr = recipe.headLearningRate(epoch);
    // Reported only where the recipe gives the head its own rate, so other methods' events are unchanged.
    const rates = headLr === lr ? {} : { head_lr: headLr };
    const resumed = epoch === this.start.epoch && this.start.step > 0;
    const firstStep = resumed ? this.start.step : 0;
    if (firstStep === 0) events.emit("epoch_started", { task: t.task, epoch, lr, ...rates });
    const started = performance.now();
    const list = batches(epochOrder(t, cfg.data_order, this.ctx.seed, epoch), cfg.batch_size);
    const acc = resumed ? { ...this.start.acc } : zeroSums();
    const countAtStart = acc.count;
    for (let step = firstStep; step < list.length; step++) {
      await this.step(epoch, step, list, this.rates(lr, headLr), acc);
      if (this.saveDue(step + 1 < list.length)) await this.save(epoch, step + 1, acc);
    }
    const seconds = (performance.now() - started) / 1000;
    const info = {
      task: t.task,
      epoch,
      epochs: recipe.epochs,
      lr,
      ...rates,
      loss: acc.lossSum / acc.count,
      train_accuracy: (100 * acc.correct) / acc.count,
      seconds,
      images_per_second: (acc.count - countAtStart) / seconds,
      workers: this.ctx.pool.size,
    };
    events.emit("epoch_finished", info);
    log.info(info, `task ${t.task} epoch ${epoch + 1}/${recipe.epochs}`);
    const every = cfg.checkpoint_every;
    if (epoch + 1 < recipe.epochs && (every === "epoch" || typeof every === "number"))
      await this.save(epoch + 1, 0, zeroSums());
  }

  /** The learning rate of each tensor of `flat`: the adapters' A_k, A_v, then the head's weight and bias. */
  private rates(lr: number, headLr: number): LearningRates {
    if (headLr === lr) return lr;
    return [...this.p.Ak.map(() => lr), ...this.p.Av.map(() => lr), headLr, headLr];
  }

  /** One optimizer step over the batch `list[step]`. */
  private async step(epoch: number, step: number, list: Int32Array[], lr: LearningRates, acc: EpochSums) {
    const { cfg, task: t, pool, metrics, stateVersion } = this.ctx;
    const shards: MicroShard[] = microShards(list[step], cfg.micro_shards).map((pos, index) => ({
      index,
      split: "train",
      samples: pos.map((q) => t.train[q]),
      targets: pos.map((q) => t.trainLabels[q] - t.classStart),
      augment: this.ctx.augment(epoch),
    }));
    const sent = this.params();
    const stepStarted = performance.now();
    await pool.boundary();
    pool.publishParams(sent);
    const results = await pool.map(shards, (w, s, c) =>
      w.trainStep({ stateVersion, params: sent, shards: s }, c),
    );
    const reduceStarted = performance.now();
    const { grads, count: n, lossSum, correct } = reduceStep(results);
    metrics?.observeAllReduce(
      trainStepBytes(results),
      (performance.now() - reduceStarted) / 1000,
      "gradients",
    );
    metrics?.observeStep((performance.now() - stepStarted) / 1000, lossSum / n, n);
    metrics?.setWorkersUp(pool.size);
    if (!Number.isFinite(lossSum))
      throw new Error(`task ${t.task} epoch ${epoch} step ${step}: the training loss is ${lossSum}`);
    this.ctx.recipe.optimizer.step(this.flat, grads, lr);
    acc.lossSum += lossSum;
    acc.correct += correct;
    acc.count += n;
    await this.ctx.onStep?.({ task: t.task, epoch, step, steps: list.length, loss: lossSum / n });
  }

  /** This step's parameters in float32, the wire's dtype, under a new version. */
  private params(): TrainParams {
    const { p } = this;
    const classes = this.ctx.task.classEnd - this.ctx.task.classStart;
    return {
      version: this.ctx.nextParamsVersion(),
      Ak: p.Ak.map(toFloat32),
      Av: p.Av.map(toFloat32),
      head: { classes, weight: toFloat32(p.headW), bias: toFloat32(p.headB) },
    };
  }

  /** Counts a step; true when `checkpoint_every` steps have passed and the epoch goes on after it. */
  private saveDue(moreSteps: boolean): boolean {
    this.stepsSinceSave++;
    const every = this.ctx.cfg.checkpoint_every;
    return typeof every === "number" && this.stepsSinceSave >= every && moreSteps;
  }

  private async save(epoch: number, step: number, acc: EpochSums): Promise<void> {
    const { cfg, task: t, D } = this.ctx;
    const { p } = this;
    const progress: TaskProgress = {
      task: t.task,
      epoch,
      step,
      epochLossSum: acc.lossSum,
      epochCorrect: acc.correct,
      epochCount: acc.count,
      configSha256: cfg.sha256,
      rank: cfg.rank,
      B: this.B,
      Ak: p.Ak,
      Av: p.Av,
      headW: p.headW,
      headB: p.headB,
      optimizer: this.ctx.recipe.optimizer.state(),
    };
    await writeProgress(this.ctx.runDir.progress, progress, D);
    this.stepsSinceSave = 0;
  }
}
