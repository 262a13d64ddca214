/**
 * The float64 linear algebra through LAPACK/OpenBLAS when the optional native addon is built
 * (`npm run build:native`); every caller falls back to the TypeScript implementation otherwise. The
 * first use logs which path this process takes. INFLORA_LINALG=ts forces the TypeScript path (the addon
 * may still serve the tfjs blas backend); INFLORA_LINALG_THREADS sets the BLAS threads LAPACK uses.
 */
import { log } from "../../common/log.js";
import { type NativeAddon, nativeStatus } from "../../native/index.js";

const announced = new Set<string>();

function announce(path: string, detail: Record<string, unknown>): void {
  if (announced.has(path)) return;
  announced.add(path);
  log.info(detail, `float64 linear algebra: ${path}`);
}

/**
 * The addon for float64 linear algebra, or undefined for the TypeScript path. INFLORA_LINALG is read on
 * every call (cheap) so a test can compare both paths in one process.
 */
export function lapack(): NativeAddon | undefined {
  if (process.env.INFLORA_LINALG === "ts") {
    announce("TypeScript", { reason: "INFLORA_LINALG=ts" });
    return undefined;
  }
  const status = nativeStatus();
  if (status.addon) announce("LAPACK (native addon)", { blas: status.description });
  else announce("TypeScript", { reason: status.reason });
  return status.addon;
}

/**
 * BLAS threads for the coordinator's float64 calls (LAPACK and the products around it). The tridiagonal
 * reduction is memory-bound level-2 work where a second thread mostly spin-waits: on the shared 2-vCPU
 * machine one thread was faster in wall time for the whole per-task linear algebra (1.2–2.0 s against
 * 1.7–2.5 s) and used less CPU. INFLORA_LINALG_THREADS overrides it for machines with more bandwidth.
 */
function lapackThreads(): number {
  const n = Number(process.env.INFLORA_LINALG_THREADS ?? 1);
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

/** Runs f with the BLAS thread count for LAPACK, restoring the previous count afterwards. */
export function withLapackThreads<T>(addon: NativeAddon, f: () => T): T {
  const before = addon.blasInfo().threads;
  const want = lapackThreads();
  if (want === before) return f();
  addon.setThreads(want);
  try {
    return f();
  } finally {
    addon.setThreads(before);
  }
}
