import type { Command } from "commander";
import { InvalidArgumentError, Option } from "commander";
import { BACKEND_NAMES } from "../../worker/backend_names.js";
import { duration, positiveInt } from "./train.js";

export function registerWorker(program: Command): void {
  program
    .command("worker")
    .description("Serve one worker (one GPU or CPU) over gRPC for a coordinator")
    .requiredOption("--listen <host:port>", "address to serve on (port 0: any free port)")
    .addOption(
      new Option("--backend <name>", "compute backend (default: first available)").choices([
        ...BACKEND_NAMES,
      ]),
    )
    .option(
      "--gpu <n>",
      "use the Nth hardware GPU (WebGPU adapter, from 0) for the webgpu backend",
      (v: string) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected a GPU index 0, 1, …");
        return n;
      },
    )
    .option("--name <name>", "worker name in logs and its NATS lease id (default: hostname-pid)")
    .option(
      "--token-file <file>",
      "bearer token every RPC must carry (else $INFLORA_TOKEN; none: loopback only)",
    )
    .option("--tls-cert <file>", "PEM server certificate (with --tls-key)")
    .option("--tls-key <file>", "PEM server private key")
    .option("--tls-client-ca <file>", "PEM CA bundle: require client certificates (mutual TLS)")
    .option(
      "--max-calls <n>",
      "worker calls held at once; more are refused with RESOURCE_EXHAUSTED (default 8)",
      positiveInt,
    )
    .option("--data-threads <n>", "image decoding threads (default: all cores)", (v) => Number(v))
    .option("--metrics-port <port>", "serve Prometheus metrics on this port", positiveInt)
    .option(
      "--metrics-linger <duration>",
      "after SIGTERM/SIGINT, keep serving the final counters on /metrics this long (default 30s)",
      duration,
    )
    .option("--nats <url>", "register in the NATS worker bucket with a lease (discovery by the coordinator)")
    .option("--advertise <host:port>", "address the coordinator should dial (default: the listen address)")
    .option("--lease-ms <ms>", "NATS lease time (default 10000)", positiveInt)
    .addHelpText(
      "after",
      `
Examples:
  $ inflora worker --listen 127.0.0.1:7001
  $ inflora worker --listen 0.0.0.0:50052 --backend webgpu --gpu 1
  $ inflora worker --listen 0.0.0.0:50051 --token-file /var/run/inflora/token --metrics-port 9464 \\
      --nats nats://nats:4222 --advertise 10.0.3.7:50051`,
    )
    .action(async (o) => {
      const { runWorkerCommand } = await import("../worker_main.js");
      await runWorkerCommand(o);
    });
}
