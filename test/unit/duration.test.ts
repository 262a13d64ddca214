/** Durations on the command line, and the default metrics linger against the shipped scrape intervals. */
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { parseDuration } from "../../common/duration.js";
import { DEFAULT_METRICS_LINGER_MS } from "../../common/metrics_server.js";

const ROOT = path.resolve(import.meta.dirname, "../..");

describe("parseDuration", () => {
  it("reads Prometheus-style durations and bare seconds", () => {
    expect(parseDuration("30s")).toBe(30_000);
    expect(parseDuration("2m")).toBe(120_000);
    expect(parseDuration("1m30s")).toBe(90_000);
    expect(parseDuration("1h")).toBe(3_600_000);
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration("0")).toBe(0);
    expect(parseDuration("45")).toBe(45_000);
  });

  it("refuses anything else, quoting it", () => {
    for (const bad of ["", "s", "30x", "-5s", "5 s", "1m30", "thirty"])
      expect(() => parseDuration(bad), bad).toThrow(`"${bad}" is not a duration`);
  });
});

describe("the default metrics linger", () => {
  it("covers two scrape intervals of every shipped scrape config", () => {
    const seconds = (d: string) => parseDuration(d) / 1000;
    const prom = parse(readFileSync(path.join(ROOT, "deploy/prometheus/prometheus.yml"), "utf8"));
    const intervals = [seconds(prom.global.scrape_interval)];
    for (const job of prom.scrape_configs)
      if (job.scrape_interval) intervals.push(seconds(job.scrape_interval));
    for (const file of ["podmonitor.yaml", "servicemonitor.yaml", "pushgateway/servicemonitor.yaml"]) {
      const m = parse(readFileSync(path.join(ROOT, "deploy/k8s/monitoring", file), "utf8"));
      for (const e of m.spec.podMetricsEndpoints ?? m.spec.endpoints) intervals.push(seconds(e.interval));
    }
    expect(intervals.length).toBeGreaterThan(3);
    expect(DEFAULT_METRICS_LINGER_MS / 1000).toBeGreaterThanOrEqual(2 * Math.max(...intervals));
  });
});
