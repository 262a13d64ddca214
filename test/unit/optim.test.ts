import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { Adam, Sgd } from "../../coordinator/optim/optimizer.js";
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
