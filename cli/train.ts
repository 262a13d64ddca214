/** `inflora train`: one run per seed, coordinator and workers wired together. */
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { loadConfig, type RunConfig } from "../common/config.js";
import { openDatasetIndex } from "../common/data/open_index.js";
import type { DataOptions } from "../common/data/options.js";
import type { ClientSecurityOptions } from "../common/grpc_security.js";
import { log } from "../common/log.js";
import type { WorkerEndpoint } from "../common/membership/types.js";
import { infloraVersion } from "../common/metrics_runtime.js";
import { DEFAULT_METRICS_LINGER_MS, lingerMetrics, serveMetrics } from "../common/metrics_server.js";
import { connectNats, natsAuthFromEnv } from "../common/nats_connect.js";
import { packageVersion } from "../common/package_files.js";
import type { VitConfig } from "../common/vit_config.js";
import type { RunMetrics } from "../coordinator/evaluation.js";
import { natsEventSink } from "../coordinator/events_nats.js";
import { natsMembership } from "../coordinator/membership/nats_membership.js";
import { staticMembership } from "../coordinator/membership/static_membership.js";
import { finalNormOf, methodOf } from "../coordinator/methods.js";
import { CoordinatorMetrics } from "../coordinator/metrics.js";
import { pushRunMetrics } from "../coordinator/metrics_push.js";
import { RunDir } from "../coordinator/run_dir.js";
import { Trainer, type TrainerInput } from "../coordinator/trainer.js";
import { GrpcWorkerClient, type KeepaliveOptions } from "../coordinator/transport/grpc_client.js";
import { natsParamsBroadcast, type ParamsBroadcast } from "../coordinator/transport/params_broadcast.js";
import { defaultTransportThreads, TransportThreads } from "../coordinator/transport/threaded_client.js";
import { type SpeculationOptions, WorkerPool } from "../coordinator/worker_pool.js";
import { selectBackend } from "../worker/backend.js";
import { WorkerEngine } from "../worker/engine.js";
import { describeWeights } from "../worker/model/load_weights.js";
import { countHardwareAdapters, listAdapters } from "../worker/webgpu_device.js";
import { startLocalWorkers } from "./local_workers.js";

export class RunDirError extends Error {
  override readonly name = "RunDirError";
}

export interface TrainOptions {
  readonly config: string;
  readonly out: string;
  /** Local workers to start (default 1): processes on loopback, or engines in this process. */
  readonly workers?: number;
  /** Run the local workers inside this process (no gRPC): tests and the simplest local run. */
  readonly inProcess?: boolean;
  /** Running workers to use instead of local ones (`--worker host:port`). */
  readonly workerAddresses?: string[];
  /** Discover workers through NATS leases and publish the run's events to JetStream. */
  readonly nats?: string;
  /** Serve the coordinator's Prometheus metrics on this port. */
  readonly metricsPort?: number;
  /** After the runs, keep serving /metrics this long (ms; default DEFAULT_METRICS_LINGER_MS). */
  readonly metricsLingerMs?: number;
  /** Push each run's final series to this Pushgateway, grouped by run. */
  readonly pushgateway?: string;
  /** Token file and TLS for the gRPC connections to workers. */
  readonly security?: ClientSecurityOptions;
  /** Deadline of one worker call, milliseconds (default 10 minutes). */
  readonly callTimeoutMs?: number;
  /** Re-issue late blocks to idle workers (default on; false: off). Never changes the result. */
  readonly speculation?: SpeculationOptions | false;
  /** gRPC keepalive pings to workers (default DEFAULT_KEEPALIVE): how fast a partitioned worker is noticed. */
  readonly keepalive?: KeepaliveOptions;
  /** Threads that run the gRPC clients (0: the main thread; default: defaultTransportThreads()). */
  readonly transportThreads?: number;
  readonly backend?: string;
  readonly resume: boolean;
  /** Called after every training step (progress bars; tests use it to interrupt a run). */
  readonly onStep?: TrainerInput["onStep"];
  /** Called with each seed's trainer before it runs (progress views). */
  readonly onTrainer?: (trainer: Trainer, seed: number) => void;
}

