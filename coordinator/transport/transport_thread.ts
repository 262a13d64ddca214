/**
 * A transport thread: runs the GrpcWorkerClients of some workers off the coordinator's main thread, so
 * that receiving, decoding and checking replies (tens of MB per step at 16 workers) and writing the
 * parameter broadcast use other cores, and the main thread only reduces, steps the optimizer and plans.
 * Calls arrive from threaded_client.ts; results go back with their buffers moved, not copied.
 */
import type { TrainParams } from "../../common/protocol.js";
import { serveCalls } from "../threads/serve_calls.js";
import { GrpcWorkerClient } from "./grpc_client.js";
import type { PublishedParams } from "./params_broadcast.js";
import {
  type CallMessage,
  serializeError,
  type ThreadCall,
  type ThreadNote,
  transferablesOf,
} from "./thread_messages.js";

const clients = new Map<number, GrpcWorkerClient>();
/** Clients whose construction failed: their calls fail with the reason. */
const broken = new Map<number, unknown>();
/**
 * Parameters by version, one object per version shared by this thread's clients, so that each client's
 * encoding cache (keyed by the object) encodes a step's parameters once for all of them. The newest few
 * are kept: a retried or late call may still name the previous version.
 */
const params = new Map<number, TrainParams>();
const KEEP_VERSIONS = 3;
/** The digests those versions were published on NATS under (the main thread's broadcast, relayed). */
const digests = new Map<number, string>();

function publishedOn(subject: string | undefined): PublishedParams | undefined {
  return subject === undefined ? undefined : { subject, digestOf: (version) => digests.get(version) };
}

function run(client: GrpcWorkerClient, call: CallMessage, signal: AbortSignal): Promise<unknown> {
  switch (call.method) {
    case "setup":
      return client.setup(call.arg);
    case "setTaskState":
      return client.setTaskState(call.arg);
    case "covariance":
      return client.covariance(call.arg, { signal });
    case "evaluate":
      return client.evaluate(call.arg, { signal });
    case "close":
      clients.forEach((c, id) => {
        if (c === client) clients.delete(id);
      });
      return client.close();
    case "trainStep": {
      const { stateVersion, paramsVersion, full, shards } = call.arg;
      const p = full ? params.get(paramsVersion) : { version: paramsVersion };
      // The main thread sends a version's parameters before the first call that needs them.
      if (!p) throw new Error(`transport thread: parameters of version ${paramsVersion} never arrived`);
      return client.trainStep({ stateVersion, params: p, shards }, { signal });
    }
  }
}

serveCalls<ThreadCall, ThreadNote>({
  note(msg) {
    switch (msg.op) {
      case "open":
        try {
          clients.set(msg.client, new GrpcWorkerClient(msg.options, publishedOn(msg.paramsSubject)));
        } catch (err) {
          broken.set(msg.client, err);
        }
        return;
      case "params":
        params.set(msg.version, { version: msg.version, Ak: msg.Ak, Av: msg.Av, head: msg.head });
        if (msg.digest !== undefined) digests.set(msg.version, msg.digest);
        for (const v of [...params.keys()].sort((a, b) => a - b).slice(0, -KEEP_VERSIONS)) {
          params.delete(v);
          digests.delete(v);
        }
        return;
    }
  },
  call(msg, signal) {
    const client = clients.get(msg.client);
    if (!client) throw broken.get(msg.client) ?? new Error(`transport thread: no client ${msg.client}`);
    return run(client, msg, signal);
  },
  encodeError: serializeError,
  transferables: transferablesOf,
});
