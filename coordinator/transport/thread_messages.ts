/**
 * What the main thread and a transport thread say to each other (see threaded_client.ts; carried by
 * threads/call_thread.ts), and how the transport's errors cross the thread boundary with their class and
 * tag: the worker pool tells a malformed reply (quarantine, by its tag), a stale version (resend) and a
 * failed call (retry) apart.
 */
import type { Head } from "../../common/adapters.js";
import type {
  CovarianceRequest,
  EvalRequest,
  MicroShard,
  SetupRequest,
  TaskState,
} from "../../common/protocol.js";
import { StaleVersionError } from "../../common/protocol.js";
import { decodePlainError, encodePlainError, type PlainError } from "../threads/messages.js";
import type { GrpcWorkerClientOptions } from "./grpc_client.js";
import { MalformedReplyError, WorkerRpcError } from "./grpc_client.js";

/** A training step as it crosses to the thread: the parameters travel once per version (`params`). */
export interface ThreadTrainStep {
  readonly stateVersion: number;
  readonly paramsVersion: number;
  /** Send the full parameters of `paramsVersion` (the thread holds them), not only the version. */
  readonly full: boolean;
  readonly shards: MicroShard[];
}

export type CallMessage =
  | { readonly method: "setup"; readonly arg: SetupRequest }
  | { readonly method: "setTaskState"; readonly arg: TaskState }
  | { readonly method: "covariance"; readonly arg: CovarianceRequest }
  | { readonly method: "trainStep"; readonly arg: ThreadTrainStep }
  | { readonly method: "evaluate"; readonly arg: EvalRequest }
  | { readonly method: "close"; readonly arg?: undefined };

/** One-way notes to a transport thread: a client to open, a version's parameters to hold. */
export type ThreadNote =
  | {
      readonly op: "open";
      readonly client: number;
      readonly options: GrpcWorkerClientOptions;
      /** The NATS subject of the published parameters, when the coordinator publishes them. */
      readonly paramsSubject?: string;
    }
  | {
      readonly op: "params";
      readonly version: number;
      /** The SHA-256 of their published encoding, when they were published. */
      readonly digest?: string;
      readonly Ak: Float32Array[];
      readonly Av: Float32Array[];
      readonly head: Head;
    };

/** A call to a transport thread (threads/call_thread.ts carries it): a method of one of its clients. */
export type ThreadCall = { readonly client: number } & CallMessage;

export type SerializedError =
  | {
      readonly kind: "malformed";
      readonly worker: string;
      readonly method: string;
      readonly field: string;
      readonly detail: string;
    }
  | {
      readonly kind: "rpc";
      readonly worker: string;
      readonly method: WorkerRpcError["method"];
      readonly code: number;
      readonly details: string;
      readonly reason?: WorkerRpcError["reason"];
    }
  | { readonly kind: "stale"; readonly what: "state" | "params"; readonly wanted: number }
  | (PlainError & { readonly kind: "other"; readonly tag?: string });

export function serializeError(err: unknown): SerializedError {
  if (err instanceof MalformedReplyError) {
    return {
      kind: "malformed",
      worker: err.worker,
      method: err.method,
      field: err.field,
      detail: err.detail,
    };
  }
  if (err instanceof WorkerRpcError) {
    return {
      kind: "rpc",
      worker: err.worker,
      method: err.method,
      code: err.code,
      details: err.details,
      reason: err.reason,
    };
  }
  if (err instanceof StaleVersionError) return { kind: "stale", what: err.what, wanted: err.wanted };
  const tag = (err as { tag?: unknown } | null)?.tag;
  return { kind: "other", ...encodePlainError(err), ...(typeof tag === "string" ? { tag } : {}) };
}

export function deserializeError(e: SerializedError): Error {
  switch (e.kind) {
    case "malformed":
      return new MalformedReplyError(e.worker, e.method, e.field, e.detail);
    case "rpc":
      return new WorkerRpcError(e.worker, e.method, e.code, e.details, e.reason);
    case "stale":
      return new StaleVersionError(e.what, e.wanted);
    case "other": {
      const err = decodePlainError(e);
      return e.tag === undefined ? err : Object.assign(err, { tag: e.tag });
    }
  }
}

/**
 * The ArrayBuffers under the typed arrays of a result, once each: moved, not copied, to the main thread.
 * Only buffers that nothing else in the thread uses qualify: the transport's decoded replies and the
 * gRPC message buffers its gradients are read from in place — but never Node's shared Buffer pool, from
 * which Buffer.allocUnsafe, Buffer.from and Buffer.concat (so gRPC's smaller messages) cut every Buffer
 * shorter than half of Buffer.poolSize: moving it would break every later small allocation. The test is
 * that documented rule, not the pool's own size, which differs between Node lines. Arrays shorter than
 * that are cheap to copy anyway.
 */
export function transferablesOf(value: unknown, out = new Set<ArrayBuffer>()): ArrayBuffer[] {
  if (ArrayBuffer.isView(value)) {
    const buffer = value.buffer;
    if (buffer instanceof ArrayBuffer && value.byteLength >= Buffer.poolSize >>> 1) out.add(buffer);
  } else if (Array.isArray(value)) {
    for (const v of value) transferablesOf(v, out);
  } else if (value !== null && typeof value === "object") {
    for (const v of Object.values(value)) transferablesOf(v, out);
  }
  return [...out];
}
