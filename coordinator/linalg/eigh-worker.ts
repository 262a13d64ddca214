/**
 * Worker-thread side of eighMany (parallel.ts): decomposes each matrix it is sent and sends the result
 * back, transferring the buffers instead of copying them.
 */

import { parentPort } from "node:worker_threads";
import { eighDescending } from "./eigh.js";
import { mat } from "./matrix.js";

export interface EighRequest {
  readonly n: number;
  readonly data: Float64Array;
}

export type EighReply =
  | { readonly values: Float64Array; readonly vectors: Float64Array }
  | { readonly error: string };

const port = parentPort;
if (port === null) throw new Error("eigh-worker must run in a worker thread");
port.on("message", (req: EighRequest) => {
  let result: { values: Float64Array; vectors: Float64Array };
  try {
    const { values, vectors } = eighDescending(mat(req.n, req.n, req.data));
    result = { values, vectors: vectors.data };
  } catch (err) {
    const reply: EighReply = { error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
    port.postMessage(reply);
    return;
  }
  const reply: EighReply = result;
  port.postMessage(reply, [result.values.buffer as ArrayBuffer, result.vectors.buffer as ArrayBuffer]);
});