export function dataOptions(cfg: RunConfig, imageSize: number, dir: RunDir): DataOptions {
  return {
    dataset: cfg.dataset,
    dataPath: cfg.data_path,
    imageSize,
    mean: cfg.normalize_mean,
    std: cfg.normalize_std,
    onBadImage: cfg.on_bad_image,
    manifestPath: dir.splitManifest,
  };
}

function versions(): Record<string, string> {
  const require = createRequire(import.meta.url);
  const v = (pkg: string) => {
    try {
      return (require(`${pkg}/package.json`) as { version: string }).version;
    } catch {
      return "absent";
    }
  };
  return { inflora: packageVersion(), node: process.version, "tfjs-core": v("@tensorflow/tfjs-core") };
}

interface Workers {
  pool: WorkerPool;
  stop(): Promise<void>;
  describe: string;
}

/**
 * Hardware WebGPU adapters on this node, over which local workers are spread, where webgpu may be the
 * workers' backend (chosen by the ladder or forced); 0 where the packages or a GPU are missing.
 */
async function localGpus(backend: string | undefined): Promise<number> {
  if (backend !== undefined && backend !== "webgpu") return 0;
  try {
    const gpus = countHardwareAdapters(await listAdapters());
    if (gpus > 0) log.info({ gpus }, "local workers spread over the node's GPUs");
    return gpus;
  } catch {
    return 0;
  }
}

/** Builds the run's worker pool from the options: in-process engines, local processes, a list or NATS. */
async function openWorkers(
  opts: TrainOptions,
  backend: string | undefined,
  runId: string,
  params: ParamsBroadcast | undefined,
): Promise<Workers> {
  const callTimeoutMs = opts.callTimeoutMs ?? 600_000;
  const { speculation } = opts;
  const count = opts.workers ?? 1;
  if (opts.inProcess) {
    const clients = Array.from(
      { length: count },
      (_, k) => new WorkerEngine({ backend, name: `in-process-${k}` }),
    );
    const pool = new WorkerPool(clients, { callTimeoutMs, speculation });
    return { pool, stop: async () => {}, describe: "in-process" };
  }
  const threadCount = opts.transportThreads ?? defaultTransportThreads();
  const threads = threadCount > 0 ? new TransportThreads(threadCount) : undefined;
  if (threads) log.info({ threads: threadCount }, "gRPC clients on transport threads");
  const connect = (e: WorkerEndpoint) => {
    const options = {
      address: e.address,
      name: e.id,
      security: opts.security,
      deadlineMs: callTimeoutMs,
      keepalive: opts.keepalive,
    };
    return threads ? threads.connect(options, params) : new GrpcWorkerClient(options, params);
  };
  const closeThreads = async () => {
    await threads?.close();
  };
  try {
    if (opts.workerAddresses?.length || opts.nats) {
      const membership = opts.workerAddresses?.length
        ? staticMembership(opts.workerAddresses)
        : await natsMembership({ url: opts.nats!, auth: natsAuthFromEnv(), runId });
      const pool = new WorkerPool([], { membership, connect, callTimeoutMs, params, speculation });
      return { pool, stop: closeThreads, describe: opts.workerAddresses?.length ? "static list" : "NATS" };
    }
    const local = await startLocalWorkers({ count, backend, gpus: await localGpus(backend) });
    const membership = staticMembership(local.workers.map((w) => w.address));
    const pool = new WorkerPool([], { membership, connect, callTimeoutMs, params, speculation });
    return {
      pool,
      stop: async () => {
        await local.stop();
        await closeThreads();
      },
      describe: "local processes",
    };
  } catch (err) {
    await closeThreads();
    throw err;
  }
}

