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
import { REFERENCE_DIR } from "../helpers/reference_compare.js";
import {
  expectCheckpointsMatchReference,
  expectPredictionsMatchReference,
} from "../helpers/reference_expect.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-fixture-wasm-"));

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
    await expectCheckpointsMatchReference(tmp);
    await expectPredictionsMatchReference(tmp);
  });
});
