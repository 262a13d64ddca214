/**
 * The thread side of CallThread (call_thread.ts): answers every call with one Reply carrying its seq,
 * hands one-way notes to `note`. Calls run concurrently; a thread whose calls compute synchronously
 * answers them in order.
 */
import { parentPort } from "node:worker_threads";
import { encodePlainError, type Reply, type ToThread } from "./messages.js";

export interface CallHandlers<Call, Note> {
  /** `signal` aborts when the caller gives the call up (CallThread.call's signal). */
  call(call: Call, signal: AbortSignal): unknown;
  note?(note: Note): void;
  /** Error → data that survives structured cloning; default: name, message, stack. */
  encodeError?(err: unknown): unknown;
  /** Buffers of a result to move rather than copy; default: none. */
  transferables?(value: unknown): ArrayBuffer[];
}

export function serveCalls<Call, Note = never>(handlers: CallHandlers<Call, Note>): void {
  const port = parentPort;
  if (!port) throw new Error("serveCalls: this module runs as a worker thread");
  const encode = handlers.encodeError ?? encodePlainError;
  const inFlight = new Map<number, AbortController>();
  port.on("message", (msg: ToThread) => {
    if ("cancel" in msg) {
      inFlight.get(msg.cancel)?.abort();
      return;
    }
    if (!("seq" in msg)) {
      handlers.note?.(msg.note as Note);
      return;
    }
    const { seq } = msg;
    const abort = new AbortController();
    inFlight.set(seq, abort);
    Promise.resolve()
      .then(() => handlers.call(msg.call as Call, abort.signal))
      .finally(() => inFlight.delete(seq))
      .then(
        (value) =>
          port.postMessage({ seq, ok: true, value } satisfies Reply, handlers.transferables?.(value) ?? []),
        (err: unknown) => port.postMessage({ seq, ok: false, error: encode(err) } satisfies Reply),
      );
  });
}
