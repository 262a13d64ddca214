/** The step benchmark's result document (bench/results/step.json) and its readable form (step.md). */
import {
  type BackendReport,
  type Measurement,
  type ModelSpec,
  type StepCounts,
  WORKLOAD_LABELS,
  WORKLOADS,
  type Workload,
} from "./step_spec.js";

export const RESULT_FORMAT = "inflora-bench-step/1";

/** ok: measured; oom: the wasm heap (4 GiB) ran out; not-run: a smaller micro-batch already ran out. */
export type RunStatus = "ok" | "oom" | "not-run" | "error" | "crashed" | "timeout";

export interface RunRecord {
  readonly backend: string;
  readonly workload: Workload;
  readonly microBatch: number;
  readonly status: RunStatus;
  readonly measurement?: Measurement;
  /** The child's error or exit, for anything but ok. */
  readonly detail?: string;
  /** Other benchmark processes running at the same time (the cpu and wasm lanes share the machine). */
  readonly concurrentWith?: readonly string[];
  /** The machine's 1-minute load average when the child finished. */
  readonly loadAverage1m?: number;
}

export interface BestRecord {
  readonly backend: string;
  readonly workload: Workload;
  readonly microBatch: number;
  readonly imagesPerSec: number;
  /** Images per CPU-second of the child: what the configuration delivers with a core to itself. */
  readonly imagesPerCpuSecond: number;
  /** Training step only. */
  readonly pytorchImagesPerSec?: number;
  readonly ratioVsPytorch?: number;
  readonly numTensorsFlat: boolean;
  readonly peakRssMiB: number;
  /** CPU time over wall time of the timed steps (see Measurement.timedCpuSeconds). */
  readonly cpuShare: number;
  readonly perStep?: StepCounts;
}

export interface SkipRecord {
  readonly backend: string;
  readonly reason: string;
}

export interface ModelResult {
  readonly id: string;
  readonly title: string;
  readonly config: ModelSpec["cfg"];
  readonly batch: number;
  readonly rank: number;
  readonly classes: number;
  readonly pytorchTrainImagesPerSec: number;
  readonly best: readonly BestRecord[];
  readonly runs: readonly RunRecord[];
  readonly skipped: readonly SkipRecord[];
}

export interface MachineFacts {
  readonly cpuModel: string;
  readonly logicalCpus: number;
  readonly availableParallelism: number;
  readonly totalMemoryGiB: number;
  readonly platform: string;
  readonly arch: string;
  readonly node: string;
  readonly tfjs: Record<string, string>;
  readonly loadAverageAtStart: readonly number[];
  readonly loadAverageAtEnd: readonly number[];
}

export interface StepBenchResult {
  readonly format: typeof RESULT_FORMAT;
  readonly date: string;
  readonly quick: boolean;
  readonly lanes: "serial" | "cpu-parallel";
  readonly durationSeconds: number;
  readonly machine: MachineFacts;
  readonly pytorch: { readonly label: string; readonly trainImagesPerSec: Record<string, number> };
  readonly method: readonly string[];
  readonly backends: readonly BackendReport[];
  readonly models: readonly ModelResult[];
}

export function cpuShare(m: Measurement): number {
  return m.timedCpuSeconds / m.timedSeconds;
}

export function imagesPerCpuSecond(m: Measurement): number {
  return (m.imagesPerSec * m.timedSeconds) / m.timedCpuSeconds;
}

export function isFlat(m: Measurement): boolean {
  return m.numTensorsBefore === m.numTensorsAfter;
}

/**
 * Per backend and workload, the fastest micro-batch size that ran, judged by images per CPU-second (on a
 * quiet machine the same as images/s; on a busy one, wall-clock rates are mostly noise from whoever else
 * took the core).
 */
export function bestOf(spec: ModelSpec, runs: readonly RunRecord[]): BestRecord[] {
  const out: BestRecord[] = [];
  const backends = [...new Set(runs.map((r) => r.backend))];
  for (const backend of backends) {
    for (const workload of WORKLOADS) {
      let best: RunRecord | undefined;
      for (const r of runs) {
        if (r.backend !== backend || r.workload !== workload || !r.measurement) continue;
        if (!best?.measurement || imagesPerCpuSecond(r.measurement) > imagesPerCpuSecond(best.measurement)) {
          best = r;
        }
      }
      if (!best?.measurement) continue;
      const m = best.measurement;
      const train = workload === "train" && Number.isFinite(spec.pytorchTrainImagesPerSec);
      out.push({
        backend,
        workload,
        microBatch: best.microBatch,
        imagesPerSec: m.imagesPerSec,
        imagesPerCpuSecond: imagesPerCpuSecond(m),
        pytorchImagesPerSec: train ? spec.pytorchTrainImagesPerSec : undefined,
        ratioVsPytorch: train ? m.imagesPerSec / spec.pytorchTrainImagesPerSec : undefined,
        numTensorsFlat: isFlat(m),
        peakRssMiB: m.peakRssMiB,
        cpuShare: cpuShare(m),
        perStep: m.perStep,
      });
    }
  }
  return out;
}

const COUNT_COLUMNS: [string, "l" | "r"][] = [
  ["kernels/step", "r"],
  ["dispatches/step", "r"],
  ["readbacks/step", "r"],
];

function fmtCounts(c: StepCounts | undefined): (string | number)[] {
  return c ? [c.kernels, c.dispatches, c.readbacks] : ["", "", ""];
}

function fmtRate(x: number): string {
  if (x >= 100) return x.toFixed(0);
  if (x >= 10) return x.toFixed(1);
  if (x >= 1) return x.toFixed(2);
  return x.toFixed(3);
}

function fmtMiB(x: number): string {
  return x.toFixed(0);
}

