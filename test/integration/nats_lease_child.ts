/**
 * Helper of nats_membership.test.ts, run as its own process (`node --import tsx`) so the test can kill it
 * with SIGKILL like a crashed worker. Argument: JSON LeaseOptions. Prints "ready" once the lease is held.
 */
import { holdLease } from "../../worker/nats_lease.js";

await holdLease(JSON.parse(process.argv[2]));
process.stdout.write("ready\n");
// The lease timer is unref'd; a real worker is kept alive by its gRPC server, this one by a timer.
setInterval(() => {}, 60_000);
