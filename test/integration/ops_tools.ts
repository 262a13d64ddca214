/**
 * Helpers of the operations tests: the external tools they run (promtool, kustomize), the metric names the
 * trainer exports, and the metric names a PromQL expression reads. A missing tool fails the test with the
 * command that installs it; it never skips.
 */
import { execFile } from "node:child_process";
import { accessSync, constants } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { CoordinatorMetrics } from "../../coordinator/metrics.js";
import { WorkerMetrics } from "../../worker/metrics.js";

export const run = promisify(execFile);

function findOnPath(name: string): string | undefined {
  const dirs = [
    ...(process.env.PATH ?? "").split(path.delimiter),
    "/usr/sbin",
    "/usr/local/sbin",
    "/usr/bin",
  ];
  for (const dir of dirs) {
    if (dir === "") continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {}
  }
  return undefined;
}

/** The path of `name`, or an error naming the Debian package that installs it. */
function tool(name: string, debianPackage: string): string {
  const bin = findOnPath(name);
  if (!bin) throw new Error(`${name} is not installed: apt-get install -y ${debianPackage}`);
  return bin;
}

export const promtool = (): string => tool("promtool", "prometheus");
export const prometheus = (): string => tool("prometheus", "prometheus");
export const pushgateway = (): string => tool("prometheus-pushgateway", "prometheus-pushgateway");

/** `kustomize build DIR` or `kubectl kustomize DIR`, whichever is installed (kustomize v2.0.3 or later). */
export function kustomizeCommand(): { bin: string; args: (dir: string) => string[] } {
  const kustomize = findOnPath("kustomize");
  if (kustomize) return { bin: kustomize, args: (dir) => ["build", dir] };
  const kubectl = findOnPath("kubectl");
  if (kubectl) return { bin: kubectl, args: (dir) => ["kustomize", dir] };
  throw new Error(
    "neither kustomize nor kubectl is installed: apt-get install -y kubernetes-client (kubectl kustomize)",
  );
}

/** Every series name the coordinator and worker registries expose, with histogram and summary suffixes. */
export async function exportedMetricNames(): Promise<Set<string>> {
  const names = new Set<string>();
  const registries = [new CoordinatorMetrics({ run: "names" }).registry, new WorkerMetrics().registry];
  for (const registry of registries) {
    for (const m of await registry.getMetricsAsJSON()) {
      names.add(m.name);
      const type = String(m.type);
      if (type === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(m.name + s);
      if (type === "summary") for (const s of ["_sum", "_count"]) names.add(m.name + s);
    }
  }
  return names;
}

const PROMQL_KEYWORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "bool",
  "and",
  "or",
  "unless",
  "offset",
  "inf",
  "nan",
  "atan2",
]);

/**
 * Metric names read by a PromQL expression (Grafana variables allowed): strings, label matchers, ranges
 * and grouping clauses are removed, then every identifier that is not a function call or keyword is a
 * metric. `name{...}` and `{__name__="name"}` both count.
 */
export function promqlMetricNames(expr: string): string[] {
  const names: string[] = [];
  for (const m of expr.matchAll(/__name__\s*=\s*"([^"]+)"/g)) names.push(m[1]);
  let s = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, " ")
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
    .replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/g, " ")
    .replace(/\b\d+(\.\d+)?(e[+-]?\d+)?[smhdwy]?\b/gi, " ");
  s = s.replace(/\boffset\s+\S+/g, " ");
  for (const m of s.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?/g)) {
    if (m[2]) continue; // a function or aggregation
    if (PROMQL_KEYWORDS.has(m[1].toLowerCase())) continue;
    names.push(m[1]);
  }
  return names;
}
