/**
 * `inflora worker`: serves one worker over gRPC, optionally with Prometheus metrics and a NATS lease.
 * Started by a local coordinator (`--workers N`), it reports its address over IPC and exits when that
 * channel closes, so a killed coordinator leaves no orphans.
 */
import os from "node:os";
import { log } from "../common/log.js";
import { infloraVersion } from "../common/metrics_runtime.js";
import { DEFAULT_METRICS_LINGER_MS, lingerMetrics, serveMetrics } from "../common/metrics_server.js";
import { WorkerMetrics } from "../worker/metrics.js";
import type { NatsParamsFeed } from "../worker/nats_params.js";
import { runWorkerServer } from "../worker/serve_main.js";

/** The NATS client and what uses it load only for `--nats`: a worker without it starts lighter. */
async function loadNats() {
  const [{ connectNats, natsAuthFromEnv }, { holdLease }, { NatsParamsFeed }] = await Promise.all([
    import("../common/nats_connect.js"),
    import("../worker/nats_lease.js"),
    import("../worker/nats_params.js"),
  ]);
  return { connectNats, natsAuthFromEnv, holdLease, NatsParamsFeed };
}

export interface WorkerCommandOptions {
  readonly listen: string;
  readonly backend?: string;
  /** `--gpu N`: the Nth hardware WebGPU adapter. */
  readonly gpu?: number;
  readonly name?: string;
  readonly tokenFile?: string;
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  readonly tlsClientCa?: string;
  readonly dataThreads?: number;
  readonly maxCalls?: number;
  readonly metricsPort?: number;
  /** After a SIGTERM/SIGINT shutdown, serve the final counters this long (ms). */
  readonly metricsLinger?: number;
  readonly nats?: string;
  readonly advertise?: string;
  readonly leaseMs?: number;
}

export async function runWorkerCommand(o: WorkerCommandOptions): Promise<void> {
  const abort = new AbortController();
  if (process.env.INFLORA_PARENT_IPC && process.send) {
    process.on("disconnect", () => {
      log.warn("coordinator went away; stopping");
      abort.abort();
    });
  }
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) {
    throw Object.assign(new Error("--tls-cert and --tls-key must be given together"), {
      name: "InvalidArgumentError",
    });
  }
  const metrics = new WorkerMetrics();
  const metricsServer =
    o.metricsPort !== undefined ? await serveMetrics(metrics.registry, o.metricsPort, "0.0.0.0") : undefined;
  let stopLease: (() => Promise<void>) | undefined;
  // With NATS, the coordinator's per-step parameters arrive by publish instead of one gRPC copy each.
  const nats = o.nats ? await loadNats() : undefined;
  const paramsNats =
    nats && o.nats
      ? await nats.connectNats(o.nats, { auth: nats.natsAuthFromEnv(), name: "inflora-worker-params" })
      : undefined;
  const paramsFeed: NatsParamsFeed | undefined =
    nats && paramsNats ? new nats.NatsParamsFeed(paramsNats) : undefined;
  try {
    await runWorkerServer({
      paramsFeed,
      listen: o.listen,
      backend: o.backend,
      gpu: o.gpu,
      name: o.name,
      tokenFile: o.tokenFile,
      dataThreads: o.dataThreads,
      maxCallsInFlight: o.maxCalls,
      tls:
        o.tlsCert && o.tlsKey
          ? { certFile: o.tlsCert, keyFile: o.tlsKey, clientCaFile: o.tlsClientCa }
          : undefined,
      signal: abort.signal,
      wrap: (engine) => metrics.instrument(engine),
      onListening: async ({ address, backend, device, adapter }) => {
        metrics.setInfo(backend, infloraVersion(), adapter);
        process.send?.({ type: "listening", address });
        if (nats && o.nats) {
          const id = (o.name ?? `${os.hostname()}-${process.pid}`).replace(/[^A-Za-z0-9_=/.-]/g, "-");
          const lease = await nats.holdLease({
            url: o.nats,
            leaseMs: o.leaseMs,
            auth: nats.natsAuthFromEnv(),
            endpoint: {
              id,
              address: o.advertise ?? address,
              capabilities: { backend, device, version: infloraVersion() },
            },
          });
          stopLease = () => lease.stop();
          process.send?.({ type: "leased", id });
          log.info({ id, nats: o.nats }, "worker lease held");
        }
      },
    });
    // Told to stop (not orphaned by a vanished coordinator): let Prometheus scrape the final counters.
    if (!abort.signal.aborted) {
      await stopLease?.().catch(() => {});
      stopLease = undefined;
      await lingerMetrics(metricsServer, o.metricsLinger ?? DEFAULT_METRICS_LINGER_MS);
    }
  } finally {
    await stopLease?.().catch(() => {});
    await paramsFeed?.close();
    await paramsNats?.close().catch(() => {});
    await metricsServer?.close();
  }
}
