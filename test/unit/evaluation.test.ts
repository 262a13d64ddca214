import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { evaluateLogits, npAround2, runMetrics } from "../../coordinator/evaluation.js";
import { EXPECTED_DIR } from "../helpers/reference_compare.js";

describe("evaluation", () => {
  it("rounds as numpy's np.around(x, 2) does (half to even on the scaled value)", () => {
    expect(npAround2((100 * 95) / 160)).toBe(59.38); // 59.375 → 5937.5 → 5938
    expect(npAround2((100 * 25) / 120)).toBe(20.83);
    expect(npAround2(0.125)).toBe(0.12); // 12.5 → 12
    expect(npAround2(0.135)).toBe(0.14); // 13.500000000000002 → 14
  });

  it("computes the reference's forgetting and BWT from its matrix", () => {
    const m = JSON.parse(readFileSync(path.join(EXPECTED_DIR, "metrics.json"), "utf8"));
    const ours = runMetrics(m.curve.cil, m.curve.with_task, m.accuracy_matrix);
    expect(ours.final_accuracy).toBe(m.final_accuracy);
    expect(ours.average_accuracy).toBeCloseTo(m.average_accuracy, 12);
    expect(ours.forgetting).toBeCloseTo(m.forgetting, 12);
    expect(ours.bwt).toBeCloseTo(m.bwt, 12);
    expect(runMetrics([50], [60], [[50]]).forgetting).toBeNull();
  });

  it("takes the first maximum and evaluates inside the true task's logits", () => {
    const tasks = [
      { classStart: 0, classEnd: 2 },
      { classStart: 2, classEnd: 4 },
    ];
    // sample 0 (label 0): tie between 0 and 3 → 0; sample 1 (label 3): global argmax 0, in-task argmax 3.
    const logits = Float32Array.of(5, 1, 2, 5, 9, 0, 1, 2);
    const ev = evaluateLogits(logits, Int32Array.of(0, 3), tasks);
    expect(Array.from(ev.pred)).toEqual([0, 0]);
    expect(Array.from(ev.predWithTask)).toEqual([0, 3]);
    expect(ev.cil).toBe(50);
    expect(ev.withTask).toBe(100);
    expect(ev.perTask).toEqual([100, 0]);
  });
});
