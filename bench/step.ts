/**
 * Step benchmark: images/s of the training step, the forward-only pass and the covariance pass, for the
 * fixture-size ViT, ViT-Ti/16 and ViT-B/16 on every backend that starts here, with micro-batch sizes
 * swept, tensor counts and peak RSS; compared with PyTorch on the training step.
 *
 * Usage: npx tsx bench/step.ts [--quick] [--serial] [--out PREFIX] [--models id,...] [--backends name,...]
 *                              [--unfused] [--batch N]
 *   --quick     fixture model only, one timed step per configuration (a smoke run, well under a minute)
 *   --serial    one measuring process at a time (default: the cpu backend's lane runs beside the others)
 *   --out       result files PREFIX.json and PREFIX.md (default bench/results/step, or step-quick)
 *   --unfused   without our fused WGSL kernels (webgpu runs tfjs's op chains): the "before" of the counts
 *   --batch N   global batch N instead of each model's own (a ViT on a slow device); no PyTorch ratio then
 * Exit status 1 when a configuration failed other than by running out of memory, or leaked tensors.
 *
 * Every measurement runs in a child process (bench/step_child.ts): the backend is process-wide, and the
 * wasm backend aborts the process when its 4 GiB heap runs out.
 */
import { spawn } from "node:child_process";
import { mkdir, rename, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  bestOf,
  cpuShare,
  isFlat,
  type MachineFacts,
  type ModelResult,
  RESULT_FORMAT,
  type RunRecord,
  type RunStatus,
  renderMarkdown,
  type SkipRecord,
  type StepBenchResult,
} from "./step_report.js";
import {
  type BackendReport,
  BENCH_BACKENDS,
  CHILD_TAG,
  type ChildJob,
  type ChildMessage,
  type ChildProbe,
  type Measurement,
  MODELS,
  type ModelSpec,
  PYTORCH_LABEL,
  WORKLOAD_LABELS,
  WORKLOADS,
  type Workload,
} from "./step_spec.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "..");
const CHILD = path.join(HERE, "step_child.ts");
const T0 = performance.now();

function elapsed(): string {
  return `${((performance.now() - T0) / 1000).toFixed(1)} s`;
}

function log(text: string): void {
  process.stderr.write(`[${elapsed()}] ${text}\n`);
}

// ---------------------------------------------------------------------------------------------------
// Child processes

interface ChildOutcome {
  readonly backend?: BackendReport;
  readonly results: ReadonlyMap<Workload, Measurement>;
  /** The workload that was running when the child stopped without finishing it. */
  readonly unfinished?: Workload;
  readonly error?: string;
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly timedOut: boolean;
  readonly stderrTail: string;
}

interface ChildLogEntry {
  readonly label: string;
  readonly start: number;
  end?: number;
}

const childLog: ChildLogEntry[] = [];

/** Labels of the other children whose lifetime overlapped `entry`. */
function overlapping(entry: ChildLogEntry): string[] {
  const end = entry.end ?? performance.now();
  return childLog
    .filter((o) => o !== entry && o.start < end && (o.end === undefined || o.end > entry.start))
    .map((o) => o.label);
}

function runChild(
  job: ChildJob | ChildProbe,
  label: string,
  timeoutMs: number,
  onResult?: (w: Workload, m: Measurement) => void,
): Promise<ChildOutcome & { readonly entry: ChildLogEntry }> {
  const entry: ChildLogEntry = { label, start: performance.now() };
  childLog.push(entry);
  const child = spawn(process.execPath, ["--expose-gc", "--import", "tsx", CHILD, JSON.stringify(job)], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const results = new Map<Workload, Measurement>();
  let backend: BackendReport | undefined;
  let started: Workload | undefined;
  let error: string | undefined;
  let stderrTail = "";
  let timedOut = false;
  // The limit is on silence: every message (a workload started or finished) restarts it.
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
  };
  arm();
  const lines = createInterface({ input: child.stdout });
  lines.on("line", (line) => {
    if (!line.startsWith(CHILD_TAG)) return;
    arm();
    const msg = JSON.parse(line.slice(CHILD_TAG.length)) as ChildMessage;
    if (msg.kind === "backend") backend = msg.report;
    else if (msg.kind === "start") started = msg.workload;
    else if (msg.kind === "result") {
      results.set(msg.workload, msg.measurement);
      onResult?.(msg.workload, msg.measurement);
    } else if (msg.kind === "error") {
      error = msg.message;
      if (msg.workload) started = msg.workload;
    }
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderrTail = (stderrTail + chunk.toString()).slice(-4000);
  });
  return new Promise((resolve) => {
    child.on("close", (exitCode, signal) => {
      clearTimeout(timer);
      entry.end = performance.now();
      const unfinished = started !== undefined && !results.has(started) ? started : undefined;
      resolve({ entry, backend, results, unfinished, error, exitCode, signal, timedOut, stderrTail });
    });
  });
}

