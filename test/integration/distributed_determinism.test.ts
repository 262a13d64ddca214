/**
 * The same numbers whatever runs the micro-shards: in-process, one worker process and three worker
 * processes over gRPC give bit-identical checkpoints, predictions and metrics.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { train } from "../../cli/train.js";
import { expectSameRun, shortConfig } from "../helpers/distributed.js";

const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-determinism-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const config = shortConfig(tmp);
const same = (cond: boolean, what: string) => expect(cond, what).toBe(true);

describe("determinism across workers", () => {
  it("in-process, --workers 1 and --workers 3 (gRPC clients on the main thread or on two transport threads) give bit-identical runs", async () => {
    const inProcess = path.join(tmp, "in-process");
    const one = path.join(tmp, "one");
    const three = path.join(tmp, "three");
    const threaded = path.join(tmp, "three-threaded");
    await train({ config, out: inProcess, workers: 1, inProcess: true, resume: false });
    await train({ config, out: one, workers: 1, transportThreads: 0, resume: false });
    await train({ config, out: three, workers: 3, transportThreads: 0, resume: false });
    await train({ config, out: threaded, workers: 3, transportThreads: 2, resume: false });
    expectSameRun(inProcess, one, same);
    expectSameRun(inProcess, three, same);
    expectSameRun(inProcess, threaded, same);
  }, 600_000);
});
