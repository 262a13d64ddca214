/**
 * A worker's Prometheus metrics: requests and their duration per RPC, images processed, backend info, tfjs
 * memory and the process metrics. `instrument()` wraps the WorkerClient the gRPC service serves, so the
 * transport code needs no metrics calls of its own and in-process workers can be measured the same way.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import {
  InfoMetric,
  METRIC_PREFIX as P,
  registerProcessMetrics,
  registerTfjsMemoryMetrics,
} from "../common/metrics_runtime.js";
import {
  type GpuAdapter,
  type MicroShard,
  StaleVersionError,
  type WorkerClient,
} from "../common/protocol.js";

export type WorkerRpc = "setup" | "set_task_state" | "covariance" | "train_step" | "evaluate";
/** `stale`: the coordinator named a version this worker lacks — normal after a restart, not a fault. */
export type RpcOutcome = "ok" | "stale" | "error";
export type ImageKind = "train" | "covariance" | "eval";

const RPCS: readonly WorkerRpc[] = ["setup", "set_task_state", "covariance", "train_step", "evaluate"];
/** A block of micro-shards is tens of milliseconds (tiny models) to tens of seconds (ViT-B/16 on CPU). */
const RPC_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export class WorkerMetrics {
  readonly registry = new Registry();
  private readonly info: InfoMetric;
  private readonly requests: Counter<"rpc" | "outcome">;
  private readonly duration: Histogram<"rpc">;
  private readonly inflight: Gauge;
  private readonly images: Counter<"kind">;

  constructor(opts: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.info = new InfoMetric(this.registry, "worker");
    this.requests = new Counter({
      name: `${P}worker_requests_total`,
      help: "Requests the worker handled, by RPC and outcome (ok, stale version, error)",
      labelNames: ["rpc", "outcome"],
      registers,
    });
    this.duration = new Histogram({
      name: `${P}worker_request_duration_seconds`,
      help: "Time the worker spent on one request, by RPC",
      labelNames: ["rpc"],
      buckets: RPC_BUCKETS,
      registers,
    });
    this.inflight = new Gauge({
      name: `${P}worker_inflight_requests`,
      help: "Requests the worker is handling now",
      registers,
    });
    this.images = new Counter({
      name: `${P}worker_images_total`,
      help: "Images the worker ran through the model, by pass (train, covariance, eval)",
      labelNames: ["kind"],
      registers,
    });
    // Zero series up front, so `rate()` and the dashboard see every RPC before its first call.
    for (const rpc of RPCS) {
      this.duration.zero({ rpc });
      for (const outcome of ["ok", "stale", "error"] as const) this.requests.inc({ rpc, outcome }, 0);
    }
    for (const kind of ["train", "covariance", "eval"] as const) this.images.inc({ kind }, 0);
    if (opts.processMetrics ?? true) registerProcessMetrics(this.registry);
    registerTfjsMemoryMetrics(this.registry);
  }

  setInfo(backend: string, version: string, adapter?: GpuAdapter): void {
    this.info.set(backend, version, adapter);
  }

  observeRpc(rpc: WorkerRpc, seconds: number, outcome: RpcOutcome): void {
    this.requests.inc({ rpc, outcome });
    this.duration.observe({ rpc }, seconds);
  }

  countImages(kind: ImageKind, n: number): void {
    this.images.inc({ kind }, n);
  }

  /** The same worker, with every call counted and timed. */
  instrument(client: WorkerClient): WorkerClient {
    const timed = <T>(rpc: WorkerRpc, call: () => Promise<T>, images?: () => void): Promise<T> => {
      const started = performance.now();
      this.inflight.inc();
      return call().then(
        (value) => {
          this.inflight.dec();
          this.observeRpc(rpc, (performance.now() - started) / 1000, "ok");
          images?.();
          return value;
        },
        (err: unknown) => {
          this.inflight.dec();
          this.observeRpc(rpc, (performance.now() - started) / 1000, outcomeOf(err));
          throw err;
        },
      );
    };
    const count = (kind: ImageKind, shards: readonly MicroShard[]) => () =>
      this.countImages(
        kind,
        shards.reduce((n, s) => n + s.samples.length, 0),
      );
    return {
      name: client.name,
      setup: (req) => timed("setup", () => client.setup(req)),
      setTaskState: (state) => timed("set_task_state", () => client.setTaskState(state)),
      covariance: (req) => timed("covariance", () => client.covariance(req), count("covariance", req.shards)),
      trainStep: (req) => timed("train_step", () => client.trainStep(req), count("train", req.shards)),
      evaluate: (req) => timed("evaluate", () => client.evaluate(req), count("eval", req.shards)),
      close: () => client.close(),
    };
  }
}

function outcomeOf(err: unknown): RpcOutcome {
  return err instanceof StaleVersionError || (err as Error)?.name === "StaleVersionError" ? "stale" : "error";
}
