import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseConfig, taskHyper } from "../../common/config.js";
import { buildPlan, PlanError } from "../../coordinator/plan.js";
import { REFERENCE_DIR } from "../helpers/reference_compare.js";

const base = {
  dataset: "cifar100",
  data_path: "data",
  weights: "w.safetensors",
  init_cls: 10,
  increment: 10,
  total_sessions: 10,
  epochs: 5,
  lrate: 0.001,
  batch_size: 32,
  rank: 10,
  lamb: 0.95,
  lame: 1.0,
};

describe("config", () => {
  it("accepts the reference fixture config and resolves paths against its folder", () => {
    const cfg = loadConfig(path.join(REFERENCE_DIR, "tiny_config.json"));
    expect(cfg.data_path).toBe(path.join(REFERENCE_DIR, "cifar_bin"));
    expect(cfg.weights).toBe(path.join(REFERENCE_DIR, "tiny_vit.safetensors"));
    expect(cfg.seeds).toEqual([0]);
    expect(cfg.sha256).toBe("07b5c348ccfa40c471703a835eb63cde074276b283fd3d8062e6a0858d3888b4");
  });

  it("names an unknown key and the file", () => {
    const text = JSON.stringify({ ...base, learning_rate: 0.1 });
    expect(() => parseConfig(text, "/x/run.json")).toThrow(ConfigError);
    expect(() => parseConfig(text, "/x/run.json")).toThrow(/\/x\/run\.json: unknown key "learning_rate"/);
  });

  it("names a key with a wrong type or range", () => {
    expect(() => parseConfig(JSON.stringify({ ...base, rank: -1 }), "c.json")).toThrow(/c\.json: key "rank"/);
    expect(() => parseConfig(JSON.stringify({ ...base, optim: "rmsprop" }), "c.json")).toThrow(/key "optim"/);
    expect(() => parseConfig("{ not json", "c.json")).toThrow(/c\.json: not valid JSON/);
  });

  it("accepts and ignores the reference keys that do not apply", () => {
    const cfg = parseConfig(
      JSON.stringify({ ...base, num_workers: 16, memory_size: 0, EPSILON: 1e-8, prefix: "x" }),
      "c.json",
    );
    expect(cfg.batch_size).toBe(32);
  });

  it("fills the reference's task-0 hyperparameters from the later ones when absent", () => {
    const cfg = parseConfig(JSON.stringify({ ...base, seed: [1, 2] }), "c.json");
    expect(taskHyper(cfg, 0)).toEqual({ epochs: 5, lr: 0.001, weightDecay: 0 });
    expect(cfg.seeds).toEqual([1, 2]);
    const withInit = parseConfig(JSON.stringify({ ...base, init_epoch: 7, init_lr: 0.01 }), "c.json");
    expect(taskHyper(withInit, 0)).toEqual({ epochs: 7, lr: 0.01, weightDecay: 0 });
    expect(taskHyper(withInit, 1)).toEqual({ epochs: 5, lr: 0.001, weightDecay: 0 });
  });

  it("reports a missing config file by name", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "cfg-"));
    expect(() => loadConfig(path.join(dir, "nope.json"))).toThrow(
      /nope\.json: cannot read the config \(ENOENT\)/,
    );
    writeFileSync(path.join(dir, "arr.json"), "[]");
    expect(() => loadConfig(path.join(dir, "arr.json"))).toThrow(/must be a JSON object/);
  });
});

describe("task split against the dataset", () => {
  const index = {
    kind: "test",
    classNames: Array.from({ length: 20 }, (_, i) => String(i)),
    labels: (split: "train" | "test") =>
      Int32Array.from({ length: split === "train" ? 40 : 20 }, (_, i) => i % 20),
  };
  const opts = { shuffle: false, seed: 0, initCls: 4, increment: 4, totalSessions: 5, source: "c.json" };

  it("builds the reference's tasks", () => {
    const plan = buildPlan(index, opts);
    expect(plan.taskSizes).toEqual([4, 4, 4, 4, 4]);
    expect(Array.from(plan.tasks[1].train)).toEqual([4, 24, 5, 25, 6, 26, 7, 27]);
  });

  it("refuses init_cls/increment that do not fit the dataset", () => {
    expect(() => buildPlan(index, { ...opts, initCls: 30 })).toThrow(PlanError);
    expect(() => buildPlan(index, { ...opts, initCls: 30 })).toThrow(
      /c\.json: init_cls \(30\) exceeds the number of classes \(20\)/,
    );
    expect(() => buildPlan(index, { ...opts, increment: 3 })).toThrow(
      /split the dataset's 20 classes into 7 tasks \[4, 3, 3, 3, 3, 3, 1\], but total_sessions is 5/,
    );
  });
});
