/**
 * Every file in configs/ goes through the config schema, the reference ports keep its hyperparameters, and
 * each of them plans on a dataset of its size under its method's phase table.
 */
import { readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../common/config.js";
import type { DatasetIndex } from "../../common/data/types.js";
import { finalNormOf, logitNormOf, methodOf, PhaseTable } from "../../coordinator/methods.js";
import { buildPlan } from "../../coordinator/plan.js";

const DIR = path.resolve(import.meta.dirname, "../../configs");
const files = readdirSync(DIR).filter((f) => f.endsWith(".json"));

/** The reference's values (liangyanshuo/InfLoRA configs/*.json). */
const REFERENCE: Record<string, Record<string, unknown>> = {
  "cifar100_inflora.json": {
    dataset: "cifar100",
    init_cls: 10,
    increment: 10,
    total_sessions: 10,
    model_name: "InfLoRA",
    optim: "adam",
    init_epoch: 20,
    epochs: 20,
    init_lr: 5e-4,
    lrate: 5e-4,
    batch_size: 128,
    rank: 10,
    lamb: 0.95,
    lame: 1,
  },
  "cifar100_inflorab5.json": {
    dataset: "cifar100",
    init_cls: 10,
    total_sessions: 10,
    model_name: "InfLoRAb5",
    init_lr: 1e-3,
    lrate: 1e-3,
    epochs: 20,
    rank: 10,
    lamb: 0.95,
  },
  "mimg5_inflora.json": {
    dataset: "ImageNet_R",
    init_cls: 40,
    increment: 40,
    total_sessions: 5,
    model_name: "InfLoRA",
    epochs: 50,
    lrate: 5e-4,
    lamb: 0.98,
    rank: 10,
  },
  "mimg5_inflorab5.json": { init_cls: 40, total_sessions: 5, model_name: "InfLoRAb5", lamb: 0.98 },
  "mimg10_inflora.json": {
    dataset: "ImageNet_R",
    init_cls: 20,
    increment: 20,
    total_sessions: 10,
    init_epoch: 50,
    epochs: 50,
    lrate: 5e-4,
    lamb: 0.98,
    lame: 1,
    rank: 10,
    batch_size: 128,
  },
  "mimg10_inflorab5.json": { init_cls: 20, total_sessions: 10, model_name: "InfLoRAb5", lamb: 0.99 },
  "mimg20_inflora.json": {
    init_cls: 10,
    increment: 10,
    total_sessions: 20,
    model_name: "InfLoRA",
    lamb: 0.98,
  },
  "mimg20_inflorab5.json": { init_cls: 10, total_sessions: 20, model_name: "InfLoRAb5", lamb: 0.98 },
  "domainnet_inflora.json": {
    dataset: "domainnet",
    init_cls: 69,
    increment: 69,
    total_sessions: 5,
    optim: "sgd",
    epochs: 5,
    lrate: 0.005,
    fc_lrate: 0.01,
    rank: 30,
    lamb: 0.95,
    model_name: "InfLoRA_domain",
  },
  "domainnet_inflorab5.json": {
    dataset: "domainnet",
    total_sessions: 5,
    optim: "sgd",
    rank: 30,
    model_name: "InfLoRAb5_domain",
  },
  "cifar100_infloraca.json": {
    dataset: "cifar100",
    init_cls: 10,
    increment: 10,
    total_sessions: 10,
    model_name: "InfLoRA_CA1",
    optim: "sgd",
    init_epoch: 20,
    epochs: 20,
    fc_lrate: 0.01,
    lrate: 0.001,
    lrate_decay: 0.1,
    batch_size: 128,
    weight_decay: 0.001,
    rank: 5,
    lamb: 0.95,
    lame: 1,
  },
  "mimg10_infloraca.json": {
    dataset: "ImageNet_R",
    init_cls: 20,
    increment: 20,
    total_sessions: 10,
    model_name: "InfLoRA_CA",
    optim: "sgd",
    init_epoch: 50,
    epochs: 50,
    init_lr: 0.001,
    init_weight_decay: 0,
    lrate: 0.001,
    lrate_decay: 0.1,
    batch_size: 128,
    weight_decay: 0,
    rank: 10,
    lamb: 0.95,
    lame: 1,
  },
};

/** Classes of each dataset the reference's configs name (CIFAR-100, ImageNet-R, DomainNet). */
const CLASSES: Record<string, number> = { cifar100: 100, ImageNet_R: 200, imagenet_r: 200, domainnet: 345 };

/** A dataset index of `classes` classes with two samples each per split (only the labels matter to a plan). */
function syntheticIndex(classes: number): DatasetIndex {
  const labels = Int32Array.from({ length: 2 * classes }, (_, i) => i % classes);
  return {
    kind: "synthetic",
    classNames: Array.from({ length: classes }, (_, c) => `c${c}`),
    labels: () => labels,
  };
}

describe("configs/", () => {
  it("holds the reference ports, the demo configs and the fixture", () => {
    for (const f of [
      ...Object.keys(REFERENCE),
      "demo_inflora.json",
      "demo_seqlora.json",
      "demo_joint.json",
      "fixture_tiny.json",
    ]) {
      expect(files).toContain(f);
    }
  });

  for (const file of files) {
    it(`${file} loads through the schema`, () => {
      const cfg = loadConfig(path.join(DIR, file));
      expect(path.isAbsolute(cfg.weights)).toBe(true);
      expect(cfg.seeds.length).toBeGreaterThan(0);
    });
  }

  for (const [file, want] of Object.entries(REFERENCE)) {
    it(`${file} keeps the reference's hyperparameters and points at the in21k weights`, () => {
      const cfg = loadConfig(path.join(DIR, file)) as unknown as Record<string, unknown>;
      for (const [key, value] of Object.entries(want))
        expect({ key, value: cfg[key] }).toEqual({ key, value });
      expect(cfg.seeds).toEqual([0]);
      expect(cfg.embd_dim).toBe(768);
      expect(cfg.num_heads).toBe(12);
      expect(path.basename(cfg.weights as string)).toMatch(/^vit_base_patch16_224_in21k\.(npz|safetensors)$/);
    });
  }

  for (const file of Object.keys(REFERENCE)) {
    it(`${file} plans its tasks on a dataset of its size, under its method's phases`, () => {
      const cfg = loadConfig(path.join(DIR, file));
      const plan = buildPlan(syntheticIndex(CLASSES[cfg.dataset]), {
        shuffle: cfg.shuffle,
        seed: cfg.seeds[0],
        initCls: cfg.init_cls,
        increment: cfg.increment,
        totalSessions: cfg.total_sessions,
        source: cfg.file,
      });
      expect(plan.tasks).toHaveLength(cfg.total_sessions);
      expect(plan.tasks.at(-1)?.classEnd).toBe(CLASSES[cfg.dataset]);
      const table = new PhaseTable(methodOf(cfg));
      expect(table.phases.at(-1)).toBe("CHECKPOINT");
    });
  }

  it("the CA configs align the classifier with the reference's logit_norm and final norm", () => {
    const ca1 = loadConfig(path.join(DIR, "cifar100_infloraca.json"));
    const ca = loadConfig(path.join(DIR, "mimg10_infloraca.json"));
    for (const cfg of [ca1, ca]) {
      expect(new PhaseTable(methodOf(cfg)).phases).toEqual([
        "COVARIANCE_PRE",
        "DESIGN",
        "TRAIN",
        "COVARIANCE_POST",
        "DUALGPM",
        "CLASS_STATS",
        "EVAL_BEFORE_ALIGNMENT",
        "ALIGNMENT",
        "EVAL",
        "CHECKPOINT",
      ]);
      expect(methodOf(cfg).memory).toBe("GPM");
    }
    expect(logitNormOf(methodOf(ca1), ca1.dataset)).toBe(0.1);
    expect(finalNormOf(methodOf(ca1), ca1.dataset)).toBe("fresh");
    expect(logitNormOf(methodOf(ca), ca.dataset)).toBe(0.1);
    expect(finalNormOf(methodOf(ca), ca.dataset)).toBe("pretrained");
    // InfLoRA_CA on CIFAR-100 trains with plain cross-entropy; InfLoRA_CA1 elsewhere keeps the pretrained norm.
    expect(logitNormOf(methodOf(ca), "cifar100")).toBeNull();
    expect(finalNormOf(methodOf(ca1), "ImageNet_R")).toBe("pretrained");
  });

  it("the demo's three methods differ only where they must", () => {
    const inflora = loadConfig(path.join(DIR, "demo_inflora.json"));
    const seq = loadConfig(path.join(DIR, "demo_seqlora.json"));
    const joint = loadConfig(path.join(DIR, "demo_joint.json"));
    const strip = (c: ReturnType<typeof loadConfig>) => {
      const { file, sha256, source, model_name, init_cls, increment, total_sessions, ...rest } = c;
      return rest;
    };
    expect(seq.model_name).toBe("SeqLoRA");
    expect(strip(seq)).toEqual(strip(inflora));
    expect([joint.init_cls, joint.total_sessions]).toEqual([10, 1]);
    expect(strip(joint)).toEqual(strip(inflora));
    expect([inflora.dataset, inflora.init_cls, inflora.total_sessions]).toEqual(["idx", 2, 5]);
  });
});