const OOM_PATTERN = /Aborted\(|out of memory|Cannot enlarge memory|Array buffer allocation failed|\bOOM\b/i;

function classifyFailure(o: ChildOutcome): { status: RunStatus; detail: string } {
  if (o.timedOut)
    return { status: "timeout", detail: "killed: no progress within the per-workload time limit" };
  const text = o.error ?? o.stderrTail.trim().split("\n").slice(-3).join(" ");
  const exit = o.signal ? `signal ${o.signal}` : `exit code ${o.exitCode}`;
  if (OOM_PATTERN.test(text) || OOM_PATTERN.test(o.stderrTail))
    return { status: "oom", detail: text || exit };
  if (o.error) return { status: "error", detail: o.error };
  return { status: "crashed", detail: `${exit}${text ? `: ${text}` : ""}` };
}

// ---------------------------------------------------------------------------------------------------
// Plan

interface Options {
  readonly quick: boolean;
  readonly serial: boolean;
  readonly out: string;
  readonly models: readonly ModelSpec[];
  readonly backends: readonly string[];
  readonly fusedKernels: boolean;
}

interface UnitPlan {
  readonly microBatches: readonly number[];
  readonly job: (microBatch: number, workloads: readonly Workload[]) => ChildJob;
  /** Longest a child may run without finishing a workload (set-up included) before it is killed. */
  readonly timeoutMs: number;
}

const CPU_VIT_B_SKIP = "skipped: >10 min per step on the cpu backend";

function planUnit(backend: string, spec: ModelSpec, opts: Options): UnitPlan | SkipRecord {
  const cpu = backend === "cpu";
  // A GPU takes a micro-shard in one pass (policy.ts); warmed up at the timed size, so that every shader
  // the step needs is compiled before timing.
  const gpu = backend === "webgpu";
  if (cpu && spec.id === "vit_b16") return { backend, reason: CPU_VIT_B_SKIP };
  // Timed steps: enough for a stable number where steps are short, one where a step takes many seconds.
  const timing = opts.quick
    ? { minSteps: 1, minSeconds: 0, maxSteps: 1 }
    : cpu || gpu
      ? { minSteps: 1, minSeconds: 0, maxSteps: 1 }
      : spec.id === "fixture"
        ? { minSteps: 2, minSeconds: 3, maxSteps: 100 }
        : spec.id === "vit_ti16"
          ? { minSteps: 1, minSeconds: 8, maxSteps: 10 }
          : { minSteps: 1, minSeconds: 0, maxSteps: 1 };
  // The cpu backend has no heap limit and a sweep would cost minutes per size: the batch in one pass,
  // warmed up by one 2-image micro-batch. Elsewhere one untimed micro-batch (see ModelSpec) packs the
  // weights for XNNPACK and warms the JIT before timing.
  const microBatches = cpu || gpu ? [spec.batch] : spec.microBatches;
  return {
    microBatches,
    timeoutMs: (opts.quick ? 3 : 30) * 60_000,
    job: (microBatch, workloads) => ({
      backend,
      model: spec.id,
      workloads,
      microBatch,
      warmupMicroBatches: 1,
      warmupMicroBatch: gpu ? microBatch : Math.min(cpu ? 2 : spec.warmupMicroBatch, microBatch),
      fusedKernels: opts.fusedKernels,
      batch: spec.batch,
      ...timing,
    }),
  };
}

function describe(m: Measurement): string {
  return (
    `${m.imagesPerSec.toPrecision(3)} images/s (${m.timedSteps} timed step${m.timedSteps === 1 ? "" : "s"}, ` +
    `${(m.timedSeconds / m.timedSteps).toFixed(2)} s/step, tensors ${m.numTensorsBefore}→${m.numTensorsAfter}, ` +
    `peak RSS ${m.peakRssMiB.toFixed(0)} MiB, CPU/wall ${cpuShare(m).toFixed(2)}, load ${os.loadavg()[0].toFixed(1)}; ` +
    `per step ${m.perStep.kernels} kernels, ${m.perStep.dispatches} dispatches, ${m.perStep.readbacks} readbacks)`
  );
}

/** Runs one backend × model over its micro-batch sizes, smallest first. */
async function runUnit(backend: string, spec: ModelSpec, plan: UnitPlan): Promise<RunRecord[]> {
  const records: RunRecord[] = [];
  const oomAt = new Map<Workload, number>();
  for (const mb of plan.microBatches) {
    let pending = WORKLOADS.filter((w) => {
      const at = oomAt.get(w);
      if (at === undefined) return true;
      records.push({
        backend,
        workload: w,
        microBatch: mb,
        status: "not-run",
        detail: `OOM already at micro-batch ${at}`,
      });
      return false;
    });
    while (pending.length > 0) {
      const label = `${backend} ${spec.id} micro-batch ${mb}`;
      log(`${label}: ${pending.map((w) => WORKLOAD_LABELS[w]).join(", ")}`);
      const outcome = await runChild(plan.job(mb, pending), label, plan.timeoutMs, (w, m) =>
        log(`${label} ${WORKLOAD_LABELS[w]}: ${describe(m)}`),
      );
      const concurrentWith = overlapping(outcome.entry);
      const loadAverage1m = os.loadavg()[0];
      for (const w of pending) {
        const m = outcome.results.get(w);
        if (m) {
          records.push({
            backend,
            workload: w,
            microBatch: mb,
            status: "ok",
            measurement: m,
            concurrentWith,
            loadAverage1m,
          });
        }
      }
      const done = pending.filter((w) => outcome.results.has(w));
      if (done.length === pending.length) break;
      // The child stopped early: the workload it was in failed; the ones after it get a fresh process.
      const failed = outcome.unfinished ?? pending.find((w) => !outcome.results.has(w))!;
      const { status, detail } = classifyFailure(outcome);
      log(`${label} ${WORKLOAD_LABELS[failed]}: ${status.toUpperCase()} (${detail.slice(0, 200)})`);
      records.push({
        backend,
        workload: failed,
        microBatch: mb,
        status,
        detail,
        concurrentWith,
        loadAverage1m,
      });
      if (status === "oom") oomAt.set(failed, mb);
      const failedIndex = pending.indexOf(failed);
      pending = pending.slice(failedIndex + 1);
    }
  }
  return records;
}

// ---------------------------------------------------------------------------------------------------
// Main

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      serial: { type: "boolean", default: false },
      out: { type: "string" },
      models: { type: "string" },
      backends: { type: "string" },
      unfused: { type: "boolean", default: false },
      batch: { type: "string" },
    },
    strict: true,
  });
  const quick = values.quick ?? false;
  const list = (s: string | undefined) => (s ? s.split(",").map((x) => x.trim()) : undefined);
  const modelIds = list(values.models) ?? (quick ? ["fixture"] : MODELS.map((m) => m.id));
  const batch = values.batch === undefined ? undefined : Number(values.batch);
  if (batch !== undefined && !(Number.isInteger(batch) && batch > 0)) {
    throw new Error(`--batch: expected a positive integer, got "${values.batch}"`);
  }
  const models = modelIds.map((id) => {
    const m = MODELS.find((x) => x.id === id);
    if (!m)
      throw new Error(`--models: unknown model "${id}"; expected ${MODELS.map((x) => x.id).join(", ")}`);
    if (batch === undefined) return m;
    const microBatches = m.microBatches.filter((n) => n < batch);
    // PyTorch was measured at the model's own batch only.
    return {
      ...m,
      title: `${m.title.replace(/, batch \d+$/, "")}, batch ${batch} (--batch)`,
      batch,
      microBatches: [...microBatches, batch],
      pytorchTrainImagesPerSec: Number.NaN,
    };
  });
  const backends = list(values.backends) ?? [...BENCH_BACKENDS];
  for (const b of backends) {
    if (!BENCH_BACKENDS.includes(b)) {
      throw new Error(`--backends: unknown backend "${b}"; expected ${BENCH_BACKENDS.join(", ")}`);
    }
  }
  const out = path.resolve(values.out ?? path.join(HERE, "results", quick ? "step-quick" : "step"));
  return { quick, serial: values.serial ?? false, out, models, backends, fusedKernels: !values.unfused };
}

