/** `inflora train --speculation`: on, off, or a late factor; anything else is refused by name. */
import { describe, expect, it } from "vitest";
import { speculation } from "../../cli/commands/train.js";
import { DEFAULT_LATE_FACTOR } from "../../coordinator/worker_pool.js";

describe("--speculation", () => {
  it("reads on, off and a late factor", () => {
    expect(speculation("on")).toEqual({ lateFactor: DEFAULT_LATE_FACTOR });
    expect(speculation("off")).toBe(false);
    expect(speculation("2.5")).toEqual({ lateFactor: 2.5 });
  });

  it("refuses a factor below 1 and words it does not know", () => {
    for (const bad of ["0.5", "", "maybe", "NaN"])
      expect(() => speculation(bad)).toThrow(/on, off, or a late factor ≥ 1/);
  });
});
