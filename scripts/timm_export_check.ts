/**
 * Checks that `inflora export` gives weights timm loads strictly and that timm's VisionTransformer then
 * predicts what the run predicted. Not part of `npm test`: it needs PyTorch and timm, which CI does not
 * install. It trains the fixture config for one epoch per task, exports the merged weights, writes the
 * run's test images with its logits and predictions, and runs scripts/timm_export_check.py on them.
 *
 *   npx tsx scripts/timm_export_check.ts [--python /path/to/python-with-timm]
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { openRunData } from "../cli/evaluate_run.js";
import { exportMerged } from "../cli/export_merged.js";
import { train } from "../cli/train.js";
import { readSafetensors, writeSafetensors } from "../common/safetensors.js";
import { testSamples } from "../coordinator/plan.js";
import { openDataset } from "../worker/data/open_dataset.js";

const ROOT = path.resolve(import.meta.dirname, "..");
const { values } = parseArgs({ options: { python: { type: "string", default: "python3" } } });
const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-timm-"));
try {
  const src = path.join(ROOT, "configs", "fixture_tiny.json");
  const cfg = JSON.parse(readFileSync(src, "utf8"));
  Object.assign(cfg, { init_epoch: 1, epochs: 1 });
  cfg.weights = path.resolve(path.dirname(src), cfg.weights);
  cfg.data_path = path.resolve(path.dirname(src), cfg.data_path);
  const cfgFile = path.join(tmp, "config.json");
  writeFileSync(cfgFile, JSON.stringify(cfg));
  const run = path.join(tmp, "run");
  await train({ config: cfgFile, out: run, workers: 1, inProcess: true, resume: false });
  const merged = path.join(tmp, "merged.safetensors");
  const summary = await exportMerged({ run, out: merged });

  const { data, plan } = await openRunData(run);
  const { samples } = testSamples(plan, summary.classes);
  const dataset = await openDataset({ ...data, threads: 0 });
  const images = await dataset.load("test", Array.from(samples), { augment: false });
  await dataset.close();
  const task = String(summary.task).padStart(2, "0");
  const preds = await readSafetensors(path.join(run, "predictions", `task-${task}.safetensors`));
  const inputs = path.join(tmp, "inputs.safetensors");
  await writeSafetensors(inputs, {
    images: { dtype: "F32", shape: [samples.length, 3, cfg.img_size, cfg.img_size], data: images },
    logits: preds.tensors.get("logits")!,
    pred: preds.tensors.get("pred")!,
  });
  const py = spawnSync(
    values.python,
    [path.join(import.meta.dirname, "timm_export_check.py"), merged, inputs],
    {
      stdio: "inherit",
    },
  );
  process.exitCode = py.status ?? 1;
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
