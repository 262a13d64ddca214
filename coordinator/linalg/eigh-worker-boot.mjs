// Entry point of the eigh worker thread when running from TypeScript sources: a worker does not inherit
// the tsx loader of its parent (and Node 20 ignores `--import tsx` in a worker's execArgv for the
// worker's own entry module), so register tsx here, then load the TypeScript worker.
import { register } from "tsx/esm/api";

register();
await import("./eigh-worker.ts");