function machineFacts(loadAverageAtStart: number[]): MachineFacts {
  const require = createRequire(import.meta.url);
  const tfjs: Record<string, string> = {};
  for (const pkg of [
    "@tensorflow/tfjs-core",
    "@tensorflow/tfjs",
    "@tensorflow/tfjs-backend-wasm",
    "@tensorflow/tfjs-backend-cpu",
  ]) {
    try {
      tfjs[pkg] = (require(`${pkg}/package.json`) as { version: string }).version;
    } catch {
      tfjs[pkg] = "not installed";
    }
  }
  return {
    cpuModel: os.cpus()[0]?.model?.trim() ?? "unknown",
    logicalCpus: os.cpus().length,
    availableParallelism: os.availableParallelism(),
    totalMemoryGiB: os.totalmem() / 2 ** 30,
    platform: `${os.type()} ${os.release()}`,
    arch: os.arch(),
    node: process.version,
    tfjs,
    loadAverageAtStart,
    loadAverageAtEnd: os.loadavg(),
  };
}

function methodNotes(opts: Options): string[] {
  return [
    "Each backend × model × micro-batch size runs in its own child process (bench/step_child.ts); in it the " +
      "workloads run in the order forward → covariance → training step. A child that dies (the wasm backend " +
      "aborts when its 4 GiB heap runs out) is reported as OOM for the workload it was in, and a fresh child " +
      "continues with the rest; a workload that ran out of memory is not tried at larger micro-batch sizes.",
    "A step is one global batch (fixture 64, ViT-Ti/16 16, ViT-B/16 8 images) cut into micro-batches; " +
      "images/s = timed steps × batch / timed wall time; images/CPU-s = the same over the child's CPU time. " +
      "The summary table reports per backend and workload the micro-batch size with the most images/CPU-s " +
      "(on a quiet machine, the most images/s).",
    "Training step: lossAndGrads (worker/model/objective.ts) per micro-batch — forward and backward with " +
      "A_k, A_v of every block and the head trainable, including the upload of the patch rows and the " +
      "read-back of loss and gradients — with the micro-batches' gradients summed in float64 as the " +
      "coordinator does. Forward only: features + head logits read back, as WorkerEngine.evaluate. " +
      "Covariance pass: features with the per-block hᵀh of the attention input, read back and summed in " +
      "float64, as WorkerEngine.covariance. Image loading, augmentation and patch cutting are not timed.",
    "Model: random weights N(0, 0.02²), LayerNorm weights 1 and biases 0; one finished adapter folded into " +
      "k/v (as at task 1: B entries N(0, 1/(3D)), A N(0, 0.02²)); live B likewise, A_k/A_v N(0, 0.02²); " +
      "head N(0, 1/D), 10 classes.",
    opts.quick
      ? "Timing (--quick): one untimed warm-up micro-batch, then one timed step per configuration."
      : "Timing: one untimed warm-up micro-batch before each workload (it packs the weights for XNNPACK and " +
        "warms the JIT; fixture: of the timed size, ViT-Ti/16: ≤ 4 images, ViT-B/16: 1 image, cpu backend: " +
        "2 images), then timed steps: fixture ≥ 2 steps and ≥ 3 s, ViT-Ti/16 ≥ 1 step and ≥ 8 s, " +
        "ViT-B/16 one step, cpu backend one step.",
    "numTensors: tf.memory().numTensors before and after the timed steps. Peak RSS: the child's maxRSS at " +
      "the end of the workload; it includes model setup (the host copy of the weights and the backend's " +
      "copy) and the workloads run before it in the same process (the wasm heap never shrinks).",
    "CPU/wall: the child's CPU time (all threads) over wall time during the timed steps. Both backends " +
      "compute on one thread in Node, so about 1.0 means the process had a core to itself; well below 1.0, " +
      "other processes on the machine took its core part of the time and its images/s are low by about " +
      "that factor. 'load 1 min' is the machine's load average when the child finished.",
    "cpu backend: the global batch in one pass (no heap limit; a micro-batch sweep would cost minutes per " +
      `size); ViT-B/16 ${CPU_VIT_B_SKIP.replace("skipped: ", "skipped (")}).`,
    opts.serial
      ? "Lanes: one measuring process at a time (--serial)."
      : "Lanes: the cpu backend's measurements run beside the others (each backend is single-threaded in " +
        "Node, so each lane has a core of its own, but they share caches and memory bandwidth) to keep the " +
        "full run within 15 minutes; step.json lists per run what overlapped (concurrentWith). --serial " +
        "runs one process at a time.",
    `PyTorch: ${PYTORCH_LABEL}; training step at the same global batch; ratio = ours / PyTorch.`,
    "Per step (counted over one extra, untimed step; worker/backend_counters.ts): kernels = kernel calls " +
      "through the tfjs engine; dispatches = GPU programs run (webgpu, including those inside composite " +
      "kernels; 0 on CPU backends); readbacks = tensor reads through the engine (data(), dataSync()).",
    "webgpu: the global batch in one pass, warmed up by one step of the same size (shader compilation), " +
      "one timed step. On a software adapter (lavapipe) its images/s are a correctness and overhead figure, " +
      "not a GPU speed.",
    opts.fusedKernels
      ? "Fused WGSL kernels (worker/webgpu/kernels/) registered on webgpu."
      : "--unfused: our fused WGSL kernels unregistered; webgpu runs tfjs's op chains.",
  ];
}

