/**
 * `npm run bench:stragglers`: the training step with one worker 5× slower than the other two, with the
 * pool's speculative re-execution off and on (`--speculation`, docs/design.md "Stragglers"), beside the
 * same three workers all fast. Two setups, each side by side in one run:
 * - the pool and gRPC with simulated compute: bench/fake_workers.ts answering after a fixed time per shard
 *   (one call at a time, like a real worker), so the step time is the policy's and not the machine's load;
 * - real `inflora worker` processes training the reference fixture (test/fixtures/reference), the
 *   straggler being test/helpers/misbehaving_worker.ts with MISBEHAVE=slow.
 * Writes bench/results/stragglers.json and .md. `--quick`: fewer steps, and the fixture run skipped.
 */
import { fork } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { train } from "../cli/train.js";
import type { MicroShard, TrainStepResult } from "../common/protocol.js";
import { PROTOCOL_VERSION } from "../common/protocol.js";
import { reduceStep } from "../coordinator/reduce.js";
import { GrpcWorkerClient } from "../coordinator/transport/grpc_client.js";
import { type PoolEvents, type SpeculationOptions, WorkerPool } from "../coordinator/worker_pool.js";
import { events, forkWorker, shortConfig, startWorker, stopWorkers } from "../test/helpers/distributed.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const tsx = createRequire(import.meta.url).resolve("tsx");
const quick = process.argv.includes("--quick");
const SLOW_FACTOR = 5;
/** Simulated compute of a fast worker per micro-shard (a ViT-B/16 shard of 8 images on a CPU core). */
const FAST_MS = 60;
const STEPS = quick ? 6 : 20;
const WARMUP = 2;
const D = 48;
const depth = 3;
const rank = 4;
const classes = 4;

type Mode = "all fast" | "one 5× slower, speculation off" | "one 5× slower, speculation on";
const MODES: Mode[] = ["all fast", "one 5× slower, speculation off", "one 5× slower, speculation on"];

interface Row {
  setup: string;
  micro_shards: number;
  mode: Mode;
  steps: number;
  step_ms_median: number;
  step_ms_mean: number;
  step_ms_p90: number;
  reissued_blocks: number;
  copy_won: number;
  original_won: number;
}

const sortedOf = (xs: number[]) => [...xs].sort((a, b) => a - b);
const median = (xs: number[]) => sortedOf(xs)[Math.floor(xs.length / 2)];
const p90 = (xs: number[]) => sortedOf(xs)[Math.min(xs.length - 1, Math.floor(xs.length * 0.9))];
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

function speculationOf(mode: Mode): SpeculationOptions | false | undefined {
  return mode.endsWith("speculation off") ? false : undefined;
}

/** Counts re-issues and winners, as the trainer's events and metrics do. */
function counter() {
  const c = { reissued_blocks: 0, copy_won: 0, original_won: 0 };
  const events: Partial<PoolEvents> = {
    reissued: () => c.reissued_blocks++,
    reissueSettled: (_copy, _late, winner) => (winner === "copy" ? c.copy_won++ : c.original_won++),
  };
  return { c, events };
}

/** Fast fakes 0–2 and a slow one, 3, in one process; addresses over IPC. */
function startFakes(): Promise<{ addresses: string[]; stop(): void }> {
  const child = fork(path.join(here, "fake_workers.ts"), ["4"], {
    execArgv: ["--import", tsx],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    env: {
      ...process.env,
      INFLORA_LOG_LEVEL: "warn",
      FAKE_D: String(D),
      FAKE_DEPTH: String(depth),
      FAKE_RANK: String(rank),
      FAKE_CLASSES: String(classes),
      FAKE_MS_PER_SHARD: [FAST_MS, FAST_MS, FAST_MS, SLOW_FACTOR * FAST_MS].join(","),
    },
  });
  return new Promise((resolve, reject) => {
    child.once("message", (m: { addresses?: string[] }) => {
      if (m.addresses) resolve({ addresses: m.addresses, stop: () => child.kill("SIGKILL") });
    });
    child.once("exit", (code) => reject(new Error(`fake workers exited (${code})`)));
  });
}

async function simulated(addresses: string[], microShards: number, mode: Mode): Promise<Row> {
  // The straggler first: it is given the largest block.
  const chosen = mode === "all fast" ? addresses.slice(0, 3) : [addresses[3], addresses[0], addresses[1]];
  const clients = chosen.map(
    (a, k) => new GrpcWorkerClient({ address: a, name: `fake-${k}`, releaseOnClose: false }),
  );
  const { c, events } = counter();
  const pool = new WorkerPool(clients, { events, speculation: speculationOf(mode) });
  await pool.start({
    runId: "bench",
    protocolVersion: PROTOCOL_VERSION,
    weightsPath: "/none",
    weightsFingerprint: "0".repeat(64),
    model: { imgSize: 32, patchSize: 4, inChans: 3, embedDim: D, depth, numHeads: 3, mlpHidden: 4 * D },
    data: { dataset: "cifar100", dataPath: "/none", imageSize: 32 },
  });
  await pool.publishState({ version: 1, task: 0, finished: [], heads: [] });
  const shards: MicroShard[] = Array.from({ length: microShards }, (_, i) => ({
    index: i,
    split: "train",
    samples: Int32Array.from({ length: 8 }, (_, j) => i * 8 + j),
    targets: Int32Array.from({ length: 8 }, (_, j) => j % classes),
  }));
  const times: number[] = [];
  for (let step = 0; step < STEPS + WARMUP; step++) {
    const sent = {
      version: step + 1,
      Ak: Array.from({ length: depth }, () => new Float32Array(D * rank)),
      Av: Array.from({ length: depth }, () => new Float32Array(D * rank)),
      head: { classes, weight: new Float32Array(classes * D), bias: new Float32Array(classes) },
    };
    const t0 = performance.now();
    const results: TrainStepResult[] = await pool.map(shards, (w, s, control) =>
      w.trainStep({ stateVersion: 1, params: sent, shards: s }, control),
    );
    reduceStep(results);
    if (step >= WARMUP) times.push(performance.now() - t0);
  }
  await pool.close();
  return row("pool + gRPC, simulated compute", microShards, mode, times, c);
}

