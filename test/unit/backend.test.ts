/** Backend selection in fresh processes (the choice is process-wide), and the native-package guard. */
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { tryNative } from "../../worker/backend.js";

const probe = path.resolve(import.meta.dirname, "../helpers/backend_probe.ts");
const tsx = path.resolve(import.meta.dirname, "../../node_modules/.bin/tsx");

function run(arg: string, env: Record<string, string> = {}): Record<string, unknown> {
  const out = execFileSync(tsx, [probe, arg], { env: { ...process.env, ...env }, encoding: "utf8" });
  return JSON.parse(out.trim().split("\n").at(-1)!);
}

describe("backend selection", () => {
  it("falls back past the native packages to an available backend and says why", () => {
    const info = run("");
    expect(["node-gpu", "webgpu", "node", "blas", "wasm", "cpu"]).toContain(info.name);
    if (info.name === "blas" || info.name === "wasm") {
      // On a machine without libtensorflow and without a hardware GPU adapter, tfjs-node-gpu, webgpu and
      // tfjs-node were tried and skipped; wasm is chosen only when the OpenBLAS addon is not built (passed
      // over without counting as a failure).
      const skipped = info.skipped as string[];
      expect(skipped.length).toBe(3);
      expect(skipped[0]).toMatch(/tfjs-node-gpu/);
      // Passed over with the reason: a software adapter (named by vendor and description), no adapter, or
      // the optional packages missing.
      expect(skipped[1]).toMatch(/^webgpu/);
      expect(skipped[2]).toMatch(/tfjs-node\b/);
    }
  });

  it("honours --backend and INFLORA_BACKEND", () => {
    expect(run("cpu").name).toBe("cpu");
    expect(run("", { INFLORA_BACKEND: "cpu" }).name).toBe("cpu");
  });

  it("refuses an unknown backend name, naming where it came from", () => {
    expect(run("", { INFLORA_BACKEND: "tpu" }).error).toMatch(/INFLORA_BACKEND: unknown backend "tpu"/);
  });

  it("fails loudly when a forced backend is unavailable", () => {
    const info = run("node-gpu");
    if (!info.error) return expect(info.name).toBe("node-gpu"); // a machine where it is installed
    expect(info.error).toMatch(/requested backend node-gpu is not available/);
  });

  it("survives a half-installed native package", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "half-installed-"));
    const broken = path.join(dir, "index.mjs");
    // What tfjs-node does when its libtensorflow download never happened.
    writeFileSync(broken, "throw new Error(\"Cannot find module 'lib/napi-v8/tfjs_binding.node'\");\n");
    await expect(tryNative(pathToFileURL(broken).href)).resolves.toMatch(/not usable \(Cannot find module/);
    const empty = path.join(dir, "empty.mjs");
    writeFileSync(empty, "export {};\n");
    await expect(tryNative(pathToFileURL(empty).href)).resolves.toMatch(
      /backend failed to initialise|did not initialise/,
    );
  });
});
