/**
 * What both ends of the worker gRPC transport agree on beyond the .proto files: message-size limits, the
 * slice size of streamed payloads, and the trailing-metadata keys that carry why a call was refused.
 */
import type { ChannelOptions } from "@grpc/grpc-js";

export const WORKER_SERVICE = "inflora.v1.Worker";

/**
 * Hard limit for one message, either way, on both sides. Streamed payloads travel in CHUNK_BYTES slices; the
 * largest unsliced messages are one block's parameters or one head ([classes, D] float32: 5000 classes at
 * D = 768 is 15 MB), so 16 MiB leaves room without letting a peer make us buffer arbitrary amounts.
 */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** Target size of one streamed slice (covariance rows, logits rows). */
export const CHUNK_BYTES = 1024 * 1024;

/** Default deadline of a worker call; the coordinator passes shorter ones per phase. */
export const DEFAULT_DEADLINE_MS = 10 * 60_000;

/** ABORTED carries these when the worker lacks a version: which one ("state" | "params") and its number. */
export const STALE_WHAT_KEY = "inflora-stale-what";
export const STALE_VERSION_KEY = "inflora-stale-version";

/** FAILED_PRECONDITION carries this: why the worker refused. */
export const REASON_KEY = "inflora-reason";

export type RefusalReason =
  /** Setup asked for a protocol version this worker does not speak. */
  | "protocol-version"
  /** Setup failed a check of the worker (other base weights, …); the message says which. */
  | "setup-refused"
  /** A compute call before a successful Setup (e.g. the worker restarted): run the handshake again. */
  | "not-set-up"
  /** A call for another run than the one the worker is set up for (a newer coordinator took it over). */
  | "wrong-run";

export const REFUSAL_REASONS: readonly RefusalReason[] = [
  "protocol-version",
  "setup-refused",
  "not-set-up",
  "wrong-run",
];

export function messageLimits(maxBytes = MAX_MESSAGE_BYTES): ChannelOptions {
  return { "grpc.max_receive_message_length": maxBytes, "grpc.max_send_message_length": maxBytes };
}
