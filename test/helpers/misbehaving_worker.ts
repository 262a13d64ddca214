/**
 * A real worker process (gRPC, a real engine) that turns bad after a number of training steps, for the
 * fault tests: `MISBEHAVE=nan` answers NaN gradients, `shape` a gradient of the wrong length, `hang`
 * never answers. It reports its address over IPC like `inflora worker` does for a local coordinator.
 */
import type { TrainStepRequest, TrainStepResult, WorkerClient } from "../../common/protocol.js";
import { runWorkerServer } from "../../worker/serve_main.js";

const mode = process.env.MISBEHAVE ?? "nan";
const goodSteps = Number(process.env.GOOD_STEPS ?? "3");
let steps = 0;

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
  wrap: corrupt,
  shutdownGraceMs: 100,
  onListening: ({ address }) => process.send?.({ type: "listening", address }),
});
