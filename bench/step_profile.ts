/**
 * Where a step's time goes: runs one micro-batch of a workload under tf.profile and prints the time per
 * kernel (summed by kernel name, and the heaviest kernel × input-shape combinations). A diagnostic for
 * the step benchmark (bench/step.ts); it records nothing.
 *
 * Usage: npx tsx bench/step_profile.ts [--backend wasm] [--model fixture] [--workload train]
 *                                      [--micro-batch N] [--top 15]
 */
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs-core";
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
  },
  strict: true,
});
const workload = values.workload as Workload;
if (!WORKLOADS.includes(workload)) throw new Error(`--workload: expected one of ${WORKLOADS.join(", ")}`);
const spec = modelById(values.model!);
const size = Number(values["micro-batch"] ?? spec.microBatches[0]);
const top = Number(values.top);

const info = await selectBackend(values.backend);
const m = await buildBenchModel(spec);
const mbs = microBatches(m, size, size);
const step = STEPS[workload];
await step(m, mbs); // warm-up: heap growth, weight packing, JIT
const t0 = performance.now();
const profile = await tf.profile(async () => {
  await step(m, mbs);
  return tf.scalar(0);
});
const wall = performance.now() - t0;

interface Row {
  calls: number;
  ms: number;
}
const byName = new Map<string, Row>();
const byShape = new Map<string, Row>();
let kernelMs = 0;
let wrappers = 0;
for (const k of profile.kernels) {
  // tf.customGrad functions are recorded too, under the enclosing scope's name, and their time includes
  // the kernels inside them, which are recorded on their own: leave them out.
  if (!tf.getKernel(k.name, tf.getBackend())) {
    wrappers++;
    continue;
  }
  const ms = Number(k.kernelTimeMs);
  kernelMs += ms;
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
const pct = (ms: number) => ((100 * ms) / kernelMs).toFixed(1);
const table = (title: string, map: Map<string, Row>) => {
  console.log(`\n| ${title} | calls | ms | % of kernel time |\n| --- | ---: | ---: | ---: |`);
  for (const [key, r] of [...map].sort((a, b) => b[1].ms - a[1].ms).slice(0, top)) {
    console.log(`| ${key} | ${r.calls} | ${r.ms.toFixed(1)} | ${pct(r.ms)} |`);
  }
};
console.log(
  `${info.name} · ${spec.id} · ${workload} · one micro-batch of ${size} images · ` +
    `${profile.kernels.length - wrappers} kernel calls, ${kernelMs.toFixed(0)} ms in kernels, ${wall.toFixed(0)} ms ` +
    `wall (${wrappers} tf.customGrad calls not counted: their time is that of the kernels inside them)`,
);
table("kernel", byName);
table("kernel and input shapes", byShape);
