/**
 * `inflora worker`'s body: one WorkerEngine served over gRPC until SIGTERM/SIGINT (or an abort signal),
 * then a graceful shutdown — health goes NOT_SERVING, no new calls are accepted, in-flight calls finish
 * (up to the grace period), and only then is the engine's memory released.
 */
import type { ServerTlsOptions } from "../common/grpc_security.js";
import { log } from "../common/log.js";
import type { GpuAdapter, WorkerClient } from "../common/protocol.js";
import { selectBackend } from "./backend.js";
import { WorkerEngine } from "./engine.js";
import { serveWorker } from "./grpc_server.js";
import type { ParamsFeed } from "./nats_params.js";

export interface RunWorkerServerOptions {
  /** `host:port` (IPv6: `[addr]:port`); port 0 picks a free port (see onListening). */
  readonly listen: string;
  /** Compute backend (`node-gpu`, `webgpu`, `node`, `blas`, `wasm`, `cpu`); default: the first that works. */
  readonly backend?: string;
  /** `--gpu N`: the Nth hardware WebGPU adapter. */
  readonly gpu?: number;
  /** Decode/augment threads of the data loader; default: the request's, else all cores. */
  readonly dataThreads?: number;
  /** The worker's name in logs. */
  readonly name?: string;
  /** Bearer token, or a file holding it; else $INFLORA_TOKEN; none: loopback only. */
  readonly token?: string;
  readonly tokenFile?: string;
  /** Server certificate and key; with clientCaFile, mutual TLS. */
  readonly tls?: ServerTlsOptions;
  /** How long shutdown lets in-flight calls finish (default 30 s). */
  readonly shutdownGraceMs?: number;
  /** Worker calls held at once; more are refused with RESOURCE_EXHAUSTED (default 8). */
  readonly maxCallsInFlight?: number;
  /** Stops the server like SIGTERM does (tests, embedding). */
  readonly signal?: AbortSignal;
  /** Called once listening: how a parent that asked for port 0 learns the port. */
  readonly onListening?: (info: {
    address: string;
    port: number;
    backend: string;
    device: string;
    adapter?: GpuAdapter;
  }) => void;
  /** Wraps the engine before it is served (request metrics). */
  readonly wrap?: (engine: WorkerClient) => WorkerClient;
  /** Parameters the coordinator publishes on NATS (with --nats). */
  readonly paramsFeed?: ParamsFeed;
}

/** Serves until SIGTERM, SIGINT or `signal`; resolves after the graceful shutdown. */
export async function runWorkerServer(opts: RunWorkerServerOptions): Promise<void> {
  // Initialise the backend before listening: a bad --backend fails here, not at the first Setup.
  const backend = await selectBackend({ backend: opts.backend, gpu: opts.gpu });
  log.info(
    { backend: backend.name, device: backend.device, adapter: backend.adapter, skipped: backend.skipped },
    "compute backend",
  );
  const engine = new WorkerEngine({
    backend: backend.name,
    gpu: opts.gpu,
    dataThreads: opts.dataThreads,
    name: opts.name,
  });
  let server: Awaited<ReturnType<typeof serveWorker>>;
  try {
    server = await serveWorker({
      worker: opts.wrap ? opts.wrap(engine) : engine,
      listen: opts.listen,
      security: { token: opts.token, tokenFile: opts.tokenFile, tls: opts.tls },
      shutdownGraceMs: opts.shutdownGraceMs,
      maxCallsInFlight: opts.maxCallsInFlight,
      paramsFeed: opts.paramsFeed,
    });
  } catch (err) {
    await engine.close();
    throw err;
  }
  log.info(
    {
      address: server.address,
      tls: opts.tls ? (opts.tls.clientCaFile ? "mutual" : "server") : "off",
      auth: server.tokenRequired ? "bearer token" : "none (loopback only)",
    },
    "worker listening",
  );
  opts.onListening?.({
    address: server.address,
    port: server.port,
    backend: backend.name,
    device: backend.device,
    adapter: backend.adapter,
  });

  const why = await new Promise<string>((resolve) => {
    const onSignal = (signal: string) => {
      // `once` restores the default action: a second Ctrl-C kills the process if shutdown hangs.
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
      resolve(signal);
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
    if (opts.signal?.aborted) onSignal("abort");
    opts.signal?.addEventListener("abort", () => onSignal("abort"), { once: true });
  });
  log.info({ why, address: server.address }, "worker shutting down: finishing in-flight calls");
  await server.close();
  await engine.close();
  log.info({ address: server.address }, "worker stopped");
}
