/**
 * The one-folder bundle (`npm run bundle`, scripts/bundle.ts) copied to an empty folder, where no
 * node_modules can be found: it runs the reference fixture bit-identical to the normal install, and it
 * serves as a worker for a normal coordinator. The config reads the fixture's PNG folder (sharp's addon
 * and libvips from the bundle) and computes on wasm (the bundle's wasm binaries); the coordinator's linear
 * algebra uses the bundle's OpenBLAS addon.
 */
import { execFile, fork } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { train } from "../../cli/train.js";
import {
  type ChildWorker,
  expectSameRun,
  listening,
  shortConfig,
  stopWorkers,
} from "../helpers/distributed.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const tmp = mkdtempSync(path.join(os.tmpdir(), "inflora-bundle-"));
const bundle = path.join(tmp, "bundle");
const cli = path.join(bundle, "inflora.mjs");
const workers: ChildWorker[] = [];
let config: string;
const reference = path.join(tmp, "reference");

function run(
  cmd: string,
  args: string[],
  cwd: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, timeout: 600_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

function sizeOf(p: string): number {
  const s = statSync(p);
  return s.isDirectory() ? readdirSync(p).reduce((sum, f) => sum + sizeOf(path.join(p, f)), 0) : s.size;
}

beforeAll(async () => {
  // Written to a folder of its own, then copied: the test runs from wherever the copy lands.
  const built = await run("npm", ["run", "bundle", "--", "--out", path.join(tmp, "built")], ROOT);
  expect(built.code, built.stderr.slice(-3000)).toBe(0);
  cpSync(path.join(tmp, "built"), bundle, { recursive: true });
  rmSync(path.join(tmp, "built"), { recursive: true });
  config = shortConfig(tmp, { dataset: "folder", data_path: "folder" });
  // The normal install: this repository's code in this process.
  await train({ config, out: reference, workers: 1, inProcess: true, backend: "wasm", resume: false });
}, 600_000);

afterAll(() => {
  stopWorkers(workers);
  rmSync(tmp, { recursive: true, force: true });
});

describe("dist/bundle in an empty folder", () => {
  it("has nothing to find packages in and stays under 60 MiB", () => {
    for (let dir = bundle; path.dirname(dir) !== dir; dir = path.dirname(dir)) {
      expect(existsSync(path.join(dir, "node_modules")), `${dir}/node_modules`).toBe(false);
    }
    const mib = sizeOf(bundle) / 2 ** 20;
    process.stdout.write(`dist/bundle: ${mib.toFixed(1)} MiB\n`);
    expect(mib).toBeLessThan(60);
  });

  it("runs the fixture (coordinator and a local worker process) bit-identical to the normal install", async () => {
    const out = path.join(tmp, "bundle-run");
    const r = await run(
      process.execPath,
      [
        cli,
        "train",
        "--config",
        config,
        "--out",
        out,
        "--workers",
        "1",
        "--backend",
        "wasm",
        "--transport-threads",
        "1",
      ],
      tmp,
    );
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    expectSameRun(reference, out, (ok, what) => expect(ok, what).toBe(true));
  }, 600_000);

  it("starts the webgpu backend from its own copy of Dawn (forced onto the software adapter)", async () => {
    // A forced backend that cannot start ends the worker before it listens.
    const child = fork(cli, ["worker", "--listen", "127.0.0.1:0", "--backend", "webgpu"], {
      cwd: tmp,
      stdio: ["ignore", "ignore", "pipe", "ipc"],
      env: {
        ...process.env,
        INFLORA_PARENT_IPC: "1",
        INFLORA_LOG_LEVEL: "warn",
        INFLORA_TOKEN: "t".repeat(32),
      },
    });
    let stderr = "";
    child.stderr?.on("data", (d) => {
      stderr += String(d);
    });
    const started = await listening(child, "bundle worker on webgpu").then(
      () => true,
      () => false,
    );
    child.kill("SIGKILL");
    expect(started, stderr.slice(-3000)).toBe(true);
  }, 120_000);

  it("serves as a worker for a normal coordinator, bit-identical", async () => {
    const child = fork(cli, ["worker", "--listen", "127.0.0.1:0", "--backend", "wasm"], {
      cwd: tmp,
      stdio: ["ignore", "ignore", "inherit", "ipc"],
      env: { ...process.env, INFLORA_PARENT_IPC: "1", INFLORA_LOG_LEVEL: "warn" },
    });
    const worker = await listening(child, "bundle worker");
    workers.push(worker);
    const { address } = worker;
    const out = path.join(tmp, "bundle-worker-run");
    await train({ config, out, workers: 0, inProcess: false, workerAddresses: [address], resume: false });
    expectSameRun(reference, out, (ok, what) => expect(ok, what).toBe(true));
  }, 600_000);
});
