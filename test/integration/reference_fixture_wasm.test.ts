/**
 * The reference fixture run on the wasm backend. reference_fixture.test.ts runs on the default backend,
 * which is `blas` wherever `npm run build:native` built the addon (CI builds it); wasm is what every
 * install falls back to and what the demo uses, so its model path is held to the same reference values.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { train } from "../../cli/train.js";
import { currentBackend } from "../../worker/backend.js";
import {
  compareCheckpoint,
  comparePredictions,
  EXPECTED_DIR,
  REFERENCE_DIR,
  tolerances,
} from "../helpers/reference_compare.js";

const TASKS = 5;
const name = (t: number) => `task-${String(t).padStart(2, "0")}.safetensors`;
const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-fixture-wasm-"));
const tol = tolerances();

beforeAll(async () => {
  await train({
    config: path.join(REFERENCE_DIR, "tiny_config.json"),
    out: tmp,
    workers: 1,
    inProcess: true,
    resume: false,
    backend: "wasm",
  });
}, 600_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("the reference fixture run on wasm", () => {
  it("ran on wasm", () => {
    expect(currentBackend()?.name).toBe("wasm");
  });

  it("matches every checkpoint and the predictions within the reference tolerances", async () => {
    for (let t = 0; t < TASKS; t++) {
      const f = await compareCheckpoint(
        path.join(tmp, "checkpoints", name(t)),
        path.join(EXPECTED_DIR, "checkpoints", name(t)),
        t,
        3,
      );
      expect(f.bdist, `task ${t} Bdist`).toBeLessThanOrEqual(tol.bdist);
      expect(f.abrel, `task ${t} ABrel`).toBeLessThanOrEqual(tol.abrel);
      expect(f.headrel, `task ${t} headRel`).toBeLessThanOrEqual(tol.headrel);
      expect(f.gpmdist, `task ${t} GPMdist`).toBeLessThanOrEqual(tol.gpmdist);
      expect(f.widths, `task ${t} DualGPM widths`).toEqual(f.expectedWidths);
      const p = await comparePredictions(
        path.join(tmp, "predictions", name(t)),
        path.join(EXPECTED_DIR, "predictions", name(t)),
        tol.tie_rel,
        4,
      );
      expect(p.predAgree, `task ${t}: pred agreement`).toBeGreaterThanOrEqual(tol.pred_agree);
    }
  });
});
