/**
 * The reference-fixture assertions shared by the fixture run tests (one per backend): every checkpoint and
 * every prediction file of a run directory against test/fixtures/reference/expected, within its README's
 * tolerances.
 */
import path from "node:path";
import { expect } from "vitest";
import {
  compareCheckpoint,
  comparePredictions,
  EXPECTED_DIR,
  FIXTURE_CLASSES_PER_TASK,
  FIXTURE_DEPTH,
  FIXTURE_TASKS,
  taskFile,
  tolerances,
} from "./reference_compare.js";

export { FIXTURE_CLASSES_PER_TASK, FIXTURE_DEPTH, FIXTURE_TASKS, taskFile };

/** `tasks`: how many of the fixture's tasks the run finished (a shortened run on a slow backend). */
export async function expectCheckpointsMatchReference(runDir: string, tasks = FIXTURE_TASKS): Promise<void> {
  const tol = tolerances();
  for (let t = 0; t < tasks; t++) {
    const f = await compareCheckpoint(
      path.join(runDir, "checkpoints", taskFile(t)),
      path.join(EXPECTED_DIR, "checkpoints", taskFile(t)),
      t,
      FIXTURE_DEPTH,
    );
    expect(f.bdist, `task ${t} Bdist`).toBeLessThanOrEqual(tol.bdist);
    expect(f.abrel, `task ${t} ABrel`).toBeLessThanOrEqual(tol.abrel);
    expect(f.headrel, `task ${t} headRel`).toBeLessThanOrEqual(tol.headrel);
    expect(f.gpmdist, `task ${t} GPMdist`).toBeLessThanOrEqual(tol.gpmdist);
    expect(f.types, `task ${t} DualGPM types`).toEqual(f.expectedTypes);
    expect(f.widths, `task ${t} DualGPM widths`).toEqual(f.expectedWidths);
  }
}

export async function expectPredictionsMatchReference(runDir: string, tasks = FIXTURE_TASKS): Promise<void> {
  const tol = tolerances();
  for (let t = 0; t < tasks; t++) {
    const p = await comparePredictions(
      path.join(runDir, "predictions", taskFile(t)),
      path.join(EXPECTED_DIR, "predictions", taskFile(t)),
      tol.tie_rel,
      FIXTURE_CLASSES_PER_TASK,
    );
    expect(p.labelsEqual, `task ${t}: labels in the same order`).toBe(true);
    expect(p.predAgree, `task ${t}: pred agreement`).toBeGreaterThanOrEqual(tol.pred_agree);
    expect(p.predWithTaskAgree, `task ${t}: pred_with_task agreement`).toBeGreaterThanOrEqual(tol.pred_agree);
  }
}
