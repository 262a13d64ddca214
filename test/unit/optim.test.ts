import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../common/config.js";
import { Adam, Sgd } from "../../coordinator/optim/optimizer.js";
import { taskOptimizer } from "../../coordinator/optim/recipe.js";
import { learningRate } from "../../coordinator/optim/schedule.js";
import { EXPECTED_DIR } from "../helpers/reference_compare.js";

describe("learning-rate schedules", () => {
  it("reproduces the reference's Adam schedule (recorded per epoch in expected/run.json)", () => {
    const run = JSON.parse(readFileSync(path.join(EXPECTED_DIR, "run.json"), "utf8"));
    const want: number[] = run.lr_per_epoch[0];
    want.forEach((lr, e) => {
      expect(learningRate("adam", 0.01, e, want.length)).toBeCloseTo(lr, 15);
    });
  });

  it("uses the base rate for a single epoch where the reference divides by zero", () => {
    expect(learningRate("adam", 0.5, 0, 1)).toBe(0.5);
  });

  it("follows CosineAnnealingLR(T_max = K) for SGD", () => {
    expect(learningRate("sgd", 0.1, 0, 4)).toBeCloseTo(0.1, 15);
    expect(learningRate("sgd", 0.1, 2, 4)).toBeCloseTo(0.05, 15);
    expect(learningRate("sgd", 0.1, 1, 4)).toBeCloseTo((0.1 * (1 + Math.SQRT1_2)) / 2, 15);
  });
});

describe("optimizers", () => {
  it("Adam takes torch's steps: the first moves every weight by lr·sign(g)", () => {
    const p = [Float64Array.of(1, -2, 3)];
    const opt = new Adam(0);
    opt.step(p, [Float64Array.of(0.5, -4, 0)], 0.1);
    // m̂ = g, v̂ = g², so the step is lr·g/(|g| + eps); a zero gradient does not move.
    expect(p[0][0]).toBeCloseTo(0.9, 6);
    expect(p[0][1]).toBeCloseTo(-1.9, 6);
    expect(p[0][2]).toBe(3);
  });

  it("Adam adds weight decay to the gradient and keeps its moments across steps", () => {
    const p = [Float64Array.of(2)];
    const opt = new Adam(0.1);
    opt.step(p, [Float64Array.of(0)], 0.01); // g = 0.2 after decay
    const g2 = 0 + 0.1 * p[0][0];
    const m = 0.9 * 0.1 * 0.2 + 0.1 * g2;
    const v = 0.999 * 0.001 * 0.04 + 0.001 * g2 * g2;
    const expected = p[0][0] - (0.01 / (1 - 0.81)) * (m / (Math.sqrt(v) / Math.sqrt(1 - 0.999 ** 2) + 1e-8));
    opt.step(p, [Float64Array.of(0)], 0.01);
    expect(p[0][0]).toBeCloseTo(expected, 14);
  });

  it("SGD with momentum 0.9 starts its buffer at the first gradient", () => {
    const p = [Float64Array.of(1)];
    const opt = new Sgd(0);
    opt.step(p, [Float64Array.of(1)], 0.1);
    expect(p[0][0]).toBeCloseTo(0.9, 15);
    opt.step(p, [Float64Array.of(1)], 0.1);
    expect(p[0][0]).toBeCloseTo(0.9 - 0.1 * 1.9, 15);
  });

  it("round-trips its state for resumes", () => {
    const a = new Adam(0);
    const p = [Float64Array.of(1, 2)];
    a.step(p, [Float64Array.of(1, 1)], 0.1);
    const b = new Adam(0);
    b.load(a.state());
    const p2 = Float64Array.from(p[0]);
    a.step(p, [Float64Array.of(0.3, -1)], 0.1);
    b.step([p2], [Float64Array.of(0.3, -1)], 0.1);
    expect(Array.from(p2)).toEqual(Array.from(p[0]));
  });
});

