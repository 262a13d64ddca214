/**
 * Compares a run directory with the reference's expected/ folder using the figures and tolerances of
 * test/fixtures/reference/README.md: subspaces and products, never raw singular vectors.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { readSafetensors, type StTensor } from "../../common/safetensors.js";
import { eighDescending } from "../../coordinator/linalg/eigh.js";
import { type Mat, mat, matmul, matmulABt, sub } from "../../coordinator/linalg/matrix.js";
import { leftSingular } from "../../coordinator/linalg/svd.js";

/** The reference fixture's shape (test/fixtures/reference/README.md). */
export const FIXTURE_TASKS = 5;
export const FIXTURE_DEPTH = 3;
export const FIXTURE_CLASSES_PER_TASK = 4;
/** A task's file name under checkpoints/ and predictions/. */
export const taskFile = (t: number) => `task-${String(t).padStart(2, "0")}.safetensors`;

export const REFERENCE_DIR = path.resolve(import.meta.dirname, "../fixtures/reference");
export const EXPECTED_DIR = path.join(REFERENCE_DIR, "expected");

export interface Tolerances {
  bdist: number;
  abrel: number;
  headrel: number;
  gpmdist: number;
  acc: number;
  pred_agree: number;
  tie_rel: number;
}

export function tolerances(): Tolerances {
  return JSON.parse(readFileSync(path.join(EXPECTED_DIR, "tolerances.json"), "utf8"));
}

function toMat(t: StTensor): Mat {
  const [r, c] = t.shape;
  return mat(r, c, Float64Array.from(t.data as Float32Array | Float64Array));
}

/** Spectral norm of a symmetric matrix: its largest |eigenvalue|. */
function spectralSym(a: Mat): number {
  const { values } = eighDescending(a);
  return Math.max(Math.abs(values[0]), Math.abs(values[values.length - 1]));
}

/** Orthogonal projector onto the column space of X (D×k, full column rank), through its left singular vectors. */
function columnProjector(x: Mat): Mat {
  const { u } = leftSingular(x);
  const rank = x.cols;
  const D = x.rows;
  const q = new Float64Array(D * rank);
  for (let i = 0; i < D; i++) for (let j = 0; j < rank; j++) q[i * rank + j] = u.data[i * D + j];
  const qm = mat(D, rank, q);
  return matmulABt(qm, qm);
}

function transposeMat(a: Mat): Mat {
  const out = new Float64Array(a.rows * a.cols);
  for (let i = 0; i < a.rows; i++)
    for (let j = 0; j < a.cols; j++) out[j * a.rows + i] = a.data[i * a.cols + j];
  return mat(a.cols, a.rows, out);
}

export function frob(a: Mat): number {
  let s = 0;
  for (const v of a.data) s += v * v;
  return Math.sqrt(s);
}

export interface CheckpointFigures {
  bdist: number;
  abrel: number;
  headrel: number;
  gpmdist: number;
  typesEqual: boolean;
  types: string[];
  expectedTypes: string[];
  widths: number[];
  expectedWidths: number[];
}

export async function compareCheckpoint(
  ours: string,
  expected: string,
  task: number,
  depth: number,
): Promise<CheckpointFigures> {
  const a = await readSafetensors(ours);
  const b = await readSafetensors(expected);
  const get = (f: typeof a, name: string) => {
    const t = f.tensors.get(name);
    if (!t) throw new Error(`${name} missing`);
    return t;
  };
  let bdist = 0;
  let abrel = 0;
  let headrel = 0;
  for (let s = 0; s <= task; s++) {
    for (let i = 0; i < depth; i++) {
      for (const kv of ["k", "v"]) {
        const p = `blocks.${i}.attn.inflora.`;
        const B1 = toMat(get(a, `${p}B_${kv}.${s}`));
        const B2 = toMat(get(b, `${p}B_${kv}.${s}`));
        bdist = Math.max(
          bdist,
          spectralSym(sub(columnProjector(transposeMat(B1)), columnProjector(transposeMat(B2)))),
        );
        const AB1 = matmul(toMat(get(a, `${p}A_${kv}.${s}`)), B1);
        const AB2 = matmul(toMat(get(b, `${p}A_${kv}.${s}`)), B2);
        abrel = Math.max(abrel, frob(sub(AB1, AB2)) / frob(AB2));
      }
    }
    const wb = (f: typeof a) => {
      const w = get(f, `heads.${s}.weight`);
      const bias = get(f, `heads.${s}.bias`);
      return [...(w.data as Float32Array), ...(bias.data as Float32Array)];
    };
    const h1 = wb(a);
    const h2 = wb(b);
    let num = 0;
    let den = 0;
    for (let k = 0; k < h2.length; k++) {
      num += (h1[k] - h2[k]) ** 2;
      den += h2[k] ** 2;
    }
    headrel = Math.max(headrel, den === 0 ? Math.sqrt(num) : Math.sqrt(num / den));
  }
  let gpmdist = 0;
  const widths: number[] = [];
  const expectedWidths: number[] = [];
  for (let i = 0; i < depth; i++) {
    const U1 = toMat(get(a, `dualgpm.${i}.basis`));
    const U2 = toMat(get(b, `dualgpm.${i}.basis`));
    widths.push(U1.cols);
    expectedWidths.push(U2.cols);
    if (U1.cols !== U2.cols) gpmdist = Math.max(gpmdist, 1);
    else gpmdist = Math.max(gpmdist, spectralSym(sub(matmulABt(U1, U1), matmulABt(U2, U2))));
  }
  const types = JSON.parse(a.metadata.dualgpm_types);
  const expectedTypes = JSON.parse(b.metadata.dualgpm_types);
  return {
    bdist,
    abrel,
    headrel,
    gpmdist,
    typesEqual: JSON.stringify(types) === JSON.stringify(expectedTypes),
    types,
    expectedTypes,
    widths,
    expectedWidths,
  };
}

