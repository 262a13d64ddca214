/**
 * The in-progress state of the task being trained, written every `checkpoint_every` (default: each
 * epoch) to RUN_DIR/checkpoints/progress.safetensors, so a restarted coordinator continues mid-task with
 * bit-identical results. Together with the last finished task's checkpoint it is everything a resume
 * needs; the augmentation and shuffle streams are counter-based, so there is no RNG state to keep.
 */
import { readCheckedSafetensors, writeCheckedSafetensors } from "../common/checked_safetensors.js";
import type { StTensor } from "../common/safetensors.js";
import { CheckpointError } from "./checkpoint.js";

export const PROGRESS_FORMAT = "inflora-progress/1";
export const PROGRESS_FILE = "progress.safetensors";

export interface TaskProgress {
  readonly task: number;
  /** Where training continues: the next epoch and the next step inside it. */
  readonly epoch: number;
  readonly step: number;
  /** Running sums of the epoch in progress (for its log line). */
  readonly epochLossSum: number;
  readonly epochCorrect: number;
  readonly epochCount: number;
  readonly configSha256: string;
  readonly rank: number;
  /** Per block B [r, D] float32 (designed before training). */
  readonly B: Float32Array[];
  /** float64 masters: per block A [D, r] for k and v, head [n, D] and [n]. */
  readonly Ak: Float64Array[];
  readonly Av: Float64Array[];
  readonly headW: Float64Array;
  readonly headB: Float64Array;
  readonly optimizer: Record<string, Float64Array>;
}

export async function writeProgress(file: string, p: TaskProgress, D: number): Promise<void> {
  const t = new Map<string, StTensor>();
  const f64 = (shape: number[], data: Float64Array): StTensor => ({ dtype: "F64", shape, data });
  for (let i = 0; i < p.B.length; i++) {
    t.set(`state.B.${i}`, { dtype: "F32", shape: [p.rank, D], data: p.B[i] });
    t.set(`state.A_k.${i}`, f64([D, p.rank], p.Ak[i]));
    t.set(`state.A_v.${i}`, f64([D, p.rank], p.Av[i]));
  }
  t.set("state.head.weight", f64([p.headB.length, D], p.headW));
  t.set("state.head.bias", f64([p.headB.length], p.headB));
  for (const [k, v] of Object.entries(p.optimizer)) t.set(`state.optim.${k}`, f64([v.length], v));
  await writeCheckedSafetensors(file, t, {
    format: PROGRESS_FORMAT,
    task: String(p.task),
    epoch: String(p.epoch),
    step: String(p.step),
    epoch_loss_sum: String(p.epochLossSum),
    epoch_correct: String(p.epochCorrect),
    epoch_count: String(p.epochCount),
    config_sha256: p.configSha256,
  });
}

export async function readProgress(
  file: string,
  expect: { depth: number; D: number },
): Promise<TaskProgress> {
  const { tensors, metadata } = await readCheckedSafetensors(file);
  const fail = (msg: string): never => {
    throw new CheckpointError(`${file}: ${msg}`);
  };
  if (metadata.format !== PROGRESS_FORMAT)
    fail(`metadata "format" is ${JSON.stringify(metadata.format)}, expected "${PROGRESS_FORMAT}"`);
  const num = (key: string): number => {
    const v = Number(metadata[key]);
    if (metadata[key] === undefined || !Number.isFinite(v))
      fail(`metadata "${key}" is missing or not a number`);
    return v;
  };
  const get = (name: string, dtype: "F32" | "F64"): StTensor => {
    const x = tensors.get(name);
    if (!x) return fail(`missing tensor ${name}`);
    if (x.dtype !== dtype) fail(`tensor ${name} has dtype ${x.dtype}, expected ${dtype}`);
    return x;
  };
  const { depth, D } = expect;
  const B: Float32Array[] = [];
  const Ak: Float64Array[] = [];
  const Av: Float64Array[] = [];
  for (let i = 0; i < depth; i++) {
    B.push(get(`state.B.${i}`, "F32").data as Float32Array);
    Ak.push(Float64Array.from(get(`state.A_k.${i}`, "F64").data as Float64Array));
    Av.push(Float64Array.from(get(`state.A_v.${i}`, "F64").data as Float64Array));
  }
  const rank = B[0].length / D;
  if (
    !Number.isInteger(rank) ||
    B.some((b) => b.length !== rank * D) ||
    Ak.some((a) => a.length !== rank * D)
  ) {
    fail(`adapter tensors do not have the shapes [r, ${D}] and [${D}, r]`);
  }
  const optimizer: Record<string, Float64Array> = {};
  for (const [name, x] of tensors) {
    if (name.startsWith("state.optim."))
      optimizer[name.slice("state.optim.".length)] = Float64Array.from(x.data as Float64Array);
  }
  return {
    task: num("task"),
    epoch: num("epoch"),
    step: num("step"),
    epochLossSum: num("epoch_loss_sum"),
    epochCorrect: num("epoch_correct"),
    epochCount: num("epoch_count"),
    configSha256: metadata.config_sha256 ?? "",
    rank,
    B,
    Ak,
    Av,
    headW: Float64Array.from(get("state.head.weight", "F64").data as Float64Array),
    headB: Float64Array.from(get("state.head.bias", "F64").data as Float64Array),
    optimizer,
  };
}
