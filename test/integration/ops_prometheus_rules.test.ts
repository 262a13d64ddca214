/**
 * Recording rules and alerts: `promtool check rules`, the rule unit tests (`promtool test rules`), the
 * example Prometheus config, the PrometheusRule copy for the operator, and the metrics the rules read.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { exportedMetricNames, promqlMetricNames, promtool, run } from "./ops_tools.js";

const DIR = path.join(import.meta.dirname, "../../deploy/prometheus");
const RULES = path.join(DIR, "rules/inflora.rules.yaml");

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
}

describe("Prometheus rules", () => {
  it("pass promtool check rules", async () => {
    const { stdout } = await run(promtool(), ["check", "rules", RULES]);
    expect(stdout).toMatch(/SUCCESS: \d+ rules found/);
  });

  it("pass their unit tests (promtool test rules)", async () => {
    const { stdout } = await run(promtool(), ["test", "rules", "inflora.rules.test.yaml"], {
      cwd: path.join(DIR, "tests"),
    });
    expect(stdout).toContain("SUCCESS");
  });

  it("have an alert for each failure the issue names, each with a unit test", () => {
    const groups = parse(readFileSync(RULES, "utf8")).groups as Array<{ rules: Rule[] }>;
    const alerts = groups.flatMap((g) => g.rules).flatMap((r) => (r.alert ? [r.alert] : []));
    for (const a of [
      "InfloraNoProgress",
      "InfloraWorkerFlapping",
      "InfloraNaNLoss",
      "InfloraOldTaskAccuracyDrop",
    ]) {
      expect(alerts).toContain(a);
    }
    const tests = readFileSync(path.join(DIR, "tests/inflora.rules.test.yaml"), "utf8");
    for (const a of alerts) expect(tests, `no unit test for ${a}`).toContain(`alertname: ${a}`);
  });

  it("read only metrics the trainer exports (or their own recordings)", async () => {
    const exported = await exportedMetricNames();
    const groups = parse(readFileSync(RULES, "utf8")).groups as Array<{ rules: Rule[] }>;
    const rules = groups.flatMap((g) => g.rules);
    const recorded = new Set(rules.flatMap((r) => (r.record ? [r.record] : [])));
    const unknown = rules
      .flatMap((r) => promqlMetricNames(r.expr))
      .filter((n) => !exported.has(n) && !recorded.has(n) && n !== "up");
    expect(unknown).toEqual([]);
  });

  it("are the same in the PrometheusRule the operator loads", () => {
    const plain = parse(readFileSync(RULES, "utf8"));
    const cr = parse(readFileSync(path.join(DIR, "prometheusrule.yaml"), "utf8"));
    expect(cr.kind).toBe("PrometheusRule");
    expect(cr.spec.groups).toEqual(plain.groups);
  });

  it("are loaded by the example Prometheus config (promtool check config)", async () => {
    const { stdout } = await run(promtool(), ["check", "config", path.join(DIR, "prometheus.yml")]);
    expect(stdout).toContain("SUCCESS");
  });
});
