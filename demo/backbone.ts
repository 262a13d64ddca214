/**
 * The demo's pretrained backbone: a small ViT trained on the pretraining half of the demo data, standing
 * in for the ImageNet-21k ViT-B/16 the paper starts from. Cached next to a JSON record of its recipe, the
 * data it saw and the file's SHA-256; it is retrained only when one of them no longer matches.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { writeFileAtomic } from "../common/atomic_write.js";
import { log } from "../common/log.js";
import { writeSafetensors } from "../common/safetensors.js";
import type { VitConfig } from "../common/vit_config.js";
import { openDataset } from "../worker/data/open_dataset.js";
import { imagesToPatches } from "../worker/model/layers.js";
import { fingerprintFile } from "../worker/model/load_weights.js";
import { type HostTensor, InfLoraVit } from "../worker/model/vit.js";
import { pretrainVit } from "./pretrain.js";
import type { Progress } from "./progress.js";

// 2: pretrained through the model's own forward pass; a backbone of format 1 is trained again.
export const BACKBONE_FORMAT = "inflora-demo-backbone/2";

export const STAND_IN_NOTE =
  "This backbone stands in for ImageNet-21k pretraining: a small ViT trained from scratch on half of the " +
  "demo's Fashion-MNIST training images (all 10 classes), disjoint from the images the continual runs see.";

export interface BackboneRecipe {
  readonly model: VitConfig;
  readonly epochs: number;
  readonly batchSize: number;
  readonly lr: number;
  readonly weightDecay: number;
  readonly labelSmoothing: number;
  readonly flip: boolean;
  readonly seed: number;
}

export interface Backbone {
  readonly file: string;
  readonly sha256: string;
  /** Top-1 accuracy (percent) of the backbone's own 10-class head on the demo's test split. */
  readonly testAccuracy: number;
  readonly trainSeconds: number;
  /** true when the cached file was reused. */
  readonly cached: boolean;
}

interface BackboneRecord {
  readonly format: string;
  readonly weights: string;
  readonly sha256: string;
  readonly recipe: BackboneRecipe;
  readonly data_sha256: string;
  readonly test_accuracy: number;
  readonly train_seconds: number;
  readonly note: string;
}

function recordFile(weights: string): string {
  return `${weights.replace(/\.safetensors$/, "")}.json`;
}

/** The cached backbone, when its record matches this recipe and data and the file's digest matches the record. */
async function cachedBackbone(
  file: string,
  recipe: BackboneRecipe,
  dataSha256: string,
): Promise<Backbone | undefined> {
  const recordPath = recordFile(file);
  if (!existsSync(file) || !existsSync(recordPath)) return undefined;
  let record: BackboneRecord;
  try {
    record = JSON.parse(readFileSync(recordPath, "utf8")) as BackboneRecord;
  } catch {
    return undefined;
  }
  const why =
    record.format !== BACKBONE_FORMAT
      ? "format"
      : JSON.stringify(record.recipe) !== JSON.stringify(recipe)
        ? "recipe"
        : record.data_sha256 !== dataSha256
          ? "data"
          : (await fingerprintFile(file)) !== record.sha256
            ? "sha256"
            : undefined;
  if (why !== undefined) {
    log.info({ file, changed: why }, "cached demo backbone does not match; pretraining again");
    return undefined;
  }
  return {
    file,
    sha256: record.sha256,
    testAccuracy: record.test_accuracy,
    trainSeconds: record.train_seconds,
    cached: true,
  };
}

async function loadSplit(dir: string, split: "train" | "test", imageSize: number) {
  const dataset = await openDataset({ dataset: "idx", dataPath: path.resolve(dir), imageSize, threads: 0 });
  try {
    const labels = dataset.labels(split);
    const images = await dataset.load(
      split,
      Array.from(labels, (_, i) => i),
      { augment: false },
    );
    return { images, labels };
  } finally {
    await dataset.close();
  }
}

