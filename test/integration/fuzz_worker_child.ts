/**
 * A real worker process (runWorkerServer over a WorkerEngine, bearer token from $INFLORA_TOKEN) for
 * fuzz_grpc.test.ts. It reports its address over IPC and, when asked, its memory after a full garbage
 * collection (the parent starts it with --expose-gc), so the test can see growth the fuzzing left behind.
 */
import { runWorkerServer } from "../../worker/serve_main.js";

const gc = (globalThis as { gc?: () => void }).gc;

process.on("message", (msg) => {
  if (msg !== "memory") return;
  // Twice: the first pass may only queue finalizers that release more.
  gc?.();
  gc?.();
  const { rss, heapUsed, external, arrayBuffers } = process.memoryUsage();
  process.send?.({ type: "memory", rss, heapUsed, external, arrayBuffers, gc: gc !== undefined });
});
process.on("disconnect", () => process.exit(0));

await runWorkerServer({
  listen: "127.0.0.1:0",
  backend: process.env.CHILD_BACKEND,
  dataThreads: 0,
  name: "fuzz-target",
  shutdownGraceMs: 100,
  maxCallsInFlight: process.env.CHILD_MAX_CALLS ? Number(process.env.CHILD_MAX_CALLS) : undefined,
  onListening: ({ address }) => process.send?.({ type: "listening", address, pid: process.pid }),
});