function row(
  setup: string,
  microShards: number,
  mode: Mode,
  times: number[],
  c: ReturnType<typeof counter>["c"],
) {
  return {
    setup,
    micro_shards: microShards,
    mode,
    steps: times.length,
    step_ms_median: median(times),
    step_ms_mean: mean(times),
    step_ms_p90: p90(times),
    ...c,
  };
}

/** The reference fixture (one epoch per task) on three real workers; step times from one step to the next. */
async function fixture(mode: Mode, tmp: string): Promise<Row> {
  const slowScript = path.resolve(here, "../test/helpers/misbehaving_worker.ts");
  const workers = await Promise.all([
    mode === "all fast"
      ? startWorker()
      : forkWorker(slowScript, [], { MISBEHAVE: "slow", SLOW_FACTOR: String(SLOW_FACTOR) }),
    startWorker(),
    startWorker(),
  ]);
  const { c } = counter();
  const out = path.join(tmp, mode.replace(/\W+/g, "-"));
  const times: number[] = [];
  let last: { task: number; at: number } | undefined;
  try {
    await train({
      config: shortConfig(tmp, { init_epoch: 1, epochs: 1 }),
      out,
      workerAddresses: workers.map((w) => w.address),
      transportThreads: 0,
      speculation: speculationOf(mode),
      resume: false,
      onStep: ({ task }) => {
        const at = performance.now();
        // The first step of a task also carries the covariance pass and the design of B.
        if (last?.task === task) times.push(at - last.at);
        last = { task, at };
      },
    });
  } finally {
    stopWorkers(workers);
  }
  for (const e of events(out)) {
    if (e.event === "shards_reissued") c.reissued_blocks++;
    if (e.event === "reissue_settled" && e.winner === "copy") c.copy_won++;
    if (e.event === "reissue_settled" && e.winner === "original") c.original_won++;
  }
  return row("3 real workers, reference fixture (tiny ViT)", 4, mode, times, c);
}

const rows: Row[] = [];
const fakes = await startFakes();
try {
  for (const microShards of [4, 12])
    for (const mode of MODES) {
      const r = await simulated(fakes.addresses, microShards, mode);
      console.log(JSON.stringify(r));
      rows.push(r);
    }
} finally {
  fakes.stop();
}
if (!quick) {
  const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-bench-stragglers-"));
  try {
    for (const mode of MODES) {
      const r = await fixture(mode, tmp);
      console.log(JSON.stringify(r));
      rows.push(r);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

const load = os
  .loadavg()
  .map((x) => x.toFixed(1))
  .join(" ");
const machine = `${os.cpus()[0]?.model ?? "cpu"} × ${os.cpus().length}, Node ${process.version}; load average ${load}`;
mkdirSync(path.join(here, "results"), { recursive: true });
if (!quick) {
  const date = new Date().toISOString();
  writeFileSync(
    path.join(here, "results", "stragglers.json"),
    `${JSON.stringify({ date, machine, fast_ms_per_shard: FAST_MS, slow_factor: SLOW_FACTOR, rows }, null, 1)}\n`,
  );
  const fmt = (x: number) => x.toFixed(0);
  const md = [
    "# Stragglers: one worker 5× slower, speculation off and on",
    "",
    `${date}, ${machine}.`,
    "",
    `Three workers; in the "5× slower" rows the first of them (the one given the largest block) takes ${SLOW_FACTOR}× as long. ` +
      `Simulated compute: bench/fake_workers.ts sleeps ${FAST_MS} ms per micro-shard (${SLOW_FACTOR * FAST_MS} ms on the straggler), ` +
      "one call at a time, over real gRPC with the pool's real policy. Fixture: real `inflora worker` processes " +
      "training the reference fixture one epoch per task, the straggler being test/helpers/misbehaving_worker.ts " +
      "(MISBEHAVE=slow); step times between consecutive steps of a task, the tiny model's compute sharing 2 cores with " +
      "the coordinator (and, this session, other jobs: see the load average).",
    "",
    "| setup | micro-shards | mode | steps | step ms (median) | mean | p90 | blocks re-issued | copy first | original first |",
    "|---|---|---|---|---|---|---|---|---|---|",
    ...rows.map(
      (r) =>
        `| ${r.setup} | ${r.micro_shards} | ${r.mode} | ${r.steps} | ${fmt(r.step_ms_median)} | ${fmt(r.step_ms_mean)} | ${fmt(r.step_ms_p90)} | ${r.reissued_blocks} | ${r.copy_won} | ${r.original_won} |`,
    ),
    "",
  ].join("\n");
  writeFileSync(path.join(here, "results", "stragglers.md"), md);
  console.log(md);
}
