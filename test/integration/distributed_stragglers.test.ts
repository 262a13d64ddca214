/**
 * A straggler over real worker processes and gRPC: three workers, one answering correctly but 5× slower
 * (test/helpers/misbehaving_worker.ts, MISBEHAVE=slow). The pool re-issues its late blocks to the idle
 * workers (docs/design.md, "Stragglers"); the run finishes bit-identical to a clean 1-worker run, the
 * straggler is never failed for being slow, and the re-issues show in the events and the metrics.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { train } from "../../cli/train.js";
import {
  type ChildWorker,
  events,
  expectSameRun,
  forkWorker,
  shortConfig,
  startWorker,
  stopWorkers,
  sumSeries,
} from "../helpers/distributed.js";
import { recordFault } from "../helpers/fault_table.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-stragglers-"));
// One epoch per task keeps the test lean; the clean run uses the same config.
const config = shortConfig(tmp, { init_epoch: 1, epochs: 1 });
const reference = path.join(tmp, "reference");
const spawned: ChildWorker[] = [];
const same = (cond: boolean, what: string) => expect(cond, what).toBe(true);
const MISBEHAVING = path.resolve(import.meta.dirname, "../helpers/misbehaving_worker.ts");

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

beforeAll(async () => {
  await train({ config, out: reference, workers: 1, inProcess: true, resume: false });
}, 300_000);

afterAll(() => {
  stopWorkers(spawned);
  rmSync(tmp, { recursive: true, force: true });
});

describe("stragglers", () => {
  it("one worker 5× slower: its late blocks are re-issued and the run is bit-identical to one worker", async () => {
    const slow = await forkWorker(MISBEHAVING, [], { MISBEHAVE: "slow", SLOW_FACTOR: "5" });
    const fast = await Promise.all([startWorker(), startWorker()]);
    spawned.push(slow, ...fast);
    const out = path.join(tmp, "straggler");
    const metricsPort = await freePort();
    let page: Promise<string> | undefined;
    await train({
      config,
      out,
      // The straggler first: it is given the larger block of each step's four micro-shards.
      workerAddresses: [slow.address, ...fast.map((w) => w.address)],
      // Through the transport threads: the loser's cancellation crosses the thread boundary.
      transportThreads: 2,
      metricsPort,
      metricsLingerMs: 0,
      resume: false,
      onStep: () => {
        page = fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text());
      },
    });
    const log = events(out);
    const reissued = log.filter((e) => e.event === "shards_reissued");
    const settled = log.filter((e) => e.event === "reissue_settled");
    const failed = log.filter((e) => e.event === "worker_failed");
    const identical = (() => {
      try {
        expectSameRun(reference, out, same);
        return true;
      } catch {
        return false;
      }
    })();
    recordFault({
      fault: "one worker 5× slower (a straggler)",
      tried: 1,
      survived: 1,
      bitIdentical: identical ? 1 : 0,
      detectionMs: reissued.length ? Number(reissued[0].late_ms) : null,
      detail:
        `${reissued.length} blocks re-issued, the copy first ${settled.filter((e) => e.winner === "copy").length}×; ` +
        "detection: from the late block's start to its first re-issue",
    });
    expectSameRun(reference, out, same);
    expect(reissued.length).toBeGreaterThan(0);
    // Mostly the straggler's blocks (a fast worker's block may be late once under load, harmlessly).
    const ofStraggler = reissued.filter((e) => e.late_worker === "static-0").length;
    expect(ofStraggler).toBeGreaterThan(reissued.length / 2);
    expect(failed).toEqual([]);
    expect(settled.some((e) => e.winner === "copy")).toBe(true);
    const text = await page!;
    expect(sumSeries(text, /^inflora_shard_reissues_total\{/)).toBeGreaterThan(0);
    expect(sumSeries(text, /^inflora_reissue_wins_total\{.*winner="copy"/)).toBeGreaterThan(0);
  }, 300_000);
});
