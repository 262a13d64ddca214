/** Every file in configs/ goes through the config schema, and the reference ports keep its hyperparameters. */
import { readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../common/config.js";

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
};

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
