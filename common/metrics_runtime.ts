/**
 * Metrics both sides export the same way: the default process metrics, tfjs tensor memory and the info
 * metric. Kept in one place so the coordinator's and the workers' series share names and labels, which the
 * dashboard and the alert rules rely on.
 */
import { collectDefaultMetrics, Gauge, type Registry } from "prom-client";
import { packageVersion } from "./package_files.js";
import type { GpuAdapter } from "./protocol.js";

export const METRIC_PREFIX = "inflora_";

/** What a scrape may read of tfjs without importing it: the engine tfjs-core keeps on globalThis. */
interface TfEngineGlobal {
  _tfengine?: { state?: { numTensors?: number; numBytes?: number; numDataBuffers?: number } };
}

/** The package version, for the info metric. */
export function infloraVersion(): string {
  try {
    return packageVersion();
  } catch {
    return "unknown";
  }
}

/** prom-client's gauges that break the `_total` convention; each has a per-type twin without the suffix. */
const MISNAMED_DEFAULTS = [
  "nodejs_active_handles_total",
  "nodejs_active_requests_total",
  "nodejs_active_resources_total",
];

export function registerProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of MISNAMED_DEFAULTS) registry.removeSingleMetric(name);
}

/**
 * Tensor count and bytes held by tfjs in this process. Read from the engine's counters on globalThis rather
 * than `tf.memory()`: importing tfjs here would load it into a coordinator that never computes, and
 * `tf.memory()` initialises a backend when none is set yet. A process without tfjs reports 0.
 */
export function registerTfjsMemoryMetrics(registry: Registry): void {
  const state = () => (globalThis as TfEngineGlobal)._tfengine?.state;
  const gauge = (name: string, help: string, read: (s: NonNullable<ReturnType<typeof state>>) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const s = state();
        if (s === undefined) return;
        this.set(read(s) ?? 0);
      },
    });
  gauge(`${METRIC_PREFIX}tfjs_tensors`, "Tensors tfjs holds in this process", (s) => s.numTensors ?? 0);
  gauge(
    `${METRIC_PREFIX}tfjs_memory_bytes`,
    "Bytes of tensor data tfjs holds in this process",
    (s) => s.numBytes ?? 0,
  );
  gauge(
    `${METRIC_PREFIX}tfjs_data_buffers`,
    "Tensor data buffers tfjs holds in this process",
    (s) => s.numDataBuffers ?? 0,
  );
}

/**
 * `inflora_info{role, backend, version}` = 1, plus `adapter_vendor`, `adapter_architecture`,
 * `adapter_description` and `gpu` on a webgpu worker; replaced whole when the backend becomes known.
 */
const INFO_LABELS = [
  "role",
  "backend",
  "version",
  "adapter_vendor",
  "adapter_architecture",
  "adapter_description",
  "gpu",
] as const;
type InfoLabel = (typeof INFO_LABELS)[number];

export class InfoMetric {
  private readonly gauge: Gauge<InfoLabel>;

  constructor(
    registry: Registry,
    private readonly role: "coordinator" | "worker",
  ) {
    this.gauge = new Gauge({
      name: `${METRIC_PREFIX}info`,
      help: "Always 1; the labels name the process role, compute backend, inflora version and a worker's GPU adapter",
      labelNames: INFO_LABELS,
      registers: [registry],
    });
    this.set("unknown", infloraVersion());
  }

  set(backend: string, version: string, adapter?: GpuAdapter): void {
    // One series per process: a changed backend must not leave the old one behind.
    this.gauge.reset();
    const labels: Partial<Record<InfoLabel, string>> = { role: this.role, backend, version };
    if (adapter) {
      labels.adapter_vendor = adapter.vendor;
      labels.adapter_architecture = adapter.architecture;
      labels.adapter_description = adapter.description;
      if (adapter.gpu !== undefined) labels.gpu = String(adapter.gpu);
    }
    this.gauge.set(labels, 1);
  }
}
