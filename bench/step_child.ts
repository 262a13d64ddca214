/**
 * One measurement of the step benchmark, in its own process (the tfjs backend is process-wide, and an
 * out-of-memory abort of the wasm heap must not take the whole benchmark down).
 *
 * Usage: node --expose-gc --import tsx bench/step_child.ts '<ChildJob | ChildProbe as JSON>'
 * Writes CHILD_TAG-prefixed JSON lines (ChildMessage) to stdout.
 */
import * as tf from "@tensorflow/tfjs-core";
import { nativeAddon } from "../native/index.js";
import { countBackendWork } from "../worker/backend_counters.js";
import { startBenchBackend } from "./step_backend.js";
import {
  CHILD_TAG,
  type ChildJob,
  type ChildMessage,
  type ChildProbe,
  type Measurement,
  modelById,
  type Workload,
} from "./step_spec.js";
import { type BenchModel, buildBenchModel, microBatches, STEPS } from "./step_workloads.js";

function emit(msg: ChildMessage): void {
  process.stdout.write(`${CHILD_TAG}${JSON.stringify(msg)}\n`);
}

function errorText(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}

function rssMiB(): number {
  return process.memoryUsage().rss / 2 ** 20;
}

function peakRssMiB(): number {
  // maxRSS is in kibibytes.
  return process.resourceUsage().maxRSS / 1024;
}

interface Prepared {
  readonly m: BenchModel;
  readonly setupSeconds: number;
  readonly setupRssMiB: number;
}

async function prepare(job: ChildJob): Promise<Prepared> {
  const t0 = performance.now();
  const spec = modelById(job.model);
  const m = await buildBenchModel(job.batch ? { ...spec, batch: job.batch } : spec);
  // The host copy of the weights is garbage now; drop it before measuring the resident set.
  (globalThis as { gc?: () => void }).gc?.();
  return { m, setupSeconds: (performance.now() - t0) / 1000, setupRssMiB: rssMiB() };
}

async function measure(job: ChildJob, p: Prepared, workload: Workload): Promise<Measurement> {
  const { m } = p;
  const { spec } = m;
  const timedMbs = microBatches(m, spec.batch, job.microBatch);
  const warmMbs = microBatches(
    m,
    Math.min(spec.batch, job.warmupMicroBatch * job.warmupMicroBatches),
    job.warmupMicroBatch,
  );
  const step = STEPS[workload];

  const w0 = performance.now();
  if (warmMbs.length > 0) await step(m, warmMbs);
  const warmupSeconds = (performance.now() - w0) / 1000;

  const numTensorsBefore = tf.memory().numTensors;
  const gemm = tf.getBackend() === "blas" ? nativeAddon() : undefined;
  const flops0 = gemm?.sgemmFlops() ?? 0;
  const stepSeconds: number[] = [];
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  for (;;) {
    const a = performance.now();
    await step(m, timedMbs);
    stepSeconds.push((performance.now() - a) / 1000);
    const elapsed = (performance.now() - start) / 1000;
    if (stepSeconds.length >= job.maxSteps) break;
    if (stepSeconds.length >= job.minSteps && elapsed >= job.minSeconds) break;
  }
  const timedSeconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const numTensorsAfter = tf.memory().numTensors;
  const sgemmFlopsPerStep = gemm ? (gemm.sgemmFlops() - flops0) / stepSeconds.length : undefined;
  const tfBytesInUse = tf.memory().numBytes;
  const { counts } = await countBackendWork(() => step(m, timedMbs));
  return {
    imagesPerSec: (stepSeconds.length * spec.batch) / timedSeconds,
    timedSteps: stepSeconds.length,
    timedSeconds,
    timedCpuSeconds: (cpu.user + cpu.system) / 1e6,
    stepSeconds,
    warmupSeconds,
    numTensorsBefore,
    numTensorsAfter,
    peakRssMiB: peakRssMiB(),
    setupRssMiB: p.setupRssMiB,
    setupSeconds: p.setupSeconds,
    tfBytesInUse,
    perStep: counts,
    sgemmFlopsPerStep,
  };
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2] ?? "{}") as ChildJob | ChildProbe;
  try {
    const info = await startBenchBackend(job.backend, "probe" in job || job.fusedKernels !== false);
    emit({
      kind: "backend",
      report: { backend: job.backend, available: true, tfBackend: info.tfBackend, device: info.device },
    });
  } catch (err) {
    emit({ kind: "backend", report: { backend: job.backend, available: false, reason: errorText(err) } });
    return;
  }
  if ("probe" in job) return;
  let current: Workload | undefined;
  try {
    const prepared = await prepare(job);
    for (const workload of job.workloads) {
      current = workload;
      emit({ kind: "start", workload });
      emit({ kind: "result", workload, measurement: await measure(job, prepared, workload) });
    }
  } catch (err) {
    emit({ kind: "error", workload: current, message: errorText(err) });
    process.exitCode = 1;
  }
}

process.on("uncaughtException", (err) => {
  emit({ kind: "error", message: errorText(err) });
  process.exit(1);
});

await main();
