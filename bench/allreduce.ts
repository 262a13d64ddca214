/**
 * `npm run bench:allreduce`: the coordinator's time per training step — encode and send A_t and the head,
 * receive every micro-shard's gradients, reduce them in float64 in shard order, run Adam — and its bytes,
 * with ViT-B/16-sized payloads (12 blocks, D 768, r 10, 10 classes) for 1…16 workers on loopback. The
 * workers (bench/fake_workers.ts, another process) answer at once with precomputed payloads, so what is
 * measured is the coordinator and the transport, never model compute. Each worker count runs twice, side
 * by side: gRPC clients on the main thread, and on transport threads (`--transport-threads`, default
 * what `inflora train` would pick on this machine, at least 1). Also the floor: grpc-js alone moving the
 * same bytes (pre-encoded requests, replies dropped undecoded), and the covariance all-reduce (one
 * 12 × 768² float32 sum per shard). Writes bench/results/allreduce.json and .md.
 */
import { fork } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import type { Duplex } from "node:stream";
import { fileURLToPath } from "node:url";
import { credentials, makeGenericClientConstructor } from "@grpc/grpc-js";
import { MAX_MESSAGE_BYTES, messageLimits } from "../common/grpc_wire.js";
import { connectNats } from "../common/nats_connect.js";
import type { MicroShard } from "../common/protocol.js";
import { PROTOCOL_VERSION } from "../common/protocol.js";
import { Adam } from "../coordinator/optim/optimizer.js";
import { reduceStep, toFloat32 } from "../coordinator/reduce.js";
import { GrpcWorkerClient } from "../coordinator/transport/grpc_client.js";
import { serializeTrainStepRequest, trainStepParts } from "../coordinator/transport/grpc_messages.js";
import { natsParamsBroadcast, type ParamsBroadcast } from "../coordinator/transport/params_broadcast.js";
import { defaultTransportThreads, TransportThreads } from "../coordinator/transport/threaded_client.js";
import { splitBlocks, WorkerPool } from "../coordinator/worker_pool.js";
import { WorkerService } from "../proto/gen/inflora/v1/worker.js";
import { type NatsTestServer, startNatsServer } from "../test/helpers/nats_server.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const tsx = createRequire(import.meta.url).resolve("tsx");
const D = 768;
const depth = 12;
const rank = 10;
const classes = 10;
const MICRO_SHARDS = 16;
const BATCH = 128;
const quick = process.argv.includes("--quick");
/** `--workers N`: measure only N workers (profiling); the results files are then left alone. */
const only = process.argv.indexOf("--workers");
const onlyWorkers = only >= 0 ? Number(process.argv[only + 1]) : undefined;
const WORKER_COUNTS = onlyWorkers ? [onlyWorkers] : quick ? [1, 2] : [1, 2, 4, 8, 16];
const STEPS = quick ? 5 : 30;
const tt = process.argv.indexOf("--transport-threads");
const TRANSPORT_THREADS = tt >= 0 ? Number(process.argv[tt + 1]) : Math.max(1, defaultTransportThreads());

function startFakes(n: number, natsUrl?: string): Promise<{ addresses: string[]; stop(): void }> {
  const child = fork(path.join(here, "fake_workers.ts"), [String(n)], {
    execArgv: ["--import", tsx],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    env: { ...process.env, INFLORA_LOG_LEVEL: "warn", ...(natsUrl ? { FAKE_NATS: natsUrl } : {}) },
  });
  return new Promise((resolve, reject) => {
    child.once("message", (m: { addresses?: string[] }) => {
      if (m.addresses) resolve({ addresses: m.addresses, stop: () => child.kill("SIGKILL") });
    });
    child.once("exit", (code) => reject(new Error(`fake workers exited (${code})`)));
  });
}

