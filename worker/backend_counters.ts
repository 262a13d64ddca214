/**
 * Counts what a piece of work costs the active tfjs backend beyond arithmetic: kernel calls through the
 * engine, GPU dispatches (webgpu: every program run, including those inside composite kernels) and host
 * readbacks (tensor reads through the engine: data(), dataSync(), array()…). A kernel's own read of a
 * small tensor the backend keeps on the host (webgpu runs such ops on the CPU) is not a readback; a
 * kernel that had to read GPU memory synchronously would fail in Node (no OffscreenCanvas), not pass
 * uncounted. For bench:step's per-step figures and the test that a training step reads back once.
 */
import * as tf from "@tensorflow/tfjs-core";

export interface BackendCounts {
  readonly kernels: number;
  readonly dispatches: number;
  readonly readbacks: number;
}

/**
 * Replaces obj[name] (when it is a method) with a wrapper that calls `before` and `after` around the
 * method's synchronous part; returns the restore function.
 */
function wrap(obj: object, name: string, before: () => void, after = () => {}): () => void {
  const o = obj as Record<string, unknown>;
  const original = o[name];
  if (typeof original !== "function") return () => {};
  const own = Object.hasOwn(o, name);
  o[name] = function (this: unknown, ...args: unknown[]) {
    before();
    try {
      return (original as (...a: unknown[]) => unknown).apply(this, args);
    } finally {
      after();
    }
  };
  return () => {
    if (own) o[name] = original;
    else delete o[name];
  };
}

/** Runs `fn` (sync or async) and counts its kernel calls, GPU dispatches and readbacks. */
export async function countBackendWork<T>(
  fn: () => T | Promise<T>,
): Promise<{ value: T; counts: BackendCounts }> {
  const engine = tf.engine();
  const backend = engine.backend as unknown as object;
  let kernels = 0;
  let dispatches = 0;
  let readbacks = 0;
  let reading = 0;
  const startRead = () => {
    if (reading++ === 0) readbacks++;
  };
  const endRead = () => {
    reading--;
  };
  const restores = [
    wrap(engine, "runKernel", () => kernels++),
    wrap(backend, "runWebGPUProgram", () => dispatches++),
    wrap(engine, "read", startRead, endRead),
    wrap(engine, "readSync", startRead, endRead),
  ];
  try {
    const value = await fn();
    return { value, counts: { kernels, dispatches, readbacks } };
  } finally {
    for (const restore of restores.reverse()) restore();
  }
}
