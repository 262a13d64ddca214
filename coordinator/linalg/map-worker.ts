/**
 * Worker-thread side of mapOnThreads (thread-map.ts): imports the requested module once, calls the
 * requested export with the arguments it is sent, and replies with the result (structured-cloned).
 * BLAS runs on one thread here: the parallelism is across workers, and a per-call thread count that
 * another worker could change mid-call would make results depend on timing.
 */
import { parentPort } from "node:worker_threads";
import { nativeAddon } from "../../native/index.js";

export interface MapRequest {
  /** File URL of the module. */
  readonly module: string;
  readonly fn: string;
  readonly args: readonly unknown[];
}

export type MapReply = { readonly result: unknown } | { readonly error: string };

const port = parentPort;
if (port === null) throw new Error("map-worker must run in a worker thread");
nativeAddon()?.setThreads(1);
const modules = new Map<string, Promise<Record<string, unknown>>>();

port.on("message", async (req: MapRequest) => {
  let reply: MapReply;
  try {
    let mod = modules.get(req.module);
    if (!mod) {
      mod = import(req.module) as Promise<Record<string, unknown>>;
      modules.set(req.module, mod);
    }
    const f = (await mod)[req.fn];
    if (typeof f !== "function") throw new Error(`${req.module} has no exported function ${req.fn}`);
    reply = { result: await f(...req.args) };
  } catch (err) {
    reply = { error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
  }
  port.postMessage(reply);
});
