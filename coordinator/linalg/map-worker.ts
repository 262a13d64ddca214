/**
 * Worker-thread side of mapOnThreads (thread-map.ts): imports the requested module once, calls the
 * requested export with the arguments it is sent, and replies with the result (structured-cloned).
 * BLAS runs on one thread here: the parallelism is across threads, and a per-call thread count that
 * another thread could change mid-call would make results depend on timing.
 */
import { nativeAddon } from "../../native/index.js";
import { serveCalls } from "../threads/serve_calls.js";

export interface MapCall {
  /** File URL of the module. */
  readonly module: string;
  readonly fn: string;
  readonly args: readonly unknown[];
}

nativeAddon()?.setThreads(1);
const modules = new Map<string, Promise<Record<string, unknown>>>();

serveCalls<MapCall>({
  async call(req) {
    let mod = modules.get(req.module);
    if (!mod) {
      mod = import(req.module) as Promise<Record<string, unknown>>;
      modules.set(req.module, mod);
    }
    const f = (await mod)[req.fn];
    if (typeof f !== "function") throw new Error(`${req.module} has no exported function ${req.fn}`);
    return f(...req.args);
  },
});