export async function train(opts: TrainOptions): Promise<Map<number, RunMetrics>> {
  const cfg = loadConfig(opts.config);
  // The coordinator only needs tfjs when the workers run inside it.
  let backendName = opts.backend;
  if (opts.inProcess) {
    const backend = await selectBackend(opts.backend);
    backendName = backend.name;
    log.info(
      { backend: backend.name, device: backend.device, adapter: backend.adapter, skipped: backend.skipped },
      "compute backend",
    );
  }
  const weights = await describeWeights(cfg.weights, {
    imgSize: cfg.img_size,
    patchSize: cfg.patch_size,
    depth: cfg.depth,
    embedDim: cfg.embd_dim,
    numHeads: cfg.num_heads,
    finalNorm: finalNormOf(methodOf(cfg), cfg.dataset),
  });
  const model: VitConfig = { ...weights.cfg };
  const metrics = new CoordinatorMetrics({});
  metrics.setInfo(backendName ?? "workers", infloraVersion());
  const metricsServer =
    opts.metricsPort !== undefined
      ? await serveMetrics(metrics.registry, opts.metricsPort, "0.0.0.0")
      : undefined;
  const results = new Map<number, RunMetrics>();
  let ran = false;
  try {
    for (const seed of cfg.seeds) {
      const dir = RunDir.forSeed(opts.out, seed, cfg.seeds.length);
      const runDir = dir.root;
      if (!opts.resume && dir.holdsRun()) {
        throw new RunDirError(
          `${runDir} already holds a run; pass --resume to continue it, or choose another --out`,
        );
      }
      // A resumed run keeps its id, so its events stay on the same NATS subjects.
      const runId = (opts.resume ? dir.runId() : undefined) ?? randomUUID();
      const data = dataOptions(cfg, model.imgSize, dir);
      const index = await openDatasetIndex(data);
      const paramsNats = opts.nats
        ? await connectNats(opts.nats, { auth: natsAuthFromEnv(), name: "inflora-coordinator-params" })
        : undefined;
      const params = paramsNats ? natsParamsBroadcast(paramsNats, runId) : undefined;
      const workers = await openWorkers(opts, backendName, runId, params).catch(async (err) => {
        await paramsNats?.close().catch(() => {});
        throw err;
      });
      const events = opts.nats
        ? await natsEventSink({
            url: opts.nats,
            auth: natsAuthFromEnv(),
            onFailure: () => metrics.observeNatsEventFailure(),
          })
        : undefined;
      try {
        const trainer = new Trainer({
          cfg,
          seed,
          runDir,
          runId,
          index,
          model,
          weightsFingerprint: weights.fingerprint,
          data,
          pool: workers.pool,
          resume: opts.resume,
          backend: backendName ?? "chosen by each worker",
          versions: versions(),
          metrics,
          onStep: opts.onStep,
        });
        metrics.setRun(runId);
        trainer.eventLog.addSink(metrics.eventSink);
        if (events) trainer.eventLog.addSink(events.sink);
        if (opts.resume && existsSync(dir.metricsJson)) metrics.restoreAccuracy(dir.metricsJson);
        log.info({ seed, runDir, runId, workers: workers.describe }, "run starting");
        opts.onTrainer?.(trainer, seed);
        ran = true;
        try {
          results.set(seed, await trainer.run());
        } finally {
          if (opts.pushgateway) await pushFinal(opts.pushgateway, metrics, runId);
        }
      } finally {
        await workers.pool.close();
        await workers.stop();
        await events?.close();
        await paramsNats?.close().catch(() => {});
      }
    }
  } finally {
    // Finished or failed, the last values must be scraped before the endpoint goes away.
    if (ran) await lingerMetrics(metricsServer, opts.metricsLingerMs ?? DEFAULT_METRICS_LINGER_MS);
    await metricsServer?.close();
  }
  return results;
}

/** A failed push is logged, not thrown: the run's results are on disk either way. */
async function pushFinal(url: string, metrics: CoordinatorMetrics, runId: string): Promise<void> {
  try {
    await pushRunMetrics(url, metrics, runId);
    log.info({ pushgateway: url, run: runId }, "pushed the run's final metrics");
  } catch (err) {
    log.error({ err }, (err as Error).message);
  }
}
