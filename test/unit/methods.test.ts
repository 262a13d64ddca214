/**
 * Methods are data: every name the config accepts has an entry, each entry's phase table follows from
 * what it declares (no covariance without a projected design or a memory), and no code tests a
 * method's name.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { MODEL_NAMES } from "../../common/config.js";
import { METHODS, methodOf, PHASES, PhaseTable, taskPhases } from "../../coordinator/methods.js";

const ROOT = path.resolve(import.meta.dirname, "../..");

function sources(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir)).flatMap((name) => {
    const rel = path.join(dir, name);
    if (statSync(path.join(ROOT, rel)).isDirectory()) return sources(rel);
    return name.endsWith(".ts") ? [rel] : [];
  });
}

describe("methods", () => {
  it("every model_name the config accepts is a method of that name", () => {
    expect(Object.keys(METHODS).sort()).toEqual([...MODEL_NAMES].sort());
    for (const name of MODEL_NAMES) expect(methodOf({ model_name: name }).name).toBe(name);
  });

  it("InfLoRA's table is the paper's order; the b5 variants keep GPM memory", () => {
    expect(taskPhases(METHODS.InfLoRA)).toEqual([
      "COVARIANCE_PRE",
      "DESIGN",
      "TRAIN",
      "COVARIANCE_POST",
      "DUALGPM",
      "EVAL",
      "CHECKPOINT",
    ]);
    expect(METHODS.InfLoRA.memory).toBe("DualGPM");
    expect(METHODS.InfLoRAb5.memory).toBe("GPM");
    expect(METHODS.InfLoRAb5_domain.memory).toBe("GPM");
    expect(taskPhases(METHODS.InfLoRA_domain)).toEqual(taskPhases(METHODS.InfLoRA));
  });

  it("sequential LoRA has no covariance pass and no memory update", () => {
    const table = new PhaseTable(METHODS.SeqLoRA);
    expect(table.phases).toEqual(["DESIGN", "TRAIN", "EVAL", "CHECKPOINT"]);
    expect(table.first).toBe("DESIGN");
    expect(table.after("TRAIN")).toBe("EVAL");
    expect(table.after("CHECKPOINT")).toBe("NEXT_TASK");
    expect(table.has("COVARIANCE_PRE")).toBe(false);
    expect(() => table.after("DUALGPM")).toThrow(/SeqLoRA has no phase DUALGPM/);
  });

  it("a method's extra phases run after the memory update, before evaluation", () => {
    const withExtra = { ...METHODS.InfLoRAb5, extraPhases: ["DESIGN"] as const };
    const phases = taskPhases(withExtra);
    expect(phases.slice(4)).toEqual(["DUALGPM", "DESIGN", "EVAL", "CHECKPOINT"]);
  });

  it("the CA variants keep InfLoRAb5's memory and design, then class statistics and alignment", () => {
    for (const m of [METHODS.InfLoRA_CA, METHODS.InfLoRA_CA1]) {
      expect([m.design, m.memory]).toEqual([METHODS.InfLoRAb5.design, METHODS.InfLoRAb5.memory]);
      expect(taskPhases(m).slice(5)).toEqual([
        "CLASS_STATS",
        "EVAL_BEFORE_ALIGNMENT",
        "ALIGNMENT",
        "EVAL",
        "CHECKPOINT",
      ]);
    }
    // Every method with an ALIGNMENT phase says how to align, and only those.
    for (const m of Object.values(METHODS))
      expect(taskPhases(m).includes("ALIGNMENT"), m.name).toBe(m.alignment !== undefined);
  });

  it("every phase of every table is one the metrics know", () => {
    for (const m of Object.values(METHODS)) for (const p of taskPhases(m)) expect(PHASES).toContain(p);
  });

  it("no source tests a method by its name", () => {
    const tests = /model_name\s*[!=]==|model_name\.(startsWith|endsWith|includes)|startsWith\("InfLoRA/;
    const offenders = ["cli", "common", "coordinator", "worker", "demo", "bench"]
      .flatMap(sources)
      .filter((f) => tests.test(readFileSync(path.join(ROOT, f), "utf8")));
    expect(offenders).toEqual([]);
  });
});
