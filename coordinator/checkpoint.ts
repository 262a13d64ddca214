/**
 * The checkpoint contract (docs/design.md#checkpoints): `checkpoints/task-XX.safetensors` in paper notation,
 * everything a resume after task XX needs. Reading validates names, shapes and metadata and names the
 * file and tensor on any mismatch.
 */
import type { AdapterSet, Head } from "../common/adapters.js";
import { readCheckedSafetensors, writeCheckedSafetensors } from "../common/checked_safetensors.js";
import { readSafetensors, type StTensor, writeSafetensors } from "../common/safetensors.js";
import type { ClassStatistics } from "./inflora/alignment.js";
import type { ProjectionType } from "./inflora/dualgpm.js";
import type { Mat } from "./linalg/matrix.js";

export const CHECKPOINT_FORMAT = "inflora-checkpoint/1";

export class CheckpointError extends Error {
  override readonly name = "CheckpointError";
}

export interface CheckpointState {
  /** The last task the state includes (0-based). */
  readonly task: number;
  readonly adapters: AdapterSet[];
  readonly heads: Head[];
  readonly memory: { basis: Mat; type: ProjectionType }[];
  readonly classOrder: number[];
  readonly configSha256: string;
  /** Classifier alignment's statistics of every class so far (methods with a CLASS_STATS phase). */
  readonly classStats?: ClassStatistics;
}

export function checkpointName(task: number): string {
  return `task-${String(task).padStart(2, "0")}.safetensors`;
}

const f32 = (shape: number[], data: Float32Array): StTensor => ({ dtype: "F32", shape, data });

export async function writeCheckpoint(file: string, s: CheckpointState, D: number): Promise<void> {
  const tensors = new Map<string, StTensor>();
  s.adapters.forEach((a, t) => {
    a.Bk.forEach((_, i) => {
      const p = `blocks.${i}.attn.inflora.`;
      tensors.set(`${p}B_k.${t}`, f32([a.rank, D], a.Bk[i]));
      tensors.set(`${p}B_v.${t}`, f32([a.rank, D], a.Bv[i]));
      tensors.set(`${p}A_k.${t}`, f32([D, a.rank], a.Ak[i]));
      tensors.set(`${p}A_v.${t}`, f32([D, a.rank], a.Av[i]));
    });
  });
  s.heads.forEach((h, t) => {
    tensors.set(`heads.${t}.weight`, f32([h.classes, D], h.weight));
    tensors.set(`heads.${t}.bias`, f32([h.classes], h.bias));
  });
  s.memory.forEach((m, i) => {
    tensors.set(`dualgpm.${i}.basis`, {
      dtype: "F64",
      shape: [m.basis.rows, m.basis.cols],
      data: m.basis.data,
    });
  });
  if (s.classStats)
    for (const [name, t] of classStatsTensors(s.classStats)) tensors.set(`class_stats.${name}`, t);
  await writeCheckedSafetensors(file, tensors, {
    format: CHECKPOINT_FORMAT,
    task: String(s.task),
    dualgpm_types: JSON.stringify(s.memory.map((m) => m.type)),
    class_order: JSON.stringify(s.classOrder),
    config_sha256: s.configSha256,
  });
}

