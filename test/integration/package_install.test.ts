/**
 * The package as a user gets it: `npm pack` (which builds dist/ through `prepare`), then in an empty folder
 * `npm install ./inflora-*.tgz` from the registry, and `npx inflora demo --quick` there. The tarball must
 * hold what the installed command needs and nothing of the repository's development files; the user's
 * project allows our install script (docs/install-scripts.md), so the native addon is built on install.
 */
import { execFile } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DemoSummary } from "../../demo/report.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const work = mkdtempSync(path.join(os.tmpdir(), "inflora-package-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { cwd, env: { ...process.env, ...env }, timeout: 1_200_000, maxBuffer: 64 << 20 },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

interface PackResult {
  filename: string;
  size: number;
  files: { path: string; size: number }[];
}

let pack: PackResult;
const user = path.join(work, "user");
const installed = path.join(user, "node_modules", "inflora");

beforeAll(async () => {
  const r = await run("npm", ["pack", "--json", "--pack-destination", work], ROOT);
  expect(r.code, r.stderr.slice(-3000)).toBe(0);
  pack = (JSON.parse(r.stdout) as PackResult[])[0];
}, 300_000);

describe("npm pack", () => {
  it("holds the compiled CLI, the addon's sources, the .proto files, configs and demo data only", () => {
    const paths = pack.files.map((f) => f.path);
    for (const needed of [
      "package.json",
      "README.md",
      "bin/inflora.js",
      "dist/cli/main.js",
      "dist/worker/data/load_worker.js",
      "dist/coordinator/linalg/map-worker.js",
      "dist/coordinator/transport/transport_thread.js",
      "native/build.mjs",
      "native/binding.gyp",
      "native/src/addon.cc",
      "proto/inflora/v1/worker.proto",
      "configs/demo_inflora.json",
      "docs/install-scripts.md",
    ]) {
      expect(paths, needed).toContain(needed);
    }
    expect(paths.some((p) => p.startsWith("data/demo/"))).toBe(true);
    const unwanted = paths.filter(
      (p) =>
        /^(test|bench|deploy|scripts|node_modules|native\/build)\//.test(p) ||
        p.startsWith("dist/bundle/") ||
        (p.endsWith(".ts") && !p.endsWith(".d.ts")) ||
        p.endsWith(".map"),
    );
    expect(unwanted).toEqual([]);
    process.stdout.write(
      `${pack.filename}: ${(pack.size / 2 ** 20).toFixed(2)} MiB, ${pack.files.length} files\n`,
    );
  });
});

describe("npm install ./inflora-*.tgz in an empty folder", () => {
  beforeAll(async () => {
    mkdirSync(user);
    copyFileSync(path.join(work, pack.filename), path.join(user, pack.filename));
    // The user's allowScripts as docs/install-scripts.md gives it, with the tarball's path as our key.
    // --strict-allow-scripts fails the install on any install script that it leaves unreviewed.
    const allowScripts = {
      [`file:${path.join(user, pack.filename)}`]: true,
      "@tensorflow/tfjs-node": true,
      "@tensorflow/tfjs-node-gpu": true,
      webgpu: false,
      protobufjs: false,
      "core-js": false,
    };
    writeFileSync(
      path.join(user, "package.json"),
      JSON.stringify({ name: "inflora-user", private: true, allowScripts }),
    );
    // CI has the addon's build tools: a failed build must fail the install, not pass silently.
    const r = await run(
      "npm",
      ["install", `./${pack.filename}`, "--strict-allow-scripts", "--no-audit", "--no-fund"],
      user,
      { INFLORA_NATIVE_STRICT: "1" },
    );
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
  }, 900_000);

  it("builds the native addon through our allowed postinstall and installs no dev dependency", () => {
    expect(existsSync(path.join(installed, "native", "build", "Release", "inflora_native.node"))).toBe(true);
    for (const dev of ["tsx", "typescript", "vitest", "@biomejs/biome"]) {
      expect(existsSync(path.join(user, "node_modules", dev)), dev).toBe(false);
    }
  });

  it("runs `npx inflora demo --quick`", async () => {
    const out = path.join(user, "demo");
    const help = await run("npx", ["inflora", "--help"], user);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toContain("demo");

    const r = await run("npx", ["inflora", "--log-level", "warn", "demo", "--quick", "--out", out], user);
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    expect(r.stdout).toMatch(/method\s+final A_T %\s+average Ā %\s+forgetting\s+BWT/);
    for (const f of ["report.md", "accuracy.svg", "accuracy.png", "inflora/metrics.json"]) {
      expect(existsSync(path.join(out, f)), f).toBe(true);
    }
    const summary = JSON.parse(readFileSync(path.join(out, "summary.json"), "utf8")) as DemoSummary;
    expect(summary.mode).toBe("quick");
    expect(summary.methods.inflora.final).toBeGreaterThan(summary.methods.seqlora.final);
    const runJson = JSON.parse(readFileSync(path.join(out, "inflora", "run.json"), "utf8"));
    // The version is read from the installed package.json, found from dist/ (common/package_files.ts).
    expect(runJson.versions.inflora).toBe(
      JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")).version,
    );
  }, 1_200_000);
});
