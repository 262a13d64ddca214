/**
 * A real worker process (gRPC, a real engine) that turns bad after a number of training steps, for the
 * fault tests: `MISBEHAVE=nan` answers NaN gradients, `shape` a gradient of the wrong length, `hang`
 * never answers. `MISBEHAVE=slow` is a straggler instead: every compute call (training step, covariance,
 * evaluation) answers correctly but takes `SLOW_FACTOR` (default 5) times as long as it computed, from
 * the first call; SIGUSR2 toggles the slowness off and on. It reports its address over IPC like
 * `inflora worker` does for a local coordinator.
 */
import type { TrainStepRequest, TrainStepResult, WorkerClient } from "../../common/protocol.js";
import { runWorkerServer } from "../../worker/serve_main.js";

const mode = process.env.MISBEHAVE ?? "nan";
const goodSteps = Number(process.env.GOOD_STEPS ?? "3");
let steps = 0;

const slowFactor = Number(process.env.SLOW_FACTOR ?? "5");
if (mode === "slow" && !(slowFactor >= 1))
  throw new Error(`SLOW_FACTOR=${process.env.SLOW_FACTOR}: expected ≥ 1`);
let slow = mode === "slow";
process.on("SIGUSR2", () => {
  slow = !slow;
});

/** Runs `compute`, then waits (SLOW_FACTOR − 1) times as long before answering, while slow. */
async function slowly<T>(compute: () => Promise<T>): Promise<T> {
  const started = performance.now();
  const out = await compute();
  if (slow) await new Promise((r) => setTimeout(r, (slowFactor - 1) * (performance.now() - started)));
  return out;
}

function straggle(engine: WorkerClient): WorkerClient {
  return {
    name: engine.name,
    setup: (r) => engine.setup(r),
    setTaskState: (s) => engine.setTaskState(s),
    covariance: (r) => slowly(() => engine.covariance(r)),
    evaluate: (r) => slowly(() => engine.evaluate(r)),
    trainStep: (r) => slowly(() => engine.trainStep(r)),
    close: () => engine.close(),
  };
}

function corrupt(engine: WorkerClient): WorkerClient {
  return {
    name: engine.name,
    setup: (r) => engine.setup(r),
    setTaskState: (s) => engine.setTaskState(s),
    covariance: (r) => engine.covariance(r),
    evaluate: (r) => engine.evaluate(r),
    close: () => engine.close(),
    async trainStep(req: TrainStepRequest): Promise<TrainStepResult[]> {
      const out = await engine.trainStep(req);
      if (++steps <= goodSteps) return out;
      if (mode === "hang") return new Promise(() => {});
      if (mode === "shape") {
        // A head one class short, consistently: it encodes fine and only the coordinator can tell.
        return out.map((r) => {
          const D = r.gradHeadW.length / r.gradHeadB.length;
          return {
            ...r,
            gradHeadW: r.gradHeadW.subarray(0, r.gradHeadW.length - D),
            gradHeadB: r.gradHeadB.subarray(0, r.gradHeadB.length - 1),
          };
        });
      }
      return out.map((r) => {
        const g = Float32Array.from(r.gradAk[0]);
        g[0] = Number.NaN;
        return { ...r, gradAk: [g, ...r.gradAk.slice(1)] };
      });
    },
  };
}

process.on("disconnect", () => process.exit(0));
await runWorkerServer({
  listen: "127.0.0.1:0",
  dataThreads: 0,
  name: `misbehaving-${mode}`,
  wrap: mode === "slow" ? straggle : corrupt,
  shutdownGraceMs: 100,
  onListening: ({ address }) => process.send?.({ type: "listening", address }),
});
