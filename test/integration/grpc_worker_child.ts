/**
 * A worker process for grpc_server.test.ts: runWorkerServer on a free loopback port; prints where it
 * listens and when it has stopped, so the parent can signal it and watch the graceful shutdown.
 */
import { runWorkerServer } from "../../worker/serve_main.js";

await runWorkerServer({
  listen: "127.0.0.1:0",
  backend: process.env.CHILD_BACKEND ?? "cpu",
  dataThreads: 0,
  onListening: ({ address }) => process.stdout.write(`LISTENING ${address}\n`),
});
process.stdout.write("STOPPED\n");