describe("the ca1 recipe (official InfLoRA_CA1)", () => {
  // The training keys of the official configs/cifar100_infloraca.json.
  const official = {
    dataset: "cifar100",
    data_path: "data",
    weights: "w.safetensors",
    init_cls: 10,
    increment: 10,
    total_sessions: 10,
    init_epoch: 20,
    optim: "sgd",
    epochs: 20,
    fc_lrate: 0.01,
    lrate: 0.001,
    lrate_decay: 0.1,
    batch_size: 128,
    weight_decay: 0.001,
    rank: 5,
    lamb: 0.95,
    lame: 1.0,
  };
  const cfg = parseConfig(JSON.stringify(official), "/x/ca1.json");

  it("decays lrate and fc_lrate by lrate_decay at epoch 18, on every task including task 0", () => {
    for (const task of [0, 3]) {
      const r = taskOptimizer("ca1", cfg, task);
      expect(r.epochs).toBe(20);
      expect(r.optimizer).toBeInstanceOf(Sgd);
      for (const e of [0, 17]) {
        expect(r.learningRate(e)).toBe(0.001);
        expect(r.headLearningRate(e)).toBe(0.01);
      }
      for (const e of [18, 19]) {
        expect(r.learningRate(e)).toBeCloseTo(1e-4, 18);
        expect(r.headLearningRate(e)).toBeCloseTo(1e-3, 17);
      }
    }
  });

  it("uses weight_decay (not init_weight_decay) in its SGD", () => {
    const r = taskOptimizer(
      "ca1",
      parseConfig(JSON.stringify({ ...official, init_weight_decay: 0.5 }), "c.json"),
      0,
    );
    const p = [Float64Array.of(2)];
    r.optimizer.step(p, [Float64Array.of(0)], 1);
    expect(p[0][0]).toBeCloseTo(2 - 0.001 * 2, 15);
  });

  it("takes Adam at lrate for adapters and head alike with optim adam", () => {
    const r = taskOptimizer("ca1", parseConfig(JSON.stringify({ ...official, optim: "adam" }), "c.json"), 0);
    expect(r.optimizer).toBeInstanceOf(Adam);
    for (const e of [0, 5, 19]) expect(r.headLearningRate(e)).toBe(r.learningRate(e));
    expect(r.learningRate(0)).toBe(0.001);
  });

  it("names the missing keys and the file", () => {
    const { fc_lrate: _f, ...noFc } = official;
    expect(() => taskOptimizer("ca1", parseConfig(JSON.stringify(noFc), "/x/a.json"), 0)).toThrow(
      /\/x\/a\.json: .*needs "fc_lrate"/,
    );
    const { lrate_decay: _d, ...noDecay } = official;
    expect(() => taskOptimizer("ca1", parseConfig(JSON.stringify(noDecay), "/x/b.json"), 0)).toThrow(
      /\/x\/b\.json: .*needs "lrate_decay"/,
    );
  });

  it("keeps the reference recipe's single rate for the head", () => {
    const r = taskOptimizer("reference", cfg, 1);
    for (const e of [0, 7, 19]) expect(r.headLearningRate(e)).toBe(r.learningRate(e));
  });
});

describe("per-tensor learning rates", () => {
  it("SGD and Adam step each tensor at its own rate, as torch's parameter groups", () => {
    for (const make of [() => new Sgd(0.01), () => new Adam(0.01)]) {
      const together = [Float64Array.of(1, -1), Float64Array.of(0.5)];
      const grads = () => [Float64Array.of(0.3, 0.2), Float64Array.of(-0.4)];
      const both = make();
      both.step(together, grads(), [0.1, 0.02]);
      both.step(together, grads(), [0.1, 0.02]);
      const a = [Float64Array.of(1, -1)];
      const b = [Float64Array.of(0.5)];
      const optA = make();
      const optB = make();
      for (let k = 0; k < 2; k++) {
        optA.step(a, [grads()[0]], 0.1);
        optB.step(b, [grads()[1]], 0.02);
      }
      expect(Array.from(together[0])).toEqual(Array.from(a[0]));
      expect(Array.from(together[1])).toEqual(Array.from(b[0]));
      expect(() => make().step(together, grads(), [0.1])).toThrow(/1 learning rates for 2 tensors/);
    }
  });
});
