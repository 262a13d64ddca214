// Entry point of the map worker thread when running from TypeScript sources: a worker does not inherit
// the tsx loader of its parent, so register tsx here, then load the TypeScript worker.
import { register } from "tsx/esm/api";

register();
await import("./map-worker.ts");
