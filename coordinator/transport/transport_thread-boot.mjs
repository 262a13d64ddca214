// Entry point of a transport thread when running from TypeScript sources: a worker does not inherit
// the tsx loader of its parent, so register tsx here, then load the TypeScript module.
import { register } from "tsx/esm/api";

register();
await import("./transport_thread.ts");
