/**
 * Where a step's time goes: runs a workload under tf.profile and prints the time per kernel (op type,
 * summed by kernel name) with its share of the step's wall time, and the heaviest kernel × input-shape
 * combinations. On the blas backend it profiles once per BLAS thread count (`--threads`, default 1,2: the
 * addon splits its elementwise kernels over the same threads as the GEMMs), so what does and does not
 * scale with cores is visible side by side. `npm run bench:step` runs it for the blas backend and writes
 * bench/results/step_profile.md; alone it prints, and writes PREFIX.md/.json with --out.
 *
 * Usage: npx tsx bench/step_profile.ts [--backend wasm] [--model fixture] [--workload train]
 *                                      [--micro-batch N] [--top 15] [--threads 1,2] [--out PREFIX]
 */
import { rename, writeFile } from "node:fs/promises";
import os from "node:os";
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs-core";
import { nativeAddon } from "../native/index.js";
import { selectBackend } from "../worker/backend.js";
import { modelById, WORKLOADS, type Workload } from "./step_spec.js";
import { buildBenchModel, microBatches, STEPS } from "./step_workloads.js";

const { values } = parseArgs({
  options: {
    backend: { type: "string", default: "wasm" },
    model: { type: "string", default: "fixture" },
    workload: { type: "string", default: "train" },
    "micro-batch": { type: "string" },
    top: { type: "string", default: "15" },
    threads: { type: "string" },
    out: { type: "string" },
  },
  strict: true,
});
const workload = values.workload as Workload;
if (!WORKLOADS.includes(workload)) throw new Error(`--workload: expected one of ${WORKLOADS.join(", ")}`);
const spec = modelById(values.model!);
const size = Number(values["micro-batch"] ?? spec.microBatches[0]);
const top = Number(values.top);

const info = await selectBackend(values.backend);
const addon = values.backend === "blas" ? nativeAddon() : undefined;
const threadCounts = addon ? (values.threads ?? "1,2").split(",").map(Number) : [undefined];
if (threadCounts.some((t) => t !== undefined && !(Number.isInteger(t) && t >= 1))) {
  throw new Error(`--threads: expected positive integers, got ${values.threads}`);
}
const m = await buildBenchModel(spec);
const mbs = microBatches(m, size, size);
const step = STEPS[workload];

interface Row {
  calls: number;
  ms: number;
}

interface Profile {
  readonly threads?: number;
  readonly wallMs: number;
  readonly cpuMs: number;
  readonly kernelMs: number;
  readonly kernelCalls: number;
  readonly byName: Map<string, Row>;
  readonly byShape: Map<string, Row>;
}

async function profileOnce(threads: number | undefined): Promise<Profile> {
  if (threads !== undefined) addon!.setThreads(threads);
  await step(m, mbs); // warm-up: heap growth, weight packing, JIT, the pool's threads
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const profile = await tf.profile(async () => {
    await step(m, mbs);
    return tf.scalar(0);
  });
  const wallMs = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const byName = new Map<string, Row>();
  const byShape = new Map<string, Row>();
  let kernelMs = 0;
  let kernelCalls = 0;
  for (const k of profile.kernels) {
    // tf.customGrad functions are recorded too, under the enclosing scope's name, and their time includes
    // the kernels inside them, which are recorded on their own: leave them out.
    if (!tf.getKernel(k.name, tf.getBackend())) continue;
    const ms = Number(k.kernelTimeMs);
    kernelMs += ms;
    kernelCalls++;
    const shapes = `${k.name} ${k.inputShapes.map((s) => `[${s?.join(",")}]`).join(" ")}`;
    for (const [map, key] of [
      [byName, k.name],
      [byShape, shapes],
    ] as const) {
      const row = map.get(key) ?? { calls: 0, ms: 0 };
      row.calls++;
      row.ms += ms;
      map.set(key, row);
    }
  }
  return { threads, wallMs, cpuMs: (c.user + c.system) / 1000, kernelMs, kernelCalls, byName, byShape };
}

const profiles: Profile[] = [];
for (const t of threadCounts) profiles.push(await profileOnce(t));

