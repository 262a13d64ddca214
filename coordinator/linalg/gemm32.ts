/**
 * Float32 row-major products for the coordinator's own small training (classifier alignment), through
 * OpenBLAS sgemm when the addon is built and TypeScript loops otherwise. Float32 like the official
 * PyTorch code; callers keep their sums and masters in float64.
 */
import { lapack, withLapackThreads } from "./lapack.js";

/** c [m, n] = op(a) · op(b), op(a) [m, k], op(b) [k, n]; `c` is overwritten. */
export function gemm32(
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
): void {
  if (a.length < m * k || b.length < k * n || c.length < m * n)
    throw new RangeError(
      `gemm32: ${m}×${k} · ${k}×${n} with buffers of ${a.length}, ${b.length}, ${c.length}`,
    );
  const addon = lapack();
  if (addon) {
    withLapackThreads(addon, () => addon.sgemm(a, b, c, 1, 1, m, n, k, transA, transB));
    return;
  }
  // a[i, p] and b[p, j] with the transposes as strides; the sum in float64, rounded once.
  const [ai, ap] = transA ? [1, m] : [k, 1];
  const [bp, bj] = transB ? [1, k] : [n, 1];
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * ai + p * ap] * b[p * bp + j * bj];
      c[i * n + j] = s;
    }
  }
}