/** A global batch of BATCH samples cut into MICRO_SHARDS micro-shards, as the trainer cuts it. */
function stepShards(): MicroShard[] {
  const per = BATCH / MICRO_SHARDS;
  return Array.from({ length: MICRO_SHARDS }, (_, i) => ({
    index: i,
    split: "train",
    samples: Int32Array.from({ length: per }, (_, j) => i * per + j),
    targets: Int32Array.from({ length: per }, (_, j) => j % classes),
  }));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface Row {
  workers: number;
  /** 0: the gRPC clients on the main thread. */
  transport_threads: number;
  /** Parameters published once on NATS (the workers get only their digest over gRPC). */
  params_over_nats: boolean;
  step_ms_median: number;
  step_ms_p90: number;
  /** CPU time of the coordinator process per step: its own cost, whatever the workers' process does. */
  coordinator_cpu_ms: number;
  /** Busy time of the coordinator's event loop per step: the part that cannot move to other cores. */
  main_thread_ms: number;
  reduce_and_adam_ms: number;
  bytes_sent_per_step: number;
  bytes_received_per_step: number;
  covariance_shard_ms: number;
  covariance_mb_per_s: number;
}

type Fakes = Awaited<ReturnType<typeof startFakes>>;

async function measure(
  n: number,
  fakes: Fakes,
  transportThreads: number,
  broadcast?: ParamsBroadcast,
): Promise<Row> {
  const threads = transportThreads > 0 ? new TransportThreads(transportThreads) : undefined;
  const clients = fakes.addresses.map((a, k) => {
    const options = { address: a, name: `fake-${k}`, releaseOnClose: false };
    return threads ? threads.connect(options, broadcast) : new GrpcWorkerClient(options, broadcast);
  });
  const pool = new WorkerPool(clients, { params: broadcast });
  await pool.start({
    runId: "bench",
    protocolVersion: PROTOCOL_VERSION,
    weightsPath: "/none",
    weightsFingerprint: "0".repeat(64),
    model: { imgSize: 224, patchSize: 16, inChans: 3, embedDim: D, depth, numHeads: 12, mlpHidden: 3072 },
    data: { dataset: "cifar100", dataPath: "/none", imageSize: 224 },
  });
  await pool.publishState({
    version: 1,
    task: 0,
    finished: [],
    currentB: { rank, B: Array.from({ length: depth }, () => new Float32Array(rank * D)) },
    heads: [],
  });
  const master = {
    Ak: Array.from({ length: depth }, () => new Float64Array(D * rank)),
    Av: Array.from({ length: depth }, () => new Float64Array(D * rank)),
    W: new Float64Array(classes * D),
    b: new Float64Array(classes),
  };
  const params = [...master.Ak, ...master.Av, master.W, master.b];
  const adam = new Adam(0);
  const shards = stepShards();
  const times: number[] = [];
  const cpuTimes: number[] = [];
  const mainTimes: number[] = [];
  const reduceTimes: number[] = [];
  for (let step = 0; step < STEPS + 3; step++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const e0 = performance.eventLoopUtilization();
    const sent = {
      version: step + 1,
      Ak: master.Ak.map(toFloat32),
      Av: master.Av.map(toFloat32),
      head: { classes, weight: toFloat32(master.W), bias: toFloat32(master.b) },
    };
    pool.publishParams(sent);
    const results = await pool.map(shards, (w, s) =>
      w.trainStep({ stateVersion: 1, params: sent, shards: s }),
    );
    const t1 = performance.now();
    // What the trainer does with a step's results.
    adam.step(params, reduceStep(results).grads, 1e-3);
    const t2 = performance.now();
    const c = process.cpuUsage(c0);
    if (step >= 3) {
      times.push(t2 - t0);
      cpuTimes.push((c.user + c.system) / 1000);
      mainTimes.push(performance.eventLoopUtilization(e0).active);
      reduceTimes.push(t2 - t1);
    }
  }
  const paramBytes = (2 * depth * D * rank + classes * D + classes) * 4;
  // Covariance: one round of n shards (one per worker), reduced in float64 in shard order.
  const covShards: MicroShard[] = Array.from({ length: n }, (_, i) => ({
    index: i,
    split: "train",
    samples: Int32Array.of(i),
  }));
  const covTimes: number[] = [];
  for (let r = 0; r < (quick ? 1 : 3); r++) {
    const acc = Array.from({ length: depth }, () => new Float64Array(D * D));
    const t0 = performance.now();
    const res = await pool.map(covShards, (w, s) => w.covariance({ stateVersion: 1, shards: s }));
    for (const x of res)
      for (let i = 0; i < depth; i++) for (let k = 0; k < D * D; k++) acc[i][k] += x.sums[i][k];
    covTimes.push((performance.now() - t0) / n);
  }
  await pool.close();
  await threads?.close();
  const covBytes = depth * D * D * 4;
  const sorted = [...times].sort((a, b) => a - b);
  return {
    workers: n,
    transport_threads: transportThreads,
    params_over_nats: broadcast !== undefined,
    step_ms_median: median(times),
    step_ms_p90: sorted[Math.floor(sorted.length * 0.9)],
    coordinator_cpu_ms: median(cpuTimes),
    main_thread_ms: median(mainTimes),
    reduce_and_adam_ms: median(reduceTimes),
    bytes_sent_per_step: broadcast ? paramBytes : paramBytes * Math.min(n, MICRO_SHARDS),
    bytes_received_per_step: paramBytes * MICRO_SHARDS,
    covariance_shard_ms: median(covTimes),
    covariance_mb_per_s: covBytes / 1e6 / (median(covTimes) / 1000),
  };
}

/**
 * The floor: grpc-js alone doing a step's traffic — the same requests, encoded once in advance, to every
 * worker for its shards, and the replies received as bytes and dropped. Coordinator CPU per step.
 */
async function measureFloor(n: number, fakes: Fakes): Promise<number> {
  const raw = (b: Buffer) => b;
  const Client = makeGenericClientConstructor(
    { trainStep: { ...WorkerService.trainStep, requestSerialize: raw, responseDeserialize: raw } },
    "inflora.v1.Worker",
  );
  const clients = fakes.addresses.map(
    (a) =>
      new Client(a, credentials.createInsecure(), {
        ...messageLimits(MAX_MESSAGE_BYTES),
        "grpc-node.flow_control_window": 8 << 20,
      }),
  );
  const shards = stepShards();
  const params = {
    version: 1,
    Ak: Array.from({ length: depth }, () => new Float32Array(D * rank)),
    Av: Array.from({ length: depth }, () => new Float32Array(D * rank)),
    head: { classes, weight: new Float32Array(classes * D), bias: new Float32Array(classes) },
  };
  const blocks = splitBlocks(shards, n);
  const requests = blocks.map((b) =>
    [...trainStepParts({ stateVersion: 1, params, shards: b }, "bench", D)].map(serializeTrainStepRequest),
  );
  const cpu: number[] = [];
  for (let step = 0; step < STEPS + 3; step++) {
    const c0 = process.cpuUsage();
    await Promise.all(
      blocks.map(
        (_, k) =>
          new Promise<void>((resolve, reject) => {
            const call = (clients[k] as unknown as { trainStep(): Duplex }).trainStep();
            call.on("data", () => {});
            call.on("error", reject);
            call.on("end", () => resolve());
            for (const m of requests[k]) call.write(m);
            call.end();
          }),
      ),
    );
    const c = process.cpuUsage(c0);
    if (step >= 3) cpu.push((c.user + c.system) / 1000);
  }
  for (const c of clients) c.close();
  return median(cpu);
}

/** A nats-server for the parameters-over-NATS rows, when one is installed (Debian: nats-server). */
async function startNats(): Promise<NatsTestServer | undefined> {
  try {
    return await startNatsServer();
  } catch (err) {
    console.log(`no rows with parameters over NATS: ${(err as Error).message}`);
    return undefined;
  }
}

const rows: Row[] = [];
const floors = new Map<number, number>();
const fmt = (x: number) => x.toFixed(1);
const natsServer = await startNats();
const natsConn = natsServer ? await connectNats(natsServer.url) : undefined;
for (const n of WORKER_COUNTS) {
  const fakes = await startFakes(n, natsServer?.url);
  const modes = [
    { threads: 0 },
    { threads: TRANSPORT_THREADS },
    ...(natsConn
      ? [
          { threads: 0, broadcast: natsParamsBroadcast(natsConn, `bench-${n}`) },
          { threads: TRANSPORT_THREADS, broadcast: natsParamsBroadcast(natsConn, `bench-${n}-t`) },
        ]
      : []),
  ];
  for (const { threads, broadcast } of modes) {
    const row = await measure(n, fakes, threads, broadcast);
    rows.push(row);
    const how = `${threads ? `${threads} transport thread(s)` : "clients on the main thread"}${broadcast ? ", parameters over NATS" : ""}`;
    console.log(
      `${String(n).padStart(2)} workers, ${how}: ` +
        `step ${fmt(row.step_ms_median)} ms (p90 ${fmt(row.step_ms_p90)}), coordinator CPU ${fmt(row.coordinator_cpu_ms)} ms, ` +
        `main thread ${fmt(row.main_thread_ms)} ms, reduce+Adam ${fmt(row.reduce_and_adam_ms)} ms, ` +
        `sent ${(row.bytes_sent_per_step / 1e6).toFixed(2)} MB, received ${(row.bytes_received_per_step / 1e6).toFixed(2)} MB; ` +
        `covariance shard ${row.covariance_shard_ms.toFixed(0)} ms (${row.covariance_mb_per_s.toFixed(0)} MB/s)`,
    );
  }
  floors.set(n, await measureFloor(n, fakes));
  console.log(
    `${String(n).padStart(2)} workers, grpc-js alone moving the same bytes: ${fmt(floors.get(n)!)} ms CPU per step`,
  );
  fakes.stop();
}
await natsConn?.close();
await natsServer?.stop();
const result = {
  date: new Date().toISOString(),
  machine: {
    cpu: os.cpus()[0]?.model,
    cores: os.availableParallelism(),
    node: process.version,
    loadavg: os.loadavg(),
  },
  setup: {
    D,
    depth,
    rank,
    classes,
    micro_shards: MICRO_SHARDS,
    batch: BATCH,
    steps: STEPS,
    transport: "gRPC on loopback, workers in one other process",
  },
  rows,
  /** Coordinator CPU ms per step of grpc-js alone moving a step's bytes, by worker count. */
  grpc_floor_cpu_ms: Object.fromEntries(floors),
};
mkdirSync(path.join(here, "results"), { recursive: true });
if (!quick && !onlyWorkers) {
  writeFileSync(path.join(here, "results", "allreduce.json"), `${JSON.stringify(result, null, 1)}\n`);
  const md = [
    "# Coordinator all-reduce (ViT-B/16 payloads, gRPC on loopback)",
    "",
    `${result.date}, ${result.machine.cpu} × ${result.machine.cores}, Node ${result.machine.node}; load average ${result.machine.loadavg.map((x) => x.toFixed(1)).join(" ")}.`,
    `Per step: A_t (12 × 2 × 768 × 10) and head sent to every worker, gradients of ${MICRO_SHARDS} micro-shards received, float64 reduction in shard order, Adam. Workers answer instantly (no compute).`,
    "",
    `Coordinator CPU covers every thread of the process; main thread is its event loop's busy time. The floor is grpc-js alone moving the same bytes as the rows that send parameters over gRPC (requests pre-encoded, replies dropped undecoded). "NATS publish": each step's parameters are published once on a local nats-server, which sends every worker its copy; the coordinator sends each worker only the version and digest. On this machine the fake workers' process and the nats-server share the ${result.machine.cores} cores with the coordinator.`,
    "",
    "| workers | transport threads | parameters | step ms (median, wall) | p90 | coordinator CPU ms/step | main thread ms/step | reduce + Adam ms | grpc-js floor CPU ms | sent MB | received MB | covariance shard ms | covariance MB/s |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| ${r.workers} | ${r.transport_threads} | ${r.params_over_nats ? "NATS publish" : "gRPC to each"} | ${fmt(r.step_ms_median)} | ${fmt(r.step_ms_p90)} | ${fmt(r.coordinator_cpu_ms)} | ${fmt(r.main_thread_ms)} | ${fmt(r.reduce_and_adam_ms)} | ${fmt(floors.get(r.workers)!)} | ${(r.bytes_sent_per_step / 1e6).toFixed(2)} | ${(r.bytes_received_per_step / 1e6).toFixed(2)} | ${r.covariance_shard_ms.toFixed(0)} | ${r.covariance_mb_per_s.toFixed(0)} |`,
    ),
    "",
  ].join("\n");
  writeFileSync(path.join(here, "results", "allreduce.md"), md);
}
process.exit(0);
