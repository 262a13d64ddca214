/**
 * The machine's SGEMM rate through the addon, the physical reference for a step's achieved GFLOP/s: the
 * best of several [1576×768]·[768×3072] products (ViT-B/16's MLP input layer at batch 8) at 1 and 2 BLAS
 * threads. Run by bench/compare.ts in a child process, so OPENBLAS_CORETYPE is the one being measured.
 *
 * Usage: npx tsx bench/sgemm_rate.ts   (prints one SGEMM_TAG-prefixed JSON line)
 */
import { requireNative } from "../native/index.js";

export const SGEMM_TAG = "@@sgemm-rate ";

export interface SgemmRate {
  /** OpenBLAS's kernel (core) name, e.g. Haswell or Cooperlake. */
  readonly core: string;
  /** Best GFLOP/s by thread count. */
  readonly gflops: Record<string, number>;
}

const M = 1576;
const K = 768;
const N = 3072;

function rate(threads: number): number {
  const addon = requireNative();
  addon.setThreads(threads);
  const a = Float32Array.from({ length: M * K }, (_, i) => ((i * 7) % 13) / 13 - 0.5);
  const b = Float32Array.from({ length: K * N }, (_, i) => ((i * 5) % 11) / 11 - 0.5);
  const c = new Float32Array(M * N);
  addon.sgemm(a, b, c, 1, 1, M, N, K, false, false);
  let best = Number.POSITIVE_INFINITY;
  const t0 = performance.now();
  // At least 10 products and half a second: on a shared machine the best one is the machine's rate.
  for (let i = 0; i < 10 || performance.now() - t0 < 500; i++) {
    const s = performance.now();
    addon.sgemm(a, b, c, 1, 1, M, N, K, false, false);
    best = Math.min(best, performance.now() - s);
    if (i >= 200) break;
  }
  return (2 * M * N * K) / (best / 1000) / 1e9;
}

if (process.argv[1]?.endsWith("sgemm_rate.ts")) {
  const gflops: Record<string, number> = {};
  for (const t of [1, 2]) gflops[t] = rate(t);
  const result: SgemmRate = { core: requireNative().blasInfo().core, gflops };
  process.stdout.write(`${SGEMM_TAG}${JSON.stringify(result)}\n`);
}