function statusText(r: RunRecord): string {
  switch (r.status) {
    case "ok":
      return "ok";
    case "oom":
      return "OOM";
    case "not-run":
      return "not run";
    default:
      return r.status;
  }
}

function row(cells: readonly (string | number)[]): string {
  return `| ${cells.join(" | ")} |`;
}

/** A markdown table; every row must have one cell per column. */
function table(
  columns: readonly (readonly [string, "l" | "r"])[],
  rows: readonly (string | number)[][],
): string[] {
  for (const r of rows) {
    if (r.length !== columns.length)
      throw new Error(`table row has ${r.length} cells, expected ${columns.length}`);
  }
  return [
    row(columns.map(([name]) => name)),
    row(columns.map(([, align]) => (align === "r" ? "---:" : "---"))),
    ...rows.map(row),
  ];
}

export function renderMarkdown(res: StepBenchResult): string {
  const L: string[] = [];
  const m = res.machine;
  L.push("# Step benchmark (`npm run bench:step`)", "");
  L.push(
    `${res.date} · ${m.cpuModel}, ${m.logicalCpus} logical CPUs, ${m.totalMemoryGiB.toFixed(0)} GiB · Node ${m.node} · ` +
      `tfjs ${m.tfjs["@tensorflow/tfjs-core"] ?? "?"} · ${res.quick ? "quick run (fixture model only)" : "full run"} · ` +
      `${res.durationSeconds.toFixed(0)} s in total`,
    "",
  );
  L.push(
    `Load average (1/5/15 min) at start ${m.loadAverageAtStart.map((x) => x.toFixed(2)).join("/")}, at end ` +
      `${m.loadAverageAtEnd.map((x) => x.toFixed(2)).join("/")}.`,
    "",
  );
  L.push("Backends:", "");
  for (const b of res.backends) {
    L.push(
      b.available
        ? `- \`${b.backend}\`: available (${b.device})`
        : `- \`${b.backend}\`: unavailable — ${b.reason}`,
    );
  }
  L.push("");
  L.push(
    `PyTorch column: ${res.pytorch.label}; training step only. Ratio = our images/s / PyTorch images/s ` +
      "(wall clock). images/CPU-s and CPU/wall show how much of a core the measuring process actually got " +
      "(see Method): on a busy machine, images/CPU-s is the better estimate of what a configuration delivers.",
    "",
  );
  for (const model of res.models) {
    L.push(`## ${model.title}`, "");
    L.push(
      `InfLoRA rank ${model.rank}, one finished adapter folded in, head of ${model.classes} classes.`,
      "",
    );
    const summary = model.best.map((b) => [
      b.backend,
      WORKLOAD_LABELS[b.workload],
      b.microBatch,
      fmtRate(b.imagesPerSec),
      fmtRate(b.imagesPerCpuSecond),
      b.pytorchImagesPerSec === undefined ? "" : fmtRate(b.pytorchImagesPerSec),
      b.ratioVsPytorch === undefined ? "" : b.ratioVsPytorch.toFixed(2),
      b.numTensorsFlat ? "yes" : "**no**",
      fmtMiB(b.peakRssMiB),
      b.cpuShare.toFixed(2),
      ...fmtCounts(b.perStep),
    ]);
    for (const s of model.skipped) {
      summary.push([s.backend, "all", "", s.reason, "", "", "", "", "", "", "", "", ""]);
    }
    L.push(
      ...table(
        [
          ["backend", "l"],
          ["workload", "l"],
          ["best micro-batch", "r"],
          ["images/s", "r"],
          ["images/CPU-s", "r"],
          ["PyTorch images/s", "r"],
          ["ratio", "r"],
          ["numTensors flat", "l"],
          ["peak RSS MiB", "r"],
          ["CPU/wall", "r"],
          ...COUNT_COLUMNS,
        ],
        summary,
      ),
    );
    L.push("");
    L.push("<details><summary>All micro-batch sizes</summary>", "");
    const all = model.runs.map((r) => {
      const x = r.measurement;
      return [
        r.backend,
        WORKLOAD_LABELS[r.workload],
        r.microBatch,
        r.detail && r.status !== "ok"
          ? `${statusText(r)} (${r.detail.replaceAll("|", "/").slice(0, 120)})`
          : statusText(r),
        x ? fmtRate(x.imagesPerSec) : "",
        x ? fmtRate(imagesPerCpuSecond(x)) : "",
        x ? x.timedSteps : "",
        x ? (x.timedSeconds / x.timedSteps).toFixed(2) : "",
        x ? x.warmupSeconds.toFixed(2) : "",
        x ? `${x.numTensorsBefore} → ${x.numTensorsAfter}` : "",
        x ? fmtMiB(x.peakRssMiB) : "",
        x ? fmtMiB(x.setupRssMiB) : "",
        x ? cpuShare(x).toFixed(2) : "",
        r.loadAverage1m === undefined ? "" : r.loadAverage1m.toFixed(1),
        ...fmtCounts(x?.perStep),
      ];
    });
    L.push(
      ...table(
        [
          ["backend", "l"],
          ["workload", "l"],
          ["micro-batch", "r"],
          ["status", "l"],
          ["images/s", "r"],
          ["images/CPU-s", "r"],
          ["timed steps", "r"],
          ["s/step", "r"],
          ["warm-up s", "r"],
          ["numTensors before → after", "l"],
          ["peak RSS MiB", "r"],
          ["RSS after setup MiB", "r"],
          ["CPU/wall", "r"],
          ["load 1 min", "r"],
          ...COUNT_COLUMNS,
        ],
        all,
      ),
    );
    L.push("", "</details>", "");
  }
  L.push("## Method", "");
  for (const line of res.method) L.push(`- ${line}`);
  L.push("");
  return L.join("\n");
}
