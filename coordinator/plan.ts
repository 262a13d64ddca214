/**
 * What runs when: class order, task split, the samples of each task, the per-epoch order, batches and
 * micro-shards (docs/design.md#plan, #micro-shards). Pure functions of the config and the dataset's labels.
 */
import { classOrder, labelMap, taskSizes } from "../common/data/class_order.js";
import { counterRng } from "../common/data/counter_rng.js";
import type { DatasetIndex } from "../common/data/types.js";

export class PlanError extends Error {
  override readonly name = "PlanError";
}

export interface TaskPlan {
  readonly task: number;
  /** Labels [classStart, classEnd) belong to this task (labels = positions in the class order). */
  readonly classStart: number;
  readonly classEnd: number;
  /** Training samples class by class (ascending label), file order inside a class. */
  readonly train: Int32Array;
  /** Label of each entry of `train`. */
  readonly trainLabels: Int32Array;
}

export interface RunPlan {
  readonly classOrder: number[];
  readonly taskSizes: number[];
  readonly tasks: TaskPlan[];
  /** Label (position in the class order) of every sample, per split. */
  readonly trainLabels: Int32Array;
  readonly testLabels: Int32Array;
}

export interface PlanOptions {
  readonly shuffle: boolean;
  readonly seed: number;
  readonly initCls: number;
  readonly increment: number;
  readonly totalSessions: number;
  /** Names the config in errors. */
  readonly source: string;
}

function byClass(labels: Int32Array, numClasses: number): number[][] {
  const groups: number[][] = Array.from({ length: numClasses }, () => []);
  labels.forEach((l, i) => {
    groups[l].push(i);
  });
  return groups;
}

export function buildPlan(index: DatasetIndex, opts: PlanOptions): RunPlan {
  const numClasses = index.classNames.length;
  let sizes: number[];
  try {
    sizes = taskSizes(opts.initCls, opts.increment, numClasses);
  } catch (err) {
    throw new PlanError(`${opts.source}: ${(err as Error).message} (the dataset has ${numClasses} classes)`);
  }
  if (sizes.length !== opts.totalSessions) {
    throw new PlanError(
      `${opts.source}: init_cls ${opts.initCls} and increment ${opts.increment} split the dataset's ${numClasses} classes into ` +
        `${sizes.length} tasks [${sizes.join(", ")}], but total_sessions is ${opts.totalSessions}`,
    );
  }
  const order = classOrder(numClasses, opts.shuffle, opts.seed);
  const map = labelMap(order);
  const relabel = (raw: Int32Array) => raw.map((l) => map[l]);
  const trainLabels = relabel(index.labels("train"));
  const testLabels = relabel(index.labels("test"));
  const trainGroups = byClass(trainLabels, numClasses);
  const testGroups = byClass(testLabels, numClasses);
  for (let c = 0; c < numClasses; c++) {
    if (trainGroups[c].length === 0) {
      throw new PlanError(`${opts.source}: class ${index.classNames[order[c]]} has no training samples`);
    }
    if (testGroups[c].length === 0) {
      throw new PlanError(`${opts.source}: class ${index.classNames[order[c]]} has no test samples`);
    }
  }
  const tasks: TaskPlan[] = [];
  let start = 0;
  sizes.forEach((size, task) => {
    const samples: number[] = [];
    const labels: number[] = [];
    for (let c = start; c < start + size; c++) {
      for (const i of trainGroups[c]) {
        samples.push(i);
        labels.push(c);
      }
    }
    tasks.push({
      task,
      classStart: start,
      classEnd: start + size,
      train: Int32Array.from(samples),
      trainLabels: Int32Array.from(labels),
    });
    start += size;
  });
  return { classOrder: order, taskSizes: sizes, tasks, trainLabels, testLabels };
}

export type DataOrder = "shuffle" | "class_sorted" | "interleaved";

/** Positions into `task.train` in the order an epoch visits them. */
export function epochOrder(task: TaskPlan, mode: DataOrder, seed: number, epoch: number): Int32Array {
  const n = task.train.length;
  const positions = Int32Array.from({ length: n }, (_, i) => i);
  if (mode === "class_sorted") return positions;
  if (mode === "interleaved") {
    // 1st sample of each class (ascending label), then the 2nd of each, …; exhausted classes drop out.
    const groups: number[][] = [];
    for (let i = 0; i < n; i++) {
      const c = task.trainLabels[i] - task.classStart;
      if (!groups[c]) groups[c] = [];
      groups[c].push(i);
    }
    const out: number[] = [];
    const longest = Math.max(...groups.map((g) => g.length));
    for (let k = 0; k < longest; k++) for (const g of groups) if (k < g.length) out.push(g[k]);
    return Int32Array.from(out);
  }
  // Fisher–Yates driven by a stream keyed by (seed, task, epoch): identical in every process.
  const rng = counterRng(seed, SHUFFLE_STREAM, task.task, epoch);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.nextFloat() * (i + 1));
    const t = positions[i];
    positions[i] = positions[j];
    positions[j] = t;
  }
  return positions;
}

const SHUFFLE_STREAM = 0x5348_5546;

/** Consecutive chunks of `batchSize`; the last one may be short. */
export function batches(order: Int32Array, batchSize: number): Int32Array[] {
  const out: Int32Array[] = [];
  for (let s = 0; s < order.length; s += batchSize)
    out.push(order.subarray(s, Math.min(s + batchSize, order.length)));
  return out;
}

/**
 * Cuts a batch into `count` micro-shards as evenly as possible (the first ones one larger), dropping empty
 * ones; the cut depends only on the batch length, never on the number of workers.
 */
export function microShards(batch: Int32Array, count: number): Int32Array[] {
  const n = batch.length;
  const k = Math.min(count, n);
  const base = Math.floor(n / k);
  const extra = n % k;
  const out: Int32Array[] = [];
  let s = 0;
  for (let i = 0; i < k; i++) {
    const len = base + (i < extra ? 1 : 0);
    out.push(batch.subarray(s, s + len));
    s += len;
  }
  return out;
}

/** Test samples of labels [0, classEnd): class by class in label order, file order inside a class. */
export function testSamples(plan: RunPlan, classEnd: number): { samples: Int32Array; labels: Int32Array } {
  const samples: number[] = [];
  const labels: number[] = [];
  const groups = byClass(plan.testLabels, plan.classOrder.length);
  for (let c = 0; c < classEnd; c++) {
    for (const i of groups[c]) {
      samples.push(i);
      labels.push(c);
    }
  }
  return { samples: Int32Array.from(samples), labels: Int32Array.from(labels) };
}
