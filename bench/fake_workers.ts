/**
 * N workers on loopback that answer with precomputed ViT-B/16-sized payloads, for bench/allreduce.ts:
 * what the coordinator pays per step (transport, reduction, optimizer) without any model compute. Real
 * gRPC with the worker's service definition and message layout (worker/grpc_service.ts builds the
 * replies), but every reply is encoded once at start-up and each call only writes the bytes: this
 * process shares the machine with the coordinator being measured, so it should cost as little as it can.
 * With FAKE_MS_PER_SHARD (a comma list, one entry per worker, e.g. "50,50,250"), each worker also takes
 * that long per shard of a training step before answering, one call at a time like a real worker
 * (worker/grpc_service.ts): a call cancelled while it waits is skipped, one already computing finishes
 * (bench/stragglers.ts). Reports the addresses over IPC.
 */
import { Server, ServerCredentials, type ServerDuplexStream, type ServerWritableStream } from "@grpc/grpc-js";
import { CHUNK_BYTES, messageLimits } from "../common/grpc_wire.js";
import { connectNats } from "../common/nats_connect.js";
import type { TrainStepResult } from "../common/protocol.js";
import { PROTOCOL_VERSION } from "../common/protocol.js";
import * as pb from "../proto/gen/inflora/v1/compute.js";
import type { SetupRequest, SetupResponse } from "../proto/gen/inflora/v1/setup.js";
import { WorkerService } from "../proto/gen/inflora/v1/worker.js";
import { covarianceMessages, serializeTrainStepResponse, trainMessages } from "../worker/grpc_service.js";

const count = Number(process.argv[2] ?? "1");
const D = Number(process.env.FAKE_D ?? "768");
const depth = Number(process.env.FAKE_DEPTH ?? "12");
const rank = Number(process.env.FAKE_RANK ?? "10");
const classes = Number(process.env.FAKE_CLASSES ?? "10");
const msPerShard = (process.env.FAKE_MS_PER_SHARD ?? "").split(",").filter(Boolean).map(Number);

function filled(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(seed + i * 0.001) * 1e-3;
  return a;
}

const gradA = Array.from({ length: depth }, (_, i) => filled(D * rank, i));
const gradHeadW = filled(classes * D, 99);
const gradHeadB = filled(classes, 100);
const covSums = Array.from({ length: depth }, (_, i) => filled(D * D, 200 + i));
const dims = { D, depth };

/** Encoded replies per shard index; the sample count is part of the summary, so keyed by it too. */
const trainBytes = new Map<string, Buffer[]>();
function trainReply(index: number, samples: number): Buffer[] {
  const key = `${index}/${samples}`;
  let bytes = trainBytes.get(key);
  if (!bytes) {
    const result: TrainStepResult = {
      index,
      count: samples,
      lossSum: samples * 0.5,
      correct: 0,
      gradAk: gradA,
      gradAv: gradA,
      gradHeadW,
      gradHeadB,
    };
    bytes = [...trainMessages([result], dims, 4 * CHUNK_BYTES)].map(serializeTrainStepResponse);
    trainBytes.set(key, bytes);
  }
  return bytes;
}
const covBytes = new Map<string, Buffer[]>();
function covReply(index: number, samples: number): Buffer[] {
  const key = `${index}/${samples}`;
  let bytes = covBytes.get(key);
  if (!bytes) {
    const results = [{ index, tokens: samples * 197, sums: covSums }];
    bytes = [...covarianceMessages(results, dims, CHUNK_BYTES)].map((m) =>
      Buffer.from(pb.CovarianceResponse.encode(m).finish()),
    );
    covBytes.set(key, bytes);
  }
  return bytes;
}
for (let i = 0; i < 16; i++) trainReply(i, 8);

/**
 * With FAKE_NATS, each fake subscribes to the subject the coordinator publishes parameters on (and drops
 * what arrives), so the NATS server really sends every worker its copy; the fakes answer whatever the
 * digest, as they ignore parameters anyway.
 */
const nats = process.env.FAKE_NATS ? await connectNats(process.env.FAKE_NATS) : undefined;
function follow(subject: string): boolean {
  if (!nats || !subject) return false;
  nats.subscribe(subject, { callback: () => {} });
  return true;
}

const raw = (b: Buffer) => b;
const service = {
  ...WorkerService,
  trainStep: { ...WorkerService.trainStep, responseSerialize: raw },
  covariance: { ...WorkerService.covariance, responseSerialize: raw },
};

async function writeAll(
  call: ServerWritableStream<unknown, Buffer> | ServerDuplexStream<unknown, Buffer>,
  parts: Buffer[],
) {
  for (const b of parts) {
    if (!call.write(b)) await new Promise((r) => call.once("drain", r));
  }
}

function serve(k: number): Promise<string> {
  const server = new Server(messageLimits(16 * 1024 * 1024));
  const computeMs = msPerShard[k] ?? 0;
  /** The simulated compute, one call at a time. */
  let tail = Promise.resolve();
  server.addService(service, {
    setup: (call: { request: SetupRequest }, cb: (e: null, r: SetupResponse) => void) =>
      cb(null, {
        workerId: `fake-${k}`,
        protocolVersion: PROTOCOL_VERSION,
        weightsFingerprint: call.request.weightsFingerprint,
        backend: "fake",
        device: "none",
        adapter: undefined,
        paramsSubscribed: follow(call.request.paramsSubject),
      }),
    setTaskState: (call: NodeJS.ReadableStream, cb: (e: null, r: unknown) => void) => {
      call.on("data", () => {});
      call.on("end", () => cb(null, {}));
    },
    trainStep: (call: ServerDuplexStream<pb.TrainStepRequest, Buffer>) => {
      let shards: pb.MicroShard[] = [];
      call.on("data", (m: pb.TrainStepRequest) => {
        if (m.part?.$case === "header") shards = m.part.value.shards;
      });
      call.on("end", () => {
        const answer = async () => {
          for (const s of shards) await writeAll(call, trainReply(s.index, s.samples!.shape[0]));
          call.end();
        };
        if (computeMs === 0) {
          void answer();
          return;
        }
        tail = tail.then(async () => {
          if (call.cancelled) return;
          await new Promise((r) => setTimeout(r, computeMs * shards.length));
          if (!call.cancelled) await answer();
        });
      });
    },
    covariance: async (call: ServerWritableStream<pb.CovarianceRequest, Buffer>) => {
      for (const s of call.request.shards) await writeAll(call, covReply(s.index, s.samples!.shape[0]));
      call.end();
    },
    evaluate: (call: ServerWritableStream<pb.EvaluateRequest, pb.EvaluateResponse>) => call.end(),
    release: (_call: unknown, cb: (e: null, r: unknown) => void) => cb(null, {}),
  });
  return new Promise((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(`127.0.0.1:${port}`),
    ),
  );
}

const addresses = await Promise.all(Array.from({ length: count }, (_, k) => serve(k)));
process.send?.({ type: "listening", addresses });
process.on("disconnect", () => process.exit(0));
