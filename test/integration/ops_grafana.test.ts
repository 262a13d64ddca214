/**
 * The Grafana dashboard and its provisioning files: valid JSON and YAML, and every metric a panel, a
 * template variable or an annotation queries is one the coordinator or a worker exports.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { exportedMetricNames, promqlMetricNames } from "./ops_tools.js";

const GRAFANA = path.join(import.meta.dirname, "../../deploy/grafana");
/** Series Prometheus itself or the default process collectors provide. */
const NOT_OURS = new Set(["up", "process_resident_memory_bytes"]);

interface Panel {
  title?: string;
  type: string;
  targets?: Array<{ expr?: string }>;
  panels?: Panel[];
  transformations?: Array<{ id: string; options: Record<string, unknown> }>;
  fieldConfig?: { defaults?: { mappings?: Array<{ options: Record<string, { text: string }> }> } };
}

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

function dashboards(): Array<{ file: string; json: Record<string, unknown> }> {
  const dir = path.join(GRAFANA, "dashboards");
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .map((f) => ({
      file: f,
      json: JSON.parse(readFileSync(path.join(dir, f), "utf8")) as Record<string, unknown>,
    }));
}

describe("Grafana dashboard", () => {
  it("is valid JSON with a uid, a title and panels", () => {
    const list = dashboards();
    expect(list.map((d) => d.file)).toContain("inflora-run.json");
    for (const { json } of list) {
      expect(json.uid).toMatch(/^[a-z0-9-]+$/);
      expect(typeof json.title).toBe("string");
      const panels = allPanels(json.panels as Panel[]);
      expect(panels.length).toBeGreaterThan(10);
      const ids = (json.panels as Array<{ id: number }>).map((p) => p.id);
      expect(new Set(ids).size).toBe(ids.length);
    }
  });

  it("shows what the issue asks for", () => {
    const { json } = dashboards().find((d) => d.file === "inflora-run.json")!;
    const panels = allPanels(json.panels as Panel[]);
    const exprs = panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? ""));
    const queried = new Set(exprs.flatMap(promqlMetricNames));
    for (const name of [
      "inflora_task_accuracy_ratio", // the accuracy-matrix heatmap
      "inflora_incremental_accuracy_ratio", // the A_t curve
      "inflora_average_accuracy_ratio",
      "inflora_final_accuracy_ratio",
      "inflora_forgetting_ratio",
      "inflora_train_loss",
      "inflora_train_images_total",
      "inflora_step_duration_seconds_bucket",
      "inflora_workers_up",
      "inflora_allreduce_bytes_total",
      "inflora_allreduce_duration_seconds_sum",
    ]) {
      expect(queried, name).toContain(name);
    }
    const matrix = panels.find((p) => p.title?.startsWith("Accuracy matrix"));
    expect(matrix?.type).toBe("table");
    // Rows: the task just trained (after_task); columns: the task evaluated.
    const grouping = matrix?.transformations?.find((t) => t.id === "groupingToMatrix");
    expect(grouping?.options).toMatchObject({
      rowField: "after_task",
      columnField: "task",
      valueField: "Value",
    });
    // The run's state as a word: each status value maps to its name.
    const state = panels.find((p) => p.title === "Run state");
    expect(state?.type).toBe("stat");
    expect(state?.targets?.[0].expr).toContain("inflora_run_status");
    const words = Object.values(state?.fieldConfig?.defaults?.mappings?.[0]?.options ?? {}).map(
      (o) => o.text,
    );
    expect(words.sort()).toEqual(["failed", "finished", "running"]);
  });

  it("queries only metrics the trainer exports", async () => {
    const exported = await exportedMetricNames();
    for (const { file, json } of dashboards()) {
      const queries: string[] = [];
      for (const p of allPanels(json.panels as Panel[]))
        for (const t of p.targets ?? []) queries.push(t.expr ?? "");
      const templating = (json.templating as { list: Array<{ query?: unknown }> }).list;
      for (const v of templating) {
        const q = typeof v.query === "string" ? v.query : (v.query as { query?: string } | undefined)?.query;
        const m = q ? /label_values\(\s*([^,)]+)/.exec(q) : null;
        if (m) queries.push(m[1]);
      }
      for (const a of (json.annotations as { list: Array<{ expr?: string }> }).list)
        queries.push(a.expr ?? "");
      const names = queries.flatMap(promqlMetricNames);
      expect(names.length).toBeGreaterThan(30);
      const unknown = names.filter((n) => !exported.has(n) && !NOT_OURS.has(n));
      expect(unknown, `${file} queries metrics nobody exports`).toEqual([]);
    }
  });

  it("has provisioning files for the datasource and the dashboard folder", () => {
    const ds = parse(readFileSync(path.join(GRAFANA, "provisioning/datasources/prometheus.yaml"), "utf8"));
    expect(ds.apiVersion).toBe(1);
    expect(ds.datasources[0]).toMatchObject({ type: "prometheus", uid: "prometheus", access: "proxy" });
    const prov = parse(readFileSync(path.join(GRAFANA, "provisioning/dashboards/inflora.yaml"), "utf8"));
    expect(prov.apiVersion).toBe(1);
    expect(prov.providers[0]).toMatchObject({ type: "file", options: { path: expect.any(String) } });
  });
});
