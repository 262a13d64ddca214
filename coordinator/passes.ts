/**
 * The passes over a task's data that only read the model: the covariance pass, the evaluation pass and the
 * class-statistics pass.
 * Each cuts its samples into micro-shards that never depend on the number of workers, fans them out
 * through the pool and takes the results back in shard order.
 */
import type { RunConfig } from "../common/config.js";
import type { AugmentKey } from "../common/data/types.js";
import type { EvalResult, MicroShard } from "../common/protocol.js";
import type { ClassStatistics } from "./inflora/alignment.js";
import { ClassStatsSum } from "./inflora/class_stats.js";
import { CovarianceSum } from "./inflora/covariance.js";
import type { Mat } from "./linalg/matrix.js";
import { type CoordinatorMetrics, covarianceBytes } from "./metrics.js";
import { batches, microShards, type TaskPlan } from "./plan.js";
import type { WorkerPool } from "./worker_pool.js";

export interface PassContext {
  readonly cfg: RunConfig;
  readonly pool: WorkerPool;
  readonly metrics?: CoordinatorMetrics;
  /** The task state the workers compute under. */
  readonly stateVersion: number;
}

/** C per block over `train` (sample indices), under the training transform with key `augment`. */
export async function covariancePass(
  ctx: PassContext,
  train: Int32Array,
  augment: AugmentKey | undefined,
  shape: { depth: number; D: number },
): Promise<Mat[]> {
  const { cfg, pool, stateVersion } = ctx;
  const sum = new CovarianceSum(shape.depth, shape.D);
  // Fixed-size shards (not batches): each returns depth × D² sums however many images it covers, so
  // big shards keep the traffic down; the cut never depends on the number of workers.
  const microBatch = Math.ceil(cfg.batch_size / cfg.micro_shards);
  const perRound = Math.max(1, pool.size);
  const all = batches(train, cfg.covariance_shard_images);
  for (let first = 0; first < all.length; first += perRound) {
    const shards: MicroShard[] = all.slice(first, first + perRound).map((samples, k) => ({
      index: first + k,
      split: "train",
      samples,
      augment,
    }));
    await pool.boundary();
    const results = await pool.map(shards, (w, s, c) =>
      w.covariance({ stateVersion, shards: s, microBatch }, c),
    );
    const reduceStarted = performance.now();
    sum.add(results);
    ctx.metrics?.observeAllReduce(
      covarianceBytes(results),
      (performance.now() - reduceStarted) / 1000,
      "covariance",
    );
  }
  return sum.finish();
}

/**
 * Mean and covariance of the final-norm features of each class of task `t`, over all its training images
 * under the test transform. Shards of ⌈eval_batch_size / micro_shards⌉ images, a round of one per worker;
 * each shard's float32 features go into the float64 sums in shard order (coordinator/inflora/class_stats.ts).
 */
export async function classStatisticsPass(
  ctx: PassContext,
  t: TaskPlan,
  D: number,
): Promise<ClassStatistics> {
  const { cfg, pool, stateVersion } = ctx;
  const sum = new ClassStatsSum(t.classStart, t.classEnd - t.classStart, D);
  const all = batches(t.train, Math.ceil(cfg.eval_batch_size / cfg.micro_shards));
  const perRound = Math.max(1, pool.size);
  let offset = 0;
  for (let first = 0; first < all.length; first += perRound) {
    const shards: MicroShard[] = all.slice(first, first + perRound).map((samples, k) => ({
      index: first + k,
      split: "train",
      samples,
    }));
    await pool.boundary();
    const results = await pool.map(shards, (w, s) =>
      w.evaluate({ stateVersion, shards: s, output: "features" }),
    );
    const reduceStarted = performance.now();
    let bytes = 0;
    for (const r of results) {
      const n = r.logits.length / D;
      sum.add(r.logits, t.trainLabels.subarray(offset, offset + n));
      offset += n;
      bytes += r.logits.byteLength;
    }
    ctx.metrics?.observeAllReduce(bytes, (performance.now() - reduceStarted) / 1000, "class_stats");
  }
  return sum.finish();
}

/** The logits [samples, classes] of `samples` (test split) under the state's heads, from the pool. */
export function evaluationPass(
  ctx: PassContext,
  samples: Int32Array,
  classes: number,
): Promise<Float32Array> {
  const { cfg, pool, stateVersion } = ctx;
  return evaluateInShards(cfg, samples, classes, async (shards) => {
    await pool.boundary();
    return pool.map(shards, (w, s, c) => w.evaluate({ stateVersion, shards: s }, c));
  });
}

/**
 * The logits [samples, classes] of `samples` (test split): batches of `eval_batch_size`, each cut into
 * `micro_shards` shards for `evaluate`, whose results come back in shard order.
 */
export async function evaluateInShards(
  cfg: Pick<RunConfig, "eval_batch_size" | "micro_shards">,
  samples: Int32Array,
  classes: number,
  evaluate: (shards: MicroShard[]) => Promise<EvalResult[]>,
): Promise<Float32Array> {
  const logits = new Float32Array(samples.length * classes);
  let offset = 0;
  for (const batch of batches(samples, cfg.eval_batch_size)) {
    const shards: MicroShard[] = microShards(batch, cfg.micro_shards).map((s, index) => ({
      index,
      split: "test",
      samples: s,
    }));
    for (const r of await evaluate(shards)) {
      logits.set(r.logits, offset);
      offset += r.logits.length;
    }
  }
  return logits;
}
