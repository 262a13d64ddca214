import { type Command, InvalidArgumentError, Option } from "commander";
import { DurationError, parseDuration } from "../../common/duration.js";
import { log } from "../../common/log.js";
import { DEFAULT_LATE_FACTOR, type SpeculationOptions } from "../../coordinator/worker_pool.js";
import { BACKEND_NAMES } from "../../worker/backend_names.js";

function wholeNumber(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected a whole number ≥ 0");
  return n;
}

/** A `--metrics-linger` value: a Prometheus-style duration, as milliseconds. */
export function duration(value: string): number {
  try {
    return parseDuration(value);
  } catch (err) {
    if (err instanceof DurationError) throw new InvalidArgumentError(err.message);
    throw err;
  }
}

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("expected a positive integer");
  return n;
}

/** A `--speculation` value: on, off, or the late factor k (on). */
export function speculation(value: string): SpeculationOptions | false {
  if (value === "off") return false;
  if (value === "on") return { lateFactor: DEFAULT_LATE_FACTOR };
  const k = Number(value);
  if (value.trim() === "" || !Number.isFinite(k) || k < 1)
    throw new InvalidArgumentError("expected on, off, or a late factor ≥ 1");
  return { lateFactor: k };
}

interface TrainCliOptions {
  config: string;
  out: string;
  workers: number;
  inProcess: boolean;
  worker?: string[];
  nats?: string;
  metricsPort?: number;
  metricsLinger?: number;
  pushgateway?: string;
  tokenFile?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
  workerTimeout?: number;
  speculation?: SpeculationOptions | false;
  transportThreads?: number;
  backend?: string;
  resume: boolean;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function withRunOptions(cmd: Command): Command {
  return cmd
    .requiredOption("--config <file>", "run config (JSON; the reference's keys plus ours)")
    .requiredOption("--out <dir>", "run directory (checkpoints, predictions, metrics.json, events.jsonl)")
    .option("--worker <host:port>", "use a running worker (repeat for several)", collect)
    .option("--nats <url>", "discover workers through NATS leases and publish run events to JetStream")
    .option("--metrics-port <port>", "serve the coordinator's Prometheus metrics on this port", positiveInt)
    .option(
      "--metrics-linger <duration>",
      "after the run, keep serving /metrics this long so the final values are scraped (default 30s)",
      duration,
    )
    .option(
      "--pushgateway <url>",
      "push each run's final metrics to this Prometheus Pushgateway (job inflora, grouped by run)",
    )
    .option("--token-file <file>", "bearer token for the workers (else $INFLORA_TOKEN)")
    .option("--tls-ca <file>", "PEM CA that signed the workers' certificates (enables TLS)")
    .option("--tls-cert <file>", "PEM client certificate for mutual TLS (with --tls-key)")
    .option("--tls-key <file>", "PEM client key for mutual TLS")
    .option("--tls-server-name <name>", "name to verify the workers' certificates against")
    .option(
      "--worker-timeout <seconds>",
      "deadline of one worker call before its shards move elsewhere",
      positiveInt,
    )
    .option(
      "--speculation <on|off|k>",
      `re-issue a block running k × the median time per shard to an idle worker; the first answer wins and the result never changes (default on, k = ${DEFAULT_LATE_FACTOR})`,
      speculation,
    )
    .option(
      "--transport-threads <n>",
      "threads that run the gRPC clients (0: the main thread; default: cores − 2, at most 4, or $INFLORA_TRANSPORT_THREADS)",
      wholeNumber,
    )
    .addOption(new Option("--backend <name>", "compute backend of local workers").choices([...BACKEND_NAMES]))
    .option("--resume", "continue after the last finished task (or mid-task) in --out", false);
}

async function runTrain(o: TrainCliOptions): Promise<void> {
  const { train } = await import("../train.js");
  const tls =
    o.tlsCa || o.tlsCert
      ? { caFile: o.tlsCa, certFile: o.tlsCert, keyFile: o.tlsKey, serverName: o.tlsServerName }
      : undefined;
  const results = await train({
    config: o.config,
    out: o.out,
    workers: o.workers,
    inProcess: o.inProcess,
    workerAddresses: o.worker,
    nats: o.nats,
    metricsPort: o.metricsPort,
    metricsLingerMs: o.metricsLinger,
    pushgateway: o.pushgateway,
    security: { tokenFile: o.tokenFile, tls },
    callTimeoutMs: o.workerTimeout !== undefined ? o.workerTimeout * 1000 : undefined,
    speculation: o.speculation,
    transportThreads: o.transportThreads,
    backend: o.backend,
    resume: o.resume,
  });
  for (const [seed, m] of results) {
    log.info(
      { seed, final: m.final_accuracy, average: m.average_accuracy, forgetting: m.forgetting },
      "run finished",
    );
    process.stdout.write(
      `seed ${seed}: final ${m.final_accuracy.toFixed(2)}  average ${m.average_accuracy.toFixed(2)}  ` +
        `forgetting ${m.forgetting === null ? "-" : m.forgetting.toFixed(2)}\n`,
    );
  }
}

export function registerTrain(program: Command): void {
  withRunOptions(
    program
      .command("train")
      .description("Run InfLoRA over every task of a config and write the run directory")
      .option("--workers <n>", "local worker processes to start on loopback", positiveInt, 1)
      .option("--in-process", "run the local workers inside this process (no gRPC)", false),
  )
    .addHelpText(
      "after",
      `
Examples:
  $ inflora train --config configs/fixture_tiny.json --out runs/fixture
  $ inflora train --config configs/cifar100_inflora.json --out runs/c100 --workers 2 --backend wasm
  $ inflora train --config configs/cifar100_inflora.json --out runs/c100 --resume
  $ inflora train --config run.json --out /runs/r1 --worker 10.0.0.5:50051 --worker 10.0.0.6:50051`,
    )
    .action((o: TrainCliOptions) => runTrain(o));

  withRunOptions(
    program
      .command("coordinator")
      .description("Coordinate running workers (--worker list or --nats discovery); starts none itself"),
  )
    .addHelpText(
      "after",
      `
Examples:
  $ inflora coordinator --config /etc/inflora/config.json --out /runs/r1 --nats nats://nats:4222 --resume
  $ inflora coordinator --config run.json --out runs/r1 --worker w0:50051 --worker w1:50051`,
    )
    .action((o: TrainCliOptions) => {
      if (!o.worker?.length && !o.nats) {
        throw new InvalidArgumentError(
          "inflora coordinator needs --worker host:port (repeatable) or --nats URL",
        );
      }
      return runTrain({ ...o, workers: 0, inProcess: false });
    });
}