/** Accuracy of the backbone's own head, through the adapter model's forward pass (what the runs use). */
function headAccuracy(
  weights: Map<string, HostTensor>,
  cfg: VitConfig,
  images: Float32Array,
  labels: Int32Array,
): number {
  const model = new InfLoraVit(cfg, weights);
  const head = weights.get("head.weight")!;
  const W = tf.tensor2d(head.data, [head.shape[0], head.shape[1]]);
  const b = tf.tensor1d(weights.get("head.bias")!.data);
  const imageFloats = 3 * cfg.imgSize * cfg.imgSize;
  const rows = (cfg.imgSize / cfg.patchSize) ** 2;
  const rowLen = cfg.inChans * cfg.patchSize ** 2;
  let correct = 0;
  try {
    for (let first = 0; first < labels.length; first += 200) {
      const n = Math.min(200, labels.length - first);
      const patches = imagesToPatches(
        images.subarray(first * imageFloats, (first + n) * imageFloats),
        n,
        cfg.inChans,
        cfg.imgSize,
        cfg.patchSize,
      );
      const pred = tf.tidy(() => {
        const feats = model.features(tf.tensor2d(patches, [n * rows, rowLen]), n);
        return tf.argMax(tf.add(tf.matMul(feats, tf.transpose(W)), b), 1);
      });
      const p = pred.dataSync();
      pred.dispose();
      for (let i = 0; i < n; i++) if (p[i] === labels[first + i]) correct++;
    }
  } finally {
    model.dispose();
    tf.dispose([W, b]);
  }
  return Math.round((10000 * correct) / labels.length) / 100;
}

export interface BackboneRequest {
  /** Where the `.safetensors` goes; its record is the same name with `.json`. */
  readonly file: string;
  readonly recipe: BackboneRecipe;
  /** IDX folder of the pretraining half. */
  readonly dataDir: string;
  readonly dataSha256: string;
  readonly classes: number;
  readonly progress: Progress;
  /** Pretrain even when a matching cached file exists. */
  readonly force?: boolean;
}

/** Returns the cached backbone when it matches, otherwise pretrains, evaluates and saves one. */
export async function ensureBackbone(req: BackboneRequest): Promise<Backbone> {
  const { recipe, file } = req;
  if (!req.force) {
    const cached = await cachedBackbone(file, recipe, req.dataSha256);
    if (cached) return cached;
  }
  const cfg = recipe.model;
  const train = await loadSplit(req.dataDir, "train", cfg.imgSize);
  const test = await loadSplit(req.dataDir, "test", cfg.imgSize);
  const stepsPerEpoch = Math.ceil(train.labels.length / recipe.batchSize);
  const bar = req.progress.start("pretrain backbone", recipe.epochs * stepsPerEpoch);
  const started = performance.now();
  let lastEpoch = "";
  const weights = await pretrainVit(train, {
    cfg,
    classes: req.classes,
    epochs: recipe.epochs,
    batchSize: recipe.batchSize,
    lr: recipe.lr,
    weightDecay: recipe.weightDecay,
    labelSmoothing: recipe.labelSmoothing,
    seed: recipe.seed,
    flip: recipe.flip,
    onStep: (s) =>
      bar.update(
        s.epoch * s.steps + s.step + 1,
        `epoch ${s.epoch + 1}/${recipe.epochs} loss ${s.loss.toFixed(3)}${lastEpoch}`,
      ),
    onEpoch: (e) => {
      lastEpoch = ` (last epoch: train acc ${e.trainAccuracy.toFixed(1)}%)`;
      log.debug({ ...e }, "pretraining epoch");
    },
  });
  const trainSeconds = Math.round((performance.now() - started) / 100) / 10;
  const testAccuracy = headAccuracy(weights, cfg, test.images, test.labels);
  bar.stop(`test accuracy of its own head ${testAccuracy.toFixed(2)}%`);
  await writeSafetensors(
    file,
    new Map([...weights].map(([name, t]) => [name, { dtype: "F32" as const, shape: t.shape, data: t.data }])),
    {
      format: BACKBONE_FORMAT,
      note: STAND_IN_NOTE,
      img_size: String(cfg.imgSize),
      patch_size: String(cfg.patchSize),
      embed_dim: String(cfg.embedDim),
      depth: String(cfg.depth),
      num_heads: String(cfg.numHeads),
      num_classes: String(req.classes),
      test_accuracy: String(testAccuracy),
    },
  );
  const sha256 = await fingerprintFile(file);
  const record: BackboneRecord = {
    format: BACKBONE_FORMAT,
    weights: path.basename(file),
    sha256,
    recipe,
    data_sha256: req.dataSha256,
    test_accuracy: testAccuracy,
    train_seconds: trainSeconds,
    note: STAND_IN_NOTE,
  };
  await writeFileAtomic(recordFile(file), `${JSON.stringify(record, null, 1)}\n`);
  return { file, sha256, testAccuracy, trainSeconds, cached: false };
}
