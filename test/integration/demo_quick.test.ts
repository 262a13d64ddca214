/**
 * The quick demo end to end through the CLI, as CI runs it: backbone pretraining, the three runs, the
 * report with its figure, the table on stdout, and InfLoRA ahead of sequential LoRA.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { DemoSummary } from "../../demo/report.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const TSX = createRequire(import.meta.url).resolve("tsx");
const out = mkdtempSync(path.join(os.tmpdir(), "inflora-demo-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

function demo(): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [
        // As `npm run demo` runs it: the TypeScript sources through tsx (bin/inflora.js runs the build).
        "--import",
        TSX,
        path.join(ROOT, "cli", "main.ts"),
        "--log-format",
        "json",
        "--log-level",
        "info",
        "demo",
        "--quick",
        "--out",
        out,
        "--workers",
        "2",
      ],
      { cwd: ROOT, timeout: 600_000, maxBuffer: 64 << 20 },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe("npm run demo -- --quick", () => {
  it("writes the report and InfLoRA beats sequential LoRA", async () => {
    const r = await demo();
    process.stdout.write(`${r.stdout}\n`);
    expect(r.code, r.stderr.slice(-2000)).toBe(0);
    expect(r.stdout).toMatch(/method\s+final A_T %\s+average Ā %\s+forgetting\s+BWT/);
    expect(r.stdout).toContain("stands in for ImageNet-21k pretraining");
    // Not a terminal: progress arrives as log lines, not bars.
    expect(r.stderr).toContain('"phase":"pretrain backbone"');

    const report = readFileSync(path.join(out, "report.md"), "utf8");
    expect(report).toContain("stands in for ImageNet-21k pretraining");
    expect(report).toContain("![accuracy matrices and A_t curves](accuracy.svg)");
    for (const f of [
      "accuracy.svg",
      "accuracy.png",
      "inflora/metrics.json",
      "seqlora/metrics.json",
      "joint/metrics.json",
    ]) {
      expect(existsSync(path.join(out, f)), f).toBe(true);
    }
    const svg = readFileSync(path.join(out, "accuracy.svg"), "utf8");
    expect(svg).toContain("InfLoRA: accuracy matrix");
    expect(svg).toContain("Joint upper bound");

    const summary = JSON.parse(readFileSync(path.join(out, "summary.json"), "utf8")) as DemoSummary;
    expect(summary.mode).toBe("quick");
    const { inflora, seqlora, joint } = summary.methods;
    expect(inflora.final).toBeGreaterThan(seqlora.final);
    expect(joint.final).toBeGreaterThan(inflora.final);
    const runJson = JSON.parse(readFileSync(path.join(out, "inflora", "run.json"), "utf8"));
    expect(runJson.workers).toBe(2);
    expect(runJson.task_sizes).toEqual([2, 2, 2, 2, 2]);
  }, 600_000);
});