async function writeAtomic(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

/** The blas step's per-op profile at 1 and 2 BLAS threads (bench/step_profile.ts), next to step.md. */
async function profileBlas(spec: ModelSpec): Promise<void> {
  const out = path.join(HERE, "results", "step_profile");
  const args = ["--import", "tsx", path.join(HERE, "step_profile.ts"), "--backend", "blas"];
  args.push("--model", spec.id, "--micro-batch", String(spec.batch), "--threads", "1,2", "--out", out);
  log(`per-op profile: blas, ${spec.id}, 1 and 2 threads`);
  const code = await new Promise<number | null>((resolve) => {
    spawn(process.execPath, args, { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] }).on("close", resolve);
  });
  log(code === 0 ? `wrote ${path.relative(process.cwd(), out)}.md` : `per-op profile failed (exit ${code})`);
}

async function main(): Promise<number> {
  const opts = parseOptions();
  const loadAverageAtStart = os.loadavg();
  log(
    `step benchmark: ${opts.quick ? "quick, " : ""}models ${opts.models.map((m) => m.id).join(", ")}; ` +
      `backends ${opts.backends.join(", ")}`,
  );

  const probes = await Promise.all(
    opts.backends.map(async (backend): Promise<BackendReport> => {
      const o = await runChild({ backend, probe: true }, `probe ${backend}`, 120_000);
      return (
        o.backend ?? {
          backend,
          available: false,
          reason: `probe process failed (${classifyFailure(o).detail})`,
        }
      );
    }),
  );
  childLog.length = 0;
  for (const p of probes)
    log(p.available ? `${p.backend}: available (${p.device})` : `${p.backend}: ${p.reason}`);
  const available = probes.filter((p) => p.available).map((p) => p.backend);
  if (available.length === 0) throw new Error("no backend could be started; see the reasons above");

  const runs = new Map<string, RunRecord[]>(opts.models.map((m) => [m.id, []]));
  const skipped = new Map<string, SkipRecord[]>(opts.models.map((m) => [m.id, []]));
  const units: { backend: string; spec: ModelSpec; plan: UnitPlan }[] = [];
  for (const backend of available) {
    for (const spec of opts.models) {
      const plan = planUnit(backend, spec, opts);
      if ("reason" in plan) {
        skipped.get(spec.id)!.push(plan);
        log(`${backend} ${spec.id}: ${plan.reason}`);
      } else units.push({ backend, spec, plan });
    }
  }
  const lanes = opts.serial
    ? [[...units.filter((u) => u.backend !== "cpu"), ...units.filter((u) => u.backend === "cpu")]]
    : [units.filter((u) => u.backend !== "cpu"), units.filter((u) => u.backend === "cpu")];
  await Promise.all(
    lanes.map(async (lane) => {
      for (const u of lane) runs.get(u.spec.id)!.push(...(await runUnit(u.backend, u.spec, u.plan)));
    }),
  );

  const backendOrder = (b: string) => BENCH_BACKENDS.indexOf(b);
  const models: ModelResult[] = opts.models.map((spec) => {
    const modelRuns = runs
      .get(spec.id)!
      .slice()
      .sort(
        (a, b) =>
          backendOrder(a.backend) - backendOrder(b.backend) ||
          WORKLOADS.indexOf(a.workload) - WORKLOADS.indexOf(b.workload) ||
          a.microBatch - b.microBatch,
      );
    return {
      id: spec.id,
      title: spec.title,
      config: spec.cfg,
      batch: spec.batch,
      rank: spec.rank,
      classes: spec.classes,
      pytorchTrainImagesPerSec: spec.pytorchTrainImagesPerSec,
      best: bestOf(spec, modelRuns),
      runs: modelRuns,
      skipped: skipped.get(spec.id)!,
    };
  });
  const result: StepBenchResult = {
    format: RESULT_FORMAT,
    date: new Date().toISOString(),
    quick: opts.quick,
    lanes: opts.serial ? "serial" : "cpu-parallel",
    durationSeconds: (performance.now() - T0) / 1000,
    machine: machineFacts(loadAverageAtStart),
    pytorch: {
      label: PYTORCH_LABEL,
      trainImagesPerSec: Object.fromEntries(MODELS.map((m) => [m.id, m.pytorchTrainImagesPerSec])),
    },
    method: methodNotes(opts),
    backends: probes,
    models,
  };
  await writeAtomic(`${opts.out}.json`, `${JSON.stringify(result, null, 2)}\n`);
  await writeAtomic(`${opts.out}.md`, renderMarkdown(result));
  log(`wrote ${path.relative(process.cwd(), opts.out)}.json and .md`);

  const ratios = models
    .map((m) => {
      const best = m.best
        .filter((b) => b.workload === "train" && b.ratioVsPytorch !== undefined)
        .sort((a, b) => b.imagesPerSec - a.imagesPerSec)[0];
      if (!best) return `${m.id}=n/a`;
      const perCpu = best.imagesPerCpuSecond / m.pytorchTrainImagesPerSec;
      return `${m.id}=${best.ratioVsPytorch!.toFixed(2)} (${best.backend}; ${perCpu.toFixed(2)} per CPU-second)`;
    })
    .join(" ");
  process.stdout.write(`training step, ours / PyTorch CPU: ${ratios}\n`);
  if (available.includes("blas") && !opts.quick) await profileBlas(opts.models[opts.models.length - 1]);

  const failures = models.flatMap((m) =>
    m.runs
      .filter(
        (r) =>
          r.status === "error" ||
          r.status === "crashed" ||
          r.status === "timeout" ||
          (r.measurement && !isFlat(r.measurement)),
      )
      .map((r) => ({ ...r, model: m.id })),
  );
  for (const f of failures) {
    log(
      `FAILED: ${f.backend} ${f.model} micro-batch ${f.microBatch} ${WORKLOAD_LABELS[f.workload]}: ${f.status}` +
        `${f.measurement && !isFlat(f.measurement) ? " (tensor count not flat)" : ""}${f.detail ? ` ${f.detail}` : ""}`,
    );
  }
  return failures.length > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench/step: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  },
);