export async function readCheckpoint(
  file: string,
  expect: { depth: number; D: number },
): Promise<CheckpointState> {
  const { tensors, metadata } = await readCheckedSafetensors(file);
  const fail = (msg: string): never => {
    throw new CheckpointError(`${file}: ${msg}`);
  };
  if (metadata.format !== CHECKPOINT_FORMAT) {
    fail(`metadata "format" is ${JSON.stringify(metadata.format)}, expected "${CHECKPOINT_FORMAT}"`);
  }
  const task = Number(metadata.task);
  if (!Number.isInteger(task) || task < 0)
    fail(`metadata "task" is ${JSON.stringify(metadata.task)}, expected a task number`);
  const parseList = <T>(key: string): T[] => {
    try {
      const v = JSON.parse(metadata[key] ?? "");
      if (Array.isArray(v)) return v as T[];
    } catch {}
    return fail(`metadata "${key}" is missing or not a JSON list`);
  };
  const types = parseList<ProjectionType>("dualgpm_types");
  const classOrder = parseList<number>("class_order");
  const { depth, D } = expect;
  const get = (name: string, shape: (number | null)[], dtype: "F32" | "F64"): StTensor => {
    const t = tensors.get(name);
    if (!t) return fail(`missing tensor ${name}`);
    if (t.dtype !== dtype && !(dtype === "F32" && (t.dtype === "F16" || t.dtype === "BF16"))) {
      fail(`tensor ${name} has dtype ${t.dtype}, expected ${dtype}`);
    }
    if (t.shape.length !== shape.length || shape.some((d, i) => d !== null && d !== t.shape[i])) {
      fail(`tensor ${name} has shape [${t.shape}], expected [${shape.map((d) => d ?? "?")}]`);
    }
    return t;
  };
  const adapters: AdapterSet[] = [];
  const heads: Head[] = [];
  for (let s = 0; s <= task; s++) {
    const b0 = get(`blocks.0.attn.inflora.B_k.${s}`, [null, D], "F32");
    const rank = b0.shape[0];
    const [Bk, Bv, Ak, Av]: Float32Array[][] = [[], [], [], []];
    for (let i = 0; i < depth; i++) {
      const p = `blocks.${i}.attn.inflora.`;
      Bk.push(get(`${p}B_k.${s}`, [rank, D], "F32").data as Float32Array);
      Bv.push(get(`${p}B_v.${s}`, [rank, D], "F32").data as Float32Array);
      Ak.push(get(`${p}A_k.${s}`, [D, rank], "F32").data as Float32Array);
      Av.push(get(`${p}A_v.${s}`, [D, rank], "F32").data as Float32Array);
    }
    adapters.push({ rank, Bk, Bv, Ak, Av });
    const w = get(`heads.${s}.weight`, [null, D], "F32");
    const classes = w.shape[0];
    heads.push({
      classes,
      weight: w.data as Float32Array,
      bias: get(`heads.${s}.bias`, [classes], "F32").data as Float32Array,
    });
  }
  if (types.length !== depth) fail(`metadata "dualgpm_types" has ${types.length} entries, expected ${depth}`);
  const memory = types.map((type, i) => {
    if (type !== "remove" && type !== "retain")
      fail(`metadata "dualgpm_types"[${i}] is ${JSON.stringify(type)}`);
    const t = get(`dualgpm.${i}.basis`, [D, null], "F64");
    return { type, basis: { rows: D, cols: t.shape[1], data: t.data as Float64Array } };
  });
  let classStats: ClassStatistics | undefined;
  if (tensors.has("class_stats.means")) {
    const classes = heads.reduce((n, h) => n + h.classes, 0);
    classStats = {
      D,
      classes,
      means: get("class_stats.means", [classes, D], "F64").data as Float64Array,
      covs: get("class_stats.covs", [classes, D, D], "F32").data as Float32Array,
    };
  }
  return {
    task,
    adapters,
    heads,
    memory,
    classOrder,
    configSha256: metadata.config_sha256 ?? "",
    classStats,
  };
}

function classStatsTensors(s: ClassStatistics): [string, StTensor][] {
  return [
    ["means", { dtype: "F64", shape: [s.classes, s.D], data: s.means }],
    ["covs", { dtype: "F32", shape: [s.classes, s.D, s.D], data: s.covs }],
  ];
}

/**
 * `class_stats/task-XX.safetensors`: `means` F64 [classes so far, D] and `covs` F32 [classes so far, D, D],
 * rows in the run's class order (docs/design.md#run-directory).
 */
export async function writeClassStats(file: string, task: number, s: ClassStatistics): Promise<void> {
  await writeSafetensors(file, new Map(classStatsTensors(s)), {
    task: String(task),
    classes: String(s.classes),
  });
}

export async function readClassStats(file: string): Promise<ClassStatistics> {
  const { tensors } = await readSafetensors(file);
  const means = tensors.get("means");
  const covs = tensors.get("covs");
  if (means?.dtype !== "F64" || means.shape.length !== 2)
    throw new CheckpointError(`${file}: tensor means must be F64 [classes, D]`);
  const [classes, D] = means.shape;
  if (covs?.dtype !== "F32" || covs.shape.join() !== [classes, D, D].join())
    throw new CheckpointError(`${file}: tensor covs must be F32 [${classes}, ${D}, ${D}]`);
  return { D, classes, means: means.data as Float64Array, covs: covs.data as Float32Array };
}

export async function writePredictions(
  file: string,
  task: number,
  p: {
    labels: Int32Array;
    pred: Int32Array;
    predWithTask: Int32Array;
    logits: Float32Array;
    classes: number;
  },
): Promise<void> {
  const i64 = (a: Int32Array): StTensor => ({
    dtype: "I64",
    shape: [a.length],
    data: BigInt64Array.from(a, (x) => BigInt(x)),
  });
  await writeSafetensors(
    file,
    {
      labels: i64(p.labels),
      pred: i64(p.pred),
      pred_with_task: i64(p.predWithTask),
      logits: { dtype: "F32", shape: [p.labels.length, p.classes], data: p.logits },
    },
    { task: String(task) },
  );
}
