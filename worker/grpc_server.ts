/**
 * Serves a WorkerClient (in practice a WorkerEngine) over gRPC: the `inflora.v1.Worker` service, the
 * standard health service and server reflection, behind the bearer-token interceptor and optional TLS.
 *
 * Health: the overall status ("") is SERVING as soon as the server listens — that is what a Kubernetes
 * readiness probe must see, since the coordinator can only run the Setup handshake on a worker it can reach
 * (a worker that became ready only after Setup would never be found). `inflora.v1.Worker` turns SERVING
 * after a successful Setup, for operators who want to know which workers hold a run. Health needs no token:
 * Kubernetes gRPC probes cannot send headers. Both go NOT_SERVING when the server shuts down.
 */
import path from "node:path";
import { Server, type ServerCredentials } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { HealthImplementation, protoPath as healthProtoPath } from "grpc-health-check";
import {
  assertBindAllowed,
  bearerTokenInterceptor,
  isLoopbackHost,
  parseListenAddress,
  resolveToken,
  type ServerSecurityOptions,
  serverCredentials,
} from "../common/grpc_security.js";
import { CHUNK_BYTES, MAX_MESSAGE_BYTES, messageLimits, WORKER_SERVICE } from "../common/grpc_wire.js";
import { log } from "../common/log.js";
import { packageFile } from "../common/package_files.js";
import type { WorkerClient } from "../common/protocol.js";
import { WorkerService } from "../proto/gen/inflora/v1/worker.js";
import { callLimitInterceptor, DEFAULT_MAX_CALLS_IN_FLIGHT, maxConcurrentStreams } from "./call_limit.js";
import {
  serializeTrainStepResponse,
  tolerantDefinition,
  tolerantRegistrar,
  WorkerGrpcService,
} from "./grpc_service.js";
import type { ParamsFeed } from "./nats_params.js";

export interface ServeWorkerOptions {
  readonly worker: WorkerClient;
  /** `host:port` (IPv6: `[addr]:port`) or `unix:/path`; port 0 picks a free port. */
  readonly listen: string;
  /** Token (else token file, else $INFLORA_TOKEN) and TLS. Without a token only loopback may be bound. */
  readonly security?: ServerSecurityOptions;
  /** Largest message either way (default MAX_MESSAGE_BYTES, 16 MiB). */
  readonly maxMessageBytes?: number;
  /** Worker calls held at once; more are refused with RESOURCE_EXHAUSTED (default 8, worker/call_limit.ts). */
  readonly maxCallsInFlight?: number;
  /** Target size of streamed reply slices (default CHUNK_BYTES, 1 MiB). */
  readonly chunkBytes?: number;
  /** How long close() lets in-flight calls finish before cancelling them (default 30 s). */
  readonly shutdownGraceMs?: number;
  /** Parameters the coordinator publishes on NATS; without it TrainSteps that name them are "stale". */
  readonly paramsFeed?: ParamsFeed;
}

export interface WorkerServerHandle {
  /** Where clients connect: the listen host with the bound port. */
  readonly address: string;
  readonly port: number;
  /** Whether calls must carry the bearer token (health checks never need it). */
  readonly tokenRequired: boolean;
  /** Graceful: health NOT_SERVING, no new calls, in-flight calls finish (up to the grace period). */
  close(): Promise<void>;
}

const HEALTH_PREFIX = "/grpc.health.v1.Health/";

export async function serveWorker(options: ServeWorkerOptions): Promise<WorkerServerHandle> {
  const security = options.security ?? {};
  const token = resolveToken(security);
  assertBindAllowed(options.listen, token !== undefined);
  const credentials = serverCredentials(security.tls);
  const maxBytes = options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
  const maxCalls = options.maxCallsInFlight ?? DEFAULT_MAX_CALLS_IN_FLIGHT;
  const isHealth = (p: string) => p.startsWith(HEALTH_PREFIX);

  const server = new Server({
    ...messageLimits(maxBytes),
    "grpc.max_concurrent_streams": maxConcurrentStreams(maxCalls),
    // The token check comes first: a caller without it takes no place under the call limit.
    interceptors: [
      ...(token === undefined
        ? []
        : [
            bearerTokenInterceptor(token, isHealth, (refused) =>
              log.warn(refused, "call refused: unauthenticated"),
            ),
          ]),
      callLimitInterceptor(maxCalls, isHealth, (refused) =>
        log.warn({ ...refused, limit: maxCalls }, "call refused: too many calls in flight"),
      ),
    ],
  });
  const health = new HealthImplementation({ "": "NOT_SERVING", [WORKER_SERVICE]: "NOT_SERVING" });
  const service = new WorkerGrpcService(options.worker, {
    chunkBytes: options.chunkBytes ?? CHUNK_BYTES,
    paramsFeed: options.paramsFeed,
    onReady: (ready) => health.setStatus(WORKER_SERVICE, ready ? "SERVING" : "NOT_SERVING"),
  });
  const definition = tolerantDefinition(WorkerService);
  server.addService(
    {
      ...definition,
      trainStep: {
        ...definition.trainStep,
        responseSerialize: serializeTrainStepResponse as (m: unknown) => Buffer,
      },
    },
    service.handlers(),
  );
  health.addToServer(tolerantRegistrar(server));
  new ReflectionService(reflectionPackage()).addToServer(server);

  const port = await bind(server, options.listen, credentials);
  const address = boundAddress(options.listen, port);
  health.setStatus("", "SERVING");
  const where = parseListenAddress(options.listen);
  if (token !== undefined && !security.tls && "host" in where && !isLoopbackHost(where.host)) {
    log.warn(
      { address },
      "the bearer token travels unencrypted: use TLS unless the network (or a mesh) encrypts it",
    );
  }

  let closing: Promise<void> | undefined;
  const grace = options.shutdownGraceMs ?? 30_000;
  return {
    address,
    port,
    tokenRequired: token !== undefined,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        health.setStatus("", "NOT_SERVING");
        health.setStatus(WORKER_SERVICE, "NOT_SERVING");
        const timer = setTimeout(() => {
          log.warn(
            { address, graceMs: grace },
            "calls still running at the end of the grace period: cancelling them",
          );
          server.forceShutdown();
          resolve();
        }, grace);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      return closing;
    },
  };
}

function bind(server: Server, listen: string, credentials: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(listen, credentials, (err, port) => {
      if (err) reject(new Error(`cannot listen on ${listen}: ${err.message}`));
      else resolve(port);
    });
  });
}

function boundAddress(listen: string, port: number): string {
  const where = parseListenAddress(listen);
  if ("unix" in where) return listen;
  return where.host.includes(":") ? `[${where.host}]:${port}` : `${where.host}:${port}`;
}

/** Reflection describes the .proto sources (shipped next to the code) and the health service. */
function reflectionPackage() {
  const protoDir = packageFile("proto");
  const healthRoot = path.resolve(path.dirname(healthProtoPath), "../..");
  return loadSync(["inflora/v1/worker.proto", path.relative(healthRoot, healthProtoPath)], {
    includeDirs: [protoDir, healthRoot],
  });
}
