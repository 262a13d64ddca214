/**
 * A bound on the worker calls a server holds at once. Every admitted call may hold a decoded request (a
 * training step's parameters, a task state) while it waits its turn at the engine, so calls beyond the
 * bound are refused at once with RESOURCE_EXHAUSTED instead of queueing without end. A coordinator keeps
 * one call per worker in flight, plus a retry or a speculative copy now and then: the default leaves room
 * for those.
 */
import { Metadata, ServerInterceptingCall, type ServerInterceptor, status } from "@grpc/grpc-js";

export const DEFAULT_MAX_CALLS_IN_FLIGHT = 8;

/** HTTP/2 streams one connection may open: the call limit plus room for health checks and reflection. */
export function maxConcurrentStreams(maxCalls: number): number {
  return maxCalls + 8;
}

/**
 * Admits at most `max` calls at a time (those `exempt` says are not counted: health checks); a call holds
 * its place from its metadata until its status is sent or it is cancelled. Put it after the token check,
 * so that refused callers hold no place.
 */
export function callLimitInterceptor(
  max: number,
  exempt: (path: string) => boolean,
  /** Told about every refused call, for the log. */
  onRefused?: (info: { path: string; peer: string; inFlight: number }) => void,
): ServerInterceptor {
  if (!Number.isSafeInteger(max) || max < 1)
    throw new RangeError(`the call limit must be a positive integer, got ${max}`);
  let inFlight = 0;
  return (method, call) => {
    if (exempt(method.path)) return new ServerInterceptingCall(call);
    let admitted = false;
    const release = () => {
      if (!admitted) return;
      admitted = false;
      inFlight--;
    };
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, accept) => {
            if (inFlight >= max) {
              onRefused?.({ path: method.path, peer: call.getPeer(), inFlight });
              call.sendStatus({
                code: status.RESOURCE_EXHAUSTED,
                details: `${inFlight} calls in flight: this worker takes at most ${max} at once (--max-calls)`,
                metadata: new Metadata(),
              });
              return;
            }
            admitted = true;
            inFlight++;
            accept(metadata);
          },
          // grpc-js signals the end of every call here, whoever ended it (a status, the client, a deadline).
          onCancel: release,
        }),
      sendStatus: (s, next) => {
        release();
        next(s);
      },
    });
  };
}
