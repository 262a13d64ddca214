/**
 * The `webgpu` backend (Dawn through npm `webgpu`) held to the same numbers as the CPU backends, on
 * whatever adapter the machine has — in CI Mesa's lavapipe, a software Vulkan device, forced with
 * `--backend webgpu`: gradients against finite differences, a flat tensor count and flat GPU buffer bytes
 * over 50 steps, the reference fixture within its tolerances, and 1 and 2 workers giving the same numbers
 * bit for bit. lavapipe runs a few hundred dispatches a second, so the fixture run stops after its second
 * task (the first with a finished adapter folded in and a DualGPM basis to project against) and the
 * 2-worker run after two epochs of the first task; both compare against the full expectations of those
 * tasks. A machine without a Vulkan device fails here, naming the command that installs one.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { train } from "../../cli/train.js";
import { currentBackend, selectBackend } from "../../worker/backend.js";
import { WorkerEngine } from "../../worker/engine.js";
import { VULKAN_INSTALL_HINT } from "../../worker/webgpu_device.js";
import { expectGradientsMatchFiniteDifferences } from "../helpers/gradient_check.js";
import { expectFlatMemory, gpuBytes } from "../helpers/memory_check.js";
import { REFERENCE_DIR } from "../helpers/reference_compare.js";
import {
  expectCheckpointsMatchReference,
  expectPredictionsMatchReference,
} from "../helpers/reference_expect.js";

const config = path.join(REFERENCE_DIR, "tiny_config.json");
const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-webgpu-"));
const FIXTURE_TASKS_RUN = 2;

/** A run stopped at a step boundary: what every task before it wrote stays on disk. */
class StopRun extends Error {}

type StepLoss = { task: number; epoch: number; step: number; loss: number };

beforeAll(async () => {
  try {
    await selectBackend("webgpu");
  } catch (err) {
    throw new Error(
      `${(err as Error).message}\nThe webgpu tests need the optional packages (npm ci installs webgpu and @tensorflow/tfjs-backend-webgpu) and a Vulkan device; on Debian: ${VULKAN_INSTALL_HINT}`,
    );
  }
}, 120_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const events = (dir: string) =>
  readFileSync(path.join(dir, "events.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));

describe("the webgpu backend", () => {
  it("runs on the adapter it describes", () => {
    const info = currentBackend();
    expect(info?.name).toBe("webgpu");
    expect(info?.tfBackend).toBe("webgpu");
    expect(info?.adapter?.vendor, "adapter vendor").toBeTruthy();
    expect(info?.adapter?.description || info?.adapter?.device, "adapter description").toBeTruthy();
  });

  it("gives gradients equal to central finite differences", async () => {
    await expectGradientsMatchFiniteDifferences();
  }, 600_000);

  it("keeps its tensor count and its GPU buffer bytes flat over 50 steps", async () => {
    const engine = new WorkerEngine({ backend: "webgpu" });
    try {
      await expectFlatMemory(engine, { shardsPerStep: 1 });
      expect(gpuBytes(), "webgpu reports the bytes in its GPU buffers").toBeGreaterThan(0);
    } finally {
      await engine.close();
    }
  }, 900_000);

  const inProcessLosses: StepLoss[] = [];
  const fixtureRun = path.join(tmp, "fixture");

  it(`matches the reference fixture's first ${FIXTURE_TASKS_RUN} tasks within its tolerances`, async () => {
    await expect(
      train({
        config,
        out: fixtureRun,
        workers: 1,
        inProcess: true,
        resume: false,
        backend: "webgpu",
        onStep: (s) => {
          if (s.task === FIXTURE_TASKS_RUN) throw new StopRun();
          inProcessLosses.push({ task: s.task, epoch: s.epoch, step: s.step, loss: s.loss });
        },
      }),
    ).rejects.toBeInstanceOf(StopRun);
    await expectCheckpointsMatchReference(fixtureRun, FIXTURE_TASKS_RUN);
    await expectPredictionsMatchReference(fixtureRun, FIXTURE_TASKS_RUN);
    const run = JSON.parse(readFileSync(path.join(fixtureRun, "run.json"), "utf8"));
    expect(run.worker_devices[0].backend).toBe("webgpu");
    expect(run.worker_devices[0].adapter.vendor).toBe(currentBackend()?.adapter?.vendor);
  }, 1_200_000);

  it("gives bit-identical numbers on 2 worker processes as on 1", async () => {
    expect(inProcessLosses.length, "the fixture run above ran").toBeGreaterThan(0);
    const out = path.join(tmp, "two-workers");
    const losses: StepLoss[] = [];
    await expect(
      train({
        config,
        out,
        workers: 2,
        resume: false,
        backend: "webgpu",
        onStep: (s) => {
          if (s.epoch === 2) throw new StopRun();
          losses.push({ task: s.task, epoch: s.epoch, step: s.step, loss: s.loss });
        },
      }),
    ).rejects.toBeInstanceOf(StopRun);
    // Each step's loss is the float64 reduction of every micro-shard's loss under parameters that carry
    // all earlier steps' gradients, after covariance and the design of B: equal bits end to end.
    expect(losses.length).toBeGreaterThan(2);
    expect(losses).toEqual(inProcessLosses.slice(0, losses.length));
    const joined = events(out).filter((e) => e.event === "worker_joined");
    expect(joined).toHaveLength(2);
    for (const e of joined) {
      expect(e.backend).toBe("webgpu");
      expect(e.adapter.vendor).toBe(currentBackend()?.adapter?.vendor);
      expect(e.adapter.description).toBe(currentBackend()?.adapter?.description);
    }
  }, 1_200_000);
});