const threadsLabel = (p: Profile) =>
  p.threads === undefined ? "" : ` ${p.threads} thread${p.threads === 1 ? "" : "s"}`;
const lines: string[] = [];
lines.push(
  `# Per-op profile (\`bench/step_profile.ts\`)`,
  "",
  `${new Date().toISOString()} · ${info.name} · ${info.device} · ` +
    `${spec.id} · ${workload} · one micro-batch of ${size} images · load average (1 min) ${os.loadavg()[0].toFixed(1)}`,
  "",
  "Time per kernel name under tf.profile (its own timing adds a little per call), as a share of the step's",
  "wall time; 'outside kernels' is the rest (tfjs bookkeeping, autodiff, JS between kernels). On a machine",
  "shared with other processes the milliseconds are inflated; the shares and the thread columns side by",
  "side are what to read.",
  "",
);
for (const p of profiles) {
  lines.push(
    `-${threadsLabel(p) || " the step"}: ${p.wallMs.toFixed(0)} ms wall, ${p.cpuMs.toFixed(0)} ms CPU, ` +
      `${p.kernelCalls} kernel calls, ${p.kernelMs.toFixed(0)} ms in kernels`,
  );
}
lines.push("");
const names = [...profiles[0].byName].sort((a, b) => b[1].ms - a[1].ms).map(([k]) => k);
const pct = (ms: number, p: Profile) => ((100 * ms) / p.wallMs).toFixed(1);
lines.push(
  `| kernel | calls |${profiles.map((p) => ` ms${threadsLabel(p)} | % of step${threadsLabel(p)} |`).join("")}`,
  `| --- | ---: |${profiles.map(() => " ---: | ---: |").join("")}`,
);
for (const name of names.slice(0, top)) {
  const cells = profiles.map((p) => {
    const r = p.byName.get(name);
    return r ? ` ${r.ms.toFixed(1)} | ${pct(r.ms, p)} |` : " – | – |";
  });
  lines.push(`| ${name} | ${profiles[0].byName.get(name)!.calls} |${cells.join("")}`);
}
const restCells = (p: Profile, ms: number) => ` ${ms.toFixed(1)} | ${pct(ms, p)} |`;
lines.push(
  `| (other kernels) | |${profiles
    .map((p) =>
      restCells(
        p,
        [...p.byName].filter(([k]) => !names.slice(0, top).includes(k)).reduce((a, [, r]) => a + r.ms, 0),
      ),
    )
    .join("")}`,
  `| (outside kernels) | |${profiles.map((p) => restCells(p, p.wallMs - p.kernelMs)).join("")}`,
  "",
);
const last = profiles[profiles.length - 1];
lines.push(
  `| kernel and input shapes${threadsLabel(last)} | calls | ms | % of step |`,
  "| --- | ---: | ---: | ---: |",
);
for (const [key, r] of [...last.byShape].sort((a, b) => b[1].ms - a[1].ms).slice(0, top)) {
  lines.push(`| ${key} | ${r.calls} | ${r.ms.toFixed(1)} | ${pct(r.ms, last)} |`);
}
lines.push("");
const md = lines.join("\n");
process.stdout.write(md);
if (values.out) {
  const json = {
    format: "inflora-step-profile/1",
    date: new Date().toISOString(),
    backend: info.name,
    device: info.device,
    model: spec.id,
    workload,
    microBatch: size,
    loadAverage: os.loadavg(),
    profiles: profiles.map((p) => ({
      threads: p.threads,
      wallMs: p.wallMs,
      cpuMs: p.cpuMs,
      kernelMs: p.kernelMs,
      kernelCalls: p.kernelCalls,
      byName: Object.fromEntries(p.byName),
    })),
  };
  for (const [ext, text] of [
    ["md", md],
    ["json", `${JSON.stringify(json, null, 1)}\n`],
  ] as const) {
    await writeFile(`${values.out}.${ext}.tmp`, text);
    await rename(`${values.out}.${ext}.tmp`, `${values.out}.${ext}`);
  }
}
