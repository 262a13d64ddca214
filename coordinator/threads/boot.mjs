// Entry point of a coordinator thread when running from TypeScript sources (see startThread in
// call_thread.ts): a worker does not inherit its parent's tsx loader, so register it here, then load the
// TypeScript module the thread runs.
import { workerData } from "node:worker_threads";
import { register } from "tsx/esm/api";

register();
await import(workerData.entry);
