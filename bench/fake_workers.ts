/**
 * N workers on loopback that answer with precomputed ViT-B/16-sized payloads, for bench/allreduce.ts:
 * what the coordinator pays per step (transport, reduction, optimizer) without any model compute.
 * Reports the addresses over IPC.
 */
import type {
  CovarianceRequest,
  CovarianceResult,
  EvalRequest,
  EvalResult,
  SetupReply,
  SetupRequest,
  TrainStepRequest,
  TrainStepResult,
  WorkerClient,
} from "../common/protocol.js";
import { PROTOCOL_VERSION } from "../common/protocol.js";
import { serveWorker } from "../worker/grpc_server.js";

const count = Number(process.argv[2] ?? "1");
const D = Number(process.env.FAKE_D ?? "768");
const depth = Number(process.env.FAKE_DEPTH ?? "12");
const rank = Number(process.env.FAKE_RANK ?? "10");
const classes = Number(process.env.FAKE_CLASSES ?? "10");

function filled(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(seed + i * 0.001) * 1e-3;
  return a;
}

const gradA = Array.from({ length: depth }, (_, i) => filled(D * rank, i));
const gradHeadW = filled(classes * D, 99);
const gradHeadB = filled(classes, 100);
const covSums = Array.from({ length: depth }, (_, i) => filled(D * D, 200 + i));

class FakeWorker implements WorkerClient {
  constructor(readonly name: string) {}
  async setup(_req: SetupRequest): Promise<SetupReply> {
    return {
      workerId: this.name,
      protocolVersion: PROTOCOL_VERSION,
      weightsFingerprint: _req.weightsFingerprint,
      backend: "fake",
      device: "none",
    };
  }
  async setTaskState(): Promise<void> {}
  async covariance(req: CovarianceRequest): Promise<CovarianceResult[]> {
    return req.shards.map((s) => ({ index: s.index, tokens: s.samples.length * 197, sums: covSums }));
  }
  async trainStep(req: TrainStepRequest): Promise<TrainStepResult[]> {
    return req.shards.map((s) => ({
      index: s.index,
      count: s.samples.length,
      lossSum: s.samples.length * 0.5,
      correct: 0,
      gradAk: gradA,
      gradAv: gradA,
      gradHeadW,
      gradHeadB,
    }));
  }
  async evaluate(req: EvalRequest): Promise<EvalResult[]> {
    return req.shards.map((s) => ({ index: s.index, logits: new Float32Array(s.samples.length * classes) }));
  }
  async close(): Promise<void> {}
}

const servers = await Promise.all(
  Array.from({ length: count }, (_, k) =>
    serveWorker({ worker: new FakeWorker(`fake-${k}`), listen: "127.0.0.1:0" }),
  ),
);
process.send?.({ type: "listening", addresses: servers.map((s) => s.address) });
process.on("disconnect", () => process.exit(0));
