/**
 * Predictions and accuracies from evaluation logits, and the run metrics (docs/design.md#metrics-json),
 * rounded as the reference rounds them.
 */

/** numpy's np.around(x, 2): multiply, round half to even, divide. */
export function npAround2(x: number): number {
  const y = x * 100;
  let r = Math.round(y);
  if (Math.abs(y % 1) === 0.5 && r % 2 !== 0) r -= 1; // Math.round rounds .5 up; numpy rounds to even
  return r / 100;
}

export function percent(correct: number, total: number): number {
  return npAround2((correct * 100) / total);
}

export interface TaskBounds {
  readonly classStart: number;
  readonly classEnd: number;
}

export interface Evaluation {
  readonly pred: Int32Array;
  readonly predWithTask: Int32Array;
  /** Class-incremental accuracy over all samples, percent. */
  readonly cil: number;
  /** Task-aware accuracy (argmax inside the true task's logits), percent. */
  readonly withTask: number;
  /** Class-incremental accuracy on each seen task's samples, percent. */
  readonly perTask: number[];
}

function argmax(row: Float32Array, start: number, end: number): number {
  let best = start;
  for (let j = start + 1; j < end; j++) if (row[j] > row[best]) best = j; // first maximum wins, as torch.max
  return best;
}

/** `logits` [N, C] row-major for samples with `labels`; `tasks` are the seen tasks in order. */
export function evaluateLogits(
  logits: Float32Array,
  labels: Int32Array,
  tasks: readonly TaskBounds[],
): Evaluation {
  const N = labels.length;
  const C = tasks[tasks.length - 1].classEnd;
  if (logits.length !== N * C) throw new Error(`logits hold ${logits.length} values, expected ${N}×${C}`);
  const taskOf = new Int32Array(C);
  tasks.forEach((t, s) => {
    taskOf.fill(s, t.classStart, t.classEnd);
  });
  const pred = new Int32Array(N);
  const predWithTask = new Int32Array(N);
  const correctPerTask = new Array<number>(tasks.length).fill(0);
  const countPerTask = new Array<number>(tasks.length).fill(0);
  let correct = 0;
  let correctWithTask = 0;
  for (let n = 0; n < N; n++) {
    const row = logits.subarray(n * C, (n + 1) * C);
    const y = labels[n];
    const t = tasks[taskOf[y]];
    pred[n] = argmax(row, 0, C);
    predWithTask[n] = argmax(row, t.classStart, t.classEnd);
    countPerTask[taskOf[y]]++;
    if (pred[n] === y) {
      correct++;
      correctPerTask[taskOf[y]]++;
    }
    if (predWithTask[n] === y) correctWithTask++;
  }
  return {
    pred,
    predWithTask,
    cil: percent(correct, N),
    withTask: percent(correctWithTask, N),
    perTask: correctPerTask.map((c, s) => percent(c, countPerTask[s])),
  };
}

export interface AccuracyFigures {
  curve: { cil: number[]; with_task: number[] };
  accuracy_matrix: number[][];
  final_accuracy: number;
  average_accuracy: number;
  /** null while fewer than two tasks have run. */
  forgetting: number | null;
  bwt: number | null;
}

export interface RunMetrics extends AccuracyFigures {
  /** Methods with classifier alignment: the same figures measured before each task's alignment. */
  before_alignment?: AccuracyFigures;
}

/** Metrics from the rounded curves and matrix; the derived figures are not rounded again. */
export function runMetrics(cil: number[], withTask: number[], matrix: number[][]): AccuracyFigures {
  const T = matrix.length;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  let forgetting: number | null = null;
  let bwt: number | null = null;
  if (T >= 2) {
    const f: number[] = [];
    const b: number[] = [];
    for (let s = 0; s < T - 1; s++) {
      let best = Number.NEGATIVE_INFINITY;
      for (let t = s; t < T - 1; t++) best = Math.max(best, matrix[t][s]);
      f.push(best - matrix[T - 1][s]);
      b.push(matrix[T - 1][s] - matrix[s][s]);
    }
    forgetting = mean(f);
    bwt = mean(b);
  }
  return {
    curve: { cil: [...cil], with_task: [...withTask] },
    accuracy_matrix: matrix.map((r) => [...r]),
    final_accuracy: cil[cil.length - 1],
    average_accuracy: mean(cil),
    forgetting,
    bwt,
  };
}
