/**
 * The loss of classifier alignment (docs/design.md#classifier-alignment): cross-entropy over all heads'
 * logits, optionally on the official code's "logit normalisation". For one sample with logits z and task
 * slices z_0 … z_t, N = (1/(t+1)) Σ_k (‖z_k‖₂ + 1e-7) and the loss is CE(z / N / τ) with τ = logitNorm;
 * N is computed per sample and differentiated through, as autograd does in the official code.
 */

/** Added to every slice norm, as the official code does. */
export const SLICE_NORM_EPS = 1e-7;

/**
 * Mean cross-entropy of a batch: `logits` [rows, C] row-major, `bias` [C] added to every row (the heads'
 * biases, so callers can pass x Wᵀ straight from a product), `targets` [rows] in 0..C−1. `taskSizes` splits
 * the C columns into the tasks' slices. With `grad` [rows, C], writes dLoss/dlogits there.
 */
export function alignmentLoss(
  logits: ArrayLike<number>,
  bias: ArrayLike<number> | undefined,
  rows: number,
  targets: ArrayLike<number>,
  taskSizes: readonly number[],
  logitNorm: number | null,
  grad?: Float64Array,
): number {
  const C = taskSizes.reduce((a, b) => a + b, 0);
  if (logits.length !== rows * C)
    throw new RangeError(`alignmentLoss: logits has ${logits.length} values, expected ${rows}×${C}`);
  const T = taskSizes.length;
  const z = new Float64Array(C);
  const y = new Float64Array(C);
  const norms = new Float64Array(T);
  let total = 0;
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < C; j++) z[j] = logits[i * C + j] + (bias ? bias[j] : 0);
    let scale = 1;
    let N = 1;
    if (logitNorm !== null) {
      let sum = 0;
      let start = 0;
      for (let k = 0; k < T; k++) {
        let sq = 0;
        for (let j = start; j < start + taskSizes[k]; j++) sq += z[j] * z[j];
        norms[k] = Math.sqrt(sq);
        sum += norms[k] + SLICE_NORM_EPS;
        start += taskSizes[k];
      }
      N = sum / T;
      scale = 1 / (N * logitNorm);
    }
    let max = -Infinity;
    for (let j = 0; j < C; j++) {
      y[j] = logitNorm !== null ? z[j] / N / logitNorm : z[j];
      if (y[j] > max) max = y[j];
    }
    let se = 0;
    for (let j = 0; j < C; j++) se += Math.exp(y[j] - max);
    const lse = max + Math.log(se);
    const target = targets[i];
    total += lse - y[target];
    if (!grad) continue;
    // g_y = (softmax(y) − onehot) / rows; through y = z·scale(z): g_z = scale·g_y − (Σ g_y·y)/N · ∂N/∂z,
    // ∂N/∂z_j = z_j / (T ‖z_k‖) for j in slice k (zero for a zero slice, as torch's norm backward).
    let gy_y = 0;
    for (let j = 0; j < C; j++) {
      const g = (Math.exp(y[j] - lse) - (j === target ? 1 : 0)) / rows;
      grad[i * C + j] = g;
      gy_y += g * y[j];
    }
    if (logitNorm === null) continue;
    let start = 0;
    for (let k = 0; k < T; k++) {
      const coef = norms[k] > 0 ? gy_y / (N * T * norms[k]) : 0;
      for (let j = start; j < start + taskSizes[k]; j++)
        grad[i * C + j] = grad[i * C + j] * scale - coef * z[j];
      start += taskSizes[k];
    }
  }
  return total / rows;
}
