/**
 * `inflora export` on a short fixture run: the merged file holds exactly timm's VisionTransformer tensors,
 * and the plain ViT path (no adapters) with the merged qkv and the joined head predicts what the run
 * predicted, with logits equal within float32 tolerance.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openRunData } from "../../cli/evaluate_run.js";
import { exportMerged, MERGED_FORMAT } from "../../cli/export_merged.js";
import { train } from "../../cli/train.js";
import { readSafetensors } from "../../common/safetensors.js";
import { expectedShapes, type VitConfig } from "../../common/vit_config.js";
import { testSamples } from "../../coordinator/plan.js";
import { selectBackend } from "../../worker/backend.js";
import { openDataset } from "../../worker/data/open_dataset.js";
import { imagesToPatches } from "../../worker/model/layers.js";
import { type HostTensor, InfLoraVit } from "../../worker/model/vit.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-export-"));
const run = path.join(tmp, "run");
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The fixture config with one epoch per task, its paths made absolute. */
function shortConfig(): string {
  const src = path.join(ROOT, "configs", "fixture_tiny.json");
  const cfg = JSON.parse(readFileSync(src, "utf8"));
  Object.assign(cfg, { init_epoch: 1, epochs: 1 });
  cfg.weights = path.resolve(path.dirname(src), cfg.weights);
  cfg.data_path = path.resolve(path.dirname(src), cfg.data_path);
  const file = path.join(tmp, "fixture_short.json");
  writeFileSync(file, JSON.stringify(cfg));
  return file;
}

beforeAll(async () => {
  await train({ config: shortConfig(), out: run, workers: 1, resume: false });
}, 300_000);

/** Logits of the merged weights through the plain ViT (no adapters) on the run's test samples for `classes`. */
async function mergedLogits(
  file: string,
  classes: number,
): Promise<{ logits: Float32Array; labels: Int32Array }> {
  const { tensors, metadata } = await readSafetensors(file);
  const cfg: VitConfig = {
    imgSize: Number(metadata.img_size),
    patchSize: Number(metadata.patch_size),
    inChans: Number(metadata.in_chans),
    embedDim: Number(metadata.embed_dim),
    depth: Number(metadata.depth),
    numHeads: Number(metadata.num_heads),
    mlpHidden: Number(metadata.mlp_ratio) * Number(metadata.embed_dim),
  };
  const host = new Map<string, HostTensor>(
    [...tensors].map(([n, t]) => [n, { shape: t.shape, data: t.data as Float32Array }]),
  );
  const { data, plan } = await openRunData(run);
  const { samples, labels } = testSamples(plan, classes);
  const dataset = await openDataset({ ...data, threads: 0 });
  const images = await dataset.load("test", Array.from(samples), { augment: false });
  await dataset.close();
  await selectBackend();
  const model = new InfLoraVit(cfg, host);
  const head = host.get("head.weight")!;
  const logits = tf.tidy(() => {
    const rows = (cfg.imgSize / cfg.patchSize) ** 2;
    const patches = imagesToPatches(images, samples.length, 3, cfg.imgSize, cfg.patchSize);
    const x = tf.tensor2d(patches, [samples.length * rows, patches.length / (samples.length * rows)]);
    const W = tf.tensor2d(head.data, [head.shape[0], head.shape[1]]);
    return tf.add(tf.matMul(model.features(x, samples.length), W, false, true), host.get("head.bias")!.data);
  });
  const out = logits.dataSync() as Float32Array;
  logits.dispose();
  model.dispose();
  return { logits: Float32Array.from(out), labels };
}

async function expectRunPredictions(file: string, task: number, classes: number): Promise<void> {
  const preds = await readSafetensors(path.join(run, "predictions", `task-0${task}.safetensors`));
  const runLogits = preds.tensors.get("logits")!.data as Float32Array;
  const runPred = preds.tensors.get("pred")!.data as BigInt64Array;
  const { logits, labels } = await mergedLogits(file, classes);
  expect(Array.from(labels)).toEqual(Array.from(preds.tensors.get("labels")!.data as BigInt64Array, Number));
  expect(logits.length).toBe(runLogits.length);
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < logits.length; i++) {
    worst = Math.max(worst, Math.abs(logits[i] - runLogits[i]));
    scale = Math.max(scale, Math.abs(runLogits[i]));
  }
  expect(worst).toBeLessThan(1e-4 * Math.max(1, scale));
  for (let n = 0; n < labels.length; n++) {
    const row = logits.subarray(n * classes, (n + 1) * classes);
    let best = 0;
    for (let j = 1; j < classes; j++) if (row[j] > row[best]) best = j;
    expect({ sample: n, pred: best }).toEqual({ sample: n, pred: Number(runPred[n]) });
  }
}

describe("inflora export", () => {
  it("writes exactly timm's VisionTransformer tensors with the dimensions in the metadata", async () => {
    const out = path.join(tmp, "merged.safetensors");
    const s = await exportMerged({ run, out });
    expect(s).toMatchObject({ task: 4, classes: 20 });
    const { tensors, metadata } = await readSafetensors(out);
    const cfg: VitConfig = {
      imgSize: 32,
      patchSize: 4,
      inChans: 3,
      embedDim: 48,
      depth: 3,
      numHeads: 3,
      mlpHidden: 192,
    };
    const expected = new Map(expectedShapes(cfg));
    expected.set("head.weight", [20, 48]);
    expected.set("head.bias", [20]);
    expect([...tensors.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [name, shape] of expected) {
      expect({ name, shape: tensors.get(name)!.shape, dtype: tensors.get(name)!.dtype }).toEqual({
        name,
        shape,
        dtype: "F32",
      });
    }
    expect(metadata).toMatchObject({
      format: MERGED_FORMAT,
      task: "4",
      num_classes: "20",
      img_size: "32",
      patch_size: "4",
      embed_dim: "48",
      depth: "3",
      num_heads: "3",
      mlp_ratio: "4",
      global_pool: "token",
    });
    expect(metadata.timm_model).toContain("num_classes=20");
  });

  it("merged weights through the plain ViT give the run's predictions after the last task", async () => {
    const out = path.join(tmp, "merged_last.safetensors");
    await exportMerged({ run, out });
    await expectRunPredictions(out, 4, 20);
  });

  it("--task 2 folds adapters 0..2 and joins heads 0..2 (12 classes)", async () => {
    const out = path.join(tmp, "merged_task2.safetensors");
    const s = await exportMerged({ run, task: 2, out });
    expect(s.classes).toBe(12);
    await expectRunPredictions(out, 2, 12);
  });

  it("names the missing checkpoint for a task the run has not finished", async () => {
    await expect(exportMerged({ run, task: 7, out: path.join(tmp, "x.safetensors") })).rejects.toThrow(
      /no checkpoint for task 7.*finished tasks: 0, 1, 2, 3, 4/,
    );
  });
});