export interface PredictionFigures {
  /** Per task s ≤ t: percentage agreement of pred / pred_with_task on decidable samples. */
  predAgree: number;
  predWithTaskAgree: number;
  /** Near-tie samples (by expected logits) whose prediction moved, per seen task, and per whole set. */
  movedTiesPerTask: number[];
  movedTiesTotal: number;
  movedTiesWithTaskTotal: number;
  samples: number;
  labelsEqual: boolean;
}

export async function comparePredictions(
  ours: string,
  expected: string,
  tieRel: number,
  taskClasses: number,
): Promise<PredictionFigures> {
  const a = await readSafetensors(ours);
  const b = await readSafetensors(expected);
  const ints = (f: typeof a, n: string) => Array.from(f.tensors.get(n)!.data as BigInt64Array, Number);
  const labels1 = ints(a, "labels");
  const labels2 = ints(b, "labels");
  const pred1 = ints(a, "pred");
  const pred2 = ints(b, "pred");
  const pwt1 = ints(a, "pred_with_task");
  const pwt2 = ints(b, "pred_with_task");
  const logits = b.tensors.get("logits")!;
  const [N, C] = logits.shape;
  const L = logits.data as Float32Array;
  // Near ties are judged per task set: top-2 within 1e-3 × the largest |logit| of that task's samples.
  const tasks = C / taskClasses;
  const maxAbs = new Array(tasks).fill(0);
  for (let n = 0; n < N; n++) {
    const s = Math.floor(labels2[n] / taskClasses);
    for (let c = 0; c < C; c++) maxAbs[s] = Math.max(maxAbs[s], Math.abs(L[n * C + c]));
  }
  const nearTie = (n: number, start: number, end: number) => {
    const row = Array.from(L.subarray(n * C + start, n * C + end)).sort((x, y) => y - x);
    const s = Math.floor(labels2[n] / taskClasses);
    return row.length > 1 && row[0] - row[1] <= tieRel * maxAbs[s];
  };
  let decidable = 0;
  let agree = 0;
  let decidableWt = 0;
  let agreeWt = 0;
  const movedTiesPerTask = new Array(tasks).fill(0);
  let movedTiesTotal = 0;
  let movedTiesWithTaskTotal = 0;
  for (let n = 0; n < N; n++) {
    const s = Math.floor(labels2[n] / taskClasses);
    if (nearTie(n, 0, C)) {
      if (pred1[n] !== pred2[n]) {
        movedTiesPerTask[s]++;
        movedTiesTotal++;
      }
    } else {
      decidable++;
      if (pred1[n] === pred2[n]) agree++;
    }
    if (nearTie(n, s * taskClasses, (s + 1) * taskClasses)) {
      if (pwt1[n] !== pwt2[n]) movedTiesWithTaskTotal++;
    } else {
      decidableWt++;
      if (pwt1[n] === pwt2[n]) agreeWt++;
    }
  }
  return {
    predAgree: (100 * agree) / decidable,
    predWithTaskAgree: (100 * agreeWt) / decidableWt,
    movedTiesPerTask,
    movedTiesTotal,
    movedTiesWithTaskTotal,
    samples: N,
    labelsEqual: JSON.stringify(labels1) === JSON.stringify(labels2),
  };
}
