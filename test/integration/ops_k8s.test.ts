/**
 * The Kubernetes manifests: every overlay builds with kustomize, and every object it produces validates
 * against the Kubernetes OpenAPI schemas (kubernetes-models) and, for the Prometheus operator's objects,
 * against the operator's CRD schemas (@kubernetes-models/prometheus-operator). Those validators check
 * types, enums and required fields but not unknown keys, so the objects are also type-checked as object
 * literals of the same packages' TypeScript types, which rejects any key the API does not define.
 */
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { loadConfig } from "../../common/config.js";
import { DEFAULT_METRICS_LINGER_MS } from "../../common/metrics_server.js";
import { kustomizeCommand, run } from "./ops_tools.js";

const ROOT = path.join(import.meta.dirname, "../..");
const OVERLAYS = ["cpu", "gpu", "imagenet-r", "gpu-pushgateway"] as const;

// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML
type Obj = Record<string, any>;
interface ModelClass {
  new (data: Obj): { validate(): void };
}

/** apiVersion/kind → the model module and its TypeScript interface. */
const MODELS: Record<string, { module: string; type: string }> = {
  "v1/Namespace": { module: "kubernetes-models/v1/Namespace", type: "INamespace" },
  "v1/Service": { module: "kubernetes-models/v1/Service", type: "IService" },
  "v1/ConfigMap": { module: "kubernetes-models/v1/ConfigMap", type: "IConfigMap" },
  "v1/Secret": { module: "kubernetes-models/v1/Secret", type: "ISecret" },
  "v1/PersistentVolumeClaim": {
    module: "kubernetes-models/v1/PersistentVolumeClaim",
    type: "IPersistentVolumeClaim",
  },
  "v1/Pod": { module: "kubernetes-models/v1/Pod", type: "IPod" },
  "apps/v1/Deployment": { module: "kubernetes-models/apps/v1/Deployment", type: "IDeployment" },
  "apps/v1/StatefulSet": { module: "kubernetes-models/apps/v1/StatefulSet", type: "IStatefulSet" },
  "batch/v1/Job": { module: "kubernetes-models/batch/v1/Job", type: "IJob" },
  "networking.k8s.io/v1/NetworkPolicy": {
    module: "kubernetes-models/networking.k8s.io/v1/NetworkPolicy",
    type: "INetworkPolicy",
  },
  "monitoring.coreos.com/v1/PodMonitor": {
    module: "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor",
    type: "IPodMonitor",
  },
  "monitoring.coreos.com/v1/ServiceMonitor": {
    module: "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor",
    type: "IServiceMonitor",
  },
  "monitoring.coreos.com/v1/PrometheusRule": {
    module: "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule",
    type: "IPrometheusRule",
  },
};

const keyOf = (o: Obj) => `${o.apiVersion}/${o.kind}`;

function parseDocs(text: string): Obj[] {
  return parseAllDocuments(text)
    .map((d) => d.toJSON() as Obj | null)
    .filter((o): o is Obj => o !== null);
}

let work: string;
const built = new Map<string, Obj[]>();
const tools: Obj[] = [];

beforeAll(async () => {
  // A copy, so the token the base needs (never in git) can be written next to it.
  work = mkdtempSync(path.join(tmpdir(), "inflora-k8s-"));
  cpSync(path.join(ROOT, "deploy"), path.join(work, "deploy"), { recursive: true });
  writeFileSync(path.join(work, "deploy/k8s/base/secrets/token"), "0123456789abcdef\n");
  const k = kustomizeCommand();
  await Promise.all(
    OVERLAYS.map(async (o) => {
      const { stdout } = await run(k.bin, k.args(path.join(work, "deploy/k8s/overlays", o)), {
        maxBuffer: 64 << 20,
      });
      built.set(o, parseDocs(stdout));
    }),
  );
  const toolsDir = path.join(ROOT, "deploy/k8s/tools");
  for (const f of readdirSync(toolsDir).filter((f) => f.endsWith(".yaml"))) {
    tools.push(...parseDocs(readFileSync(path.join(toolsDir, f), "utf8")));
  }
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function objects(overlay: string): Obj[] {
  const list = built.get(overlay);
  if (!list) throw new Error(`overlay ${overlay} was not built`);
  return list;
}

function find(list: Obj[], kind: string, name: string): Obj {
  const o = list.find((x) => x.kind === kind && x.metadata?.name === name);
  if (!o) throw new Error(`no ${kind} ${name}`);
  return o;
}

const container = (job: Obj, name: string): Obj =>
  job.spec.template.spec.containers.find((c: Obj) => c.name === name);

describe("Kubernetes manifests", () => {
  it.each(OVERLAYS)("overlay %s builds and every object validates against its schema", async (overlay) => {
    const list = objects(overlay);
    expect(list.length).toBeGreaterThan(10);
    for (const o of list) {
      const model = MODELS[keyOf(o)];
      expect(model, `no schema known for ${keyOf(o)} ${o.metadata?.name}`).toBeDefined();
      const mod = (await import(model.module)) as Record<string, ModelClass>;
      const Model = Object.values(mod).find((v) => typeof v === "function") as ModelClass;
      expect(() => new Model(o).validate(), `${keyOf(o)} ${o.metadata?.name}`).not.toThrow();
      expect(o.metadata.namespace ?? "inflora", `${o.kind} ${o.metadata.name}`).toBe("inflora");
    }
  });

  it("uses no key the Kubernetes and operator APIs do not define (type-checked)", async () => {
    const dir = mkdtempSync(path.join(ROOT, "node_modules/.inflora-k8s-typecheck-"));
    try {
      const all = [...OVERLAYS.flatMap((o) => objects(o)), ...tools];
      const used = [...new Set(all.map(keyOf))];
      const imports = used.map(
        (k, i) => `import type { ${MODELS[k].type} as T${i} } from "${MODELS[k].module}";`,
      );
      const decls = all.map(
        (o, i) => `export const o${i}: T${used.indexOf(keyOf(o))} = ${JSON.stringify(o)};`,
      );
      writeFileSync(path.join(dir, "manifests.ts"), [...imports, ...decls].join("\n"));
      writeFileSync(
        path.join(dir, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            noEmit: true,
            module: "nodenext",
            moduleResolution: "nodenext",
            skipLibCheck: true,
            types: [],
          },
          files: ["manifests.ts"],
        }),
      );
      const tsc = path.join(ROOT, "node_modules/.bin/tsc");
      const result = await run(tsc, ["-p", path.join(dir, "tsconfig.json")]).then(
        () => "",
        (err: { stdout?: string }) => err.stdout ?? String(err),
      );
      expect(result).toBe("");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("runs workers as an Indexed Job with per-index retries, a failure policy and gRPC health probes", () => {
    for (const overlay of OVERLAYS) {
      const list = objects(overlay);
      const job = find(list, "Job", "inflora-worker");
      expect(job.spec.completionMode).toBe("Indexed");
      expect(job.spec.parallelism).toBe(job.spec.completions);
      expect(job.spec.backoffLimitPerIndex).toBeGreaterThan(0);
      expect(job.spec.podFailurePolicy.rules.map((r: Obj) => r.action)).toEqual(["FailIndex", "Ignore"]);
      const pod = job.spec.template.spec;
      expect(pod.restartPolicy).toBe("Never");
      const svc = find(list, "Service", pod.subdomain);
      expect(svc.spec.clusterIP).toBe("None");
      for (const [k, v] of Object.entries(svc.spec.selector))
        expect(job.spec.template.metadata.labels[k]).toBe(v);
      const c = container(job, "worker");
      for (const probe of ["readinessProbe", "livenessProbe", "startupProbe"])
        expect(c[probe].grpc.port).toBe(50051);
      expect(c.args.slice(0, 7)).toEqual([
        "worker",
        "--listen",
        "0.0.0.0:50051",
        "--token-file",
        "/var/run/inflora/token",
        "--metrics-port",
        "9464",
      ]);
      expect(c.args.join(" ")).toContain("--nats nats://nats:4222 --advertise $(POD_IP):50051");
      const token = pod.volumes.find((v: Obj) => v.name === "token").secret.secretName;
      expect(find(list, "Secret", token).data.token).toBe(
        Buffer.from("0123456789abcdef\n").toString("base64"),
      );
      const gpus = c.resources.limits?.["nvidia.com/gpu"];
      expect(gpus, overlay).toBe(overlay === "cpu" ? undefined : 1);
      if (overlay !== "cpu") {
        // The GPU overlays run the webgpu image (no libtensorflow): Dawn needs the driver's Vulkan ICD.
        const env = Object.fromEntries(c.env.map((e: Obj) => [e.name, e.value]));
        expect(env.INFLORA_BACKEND, overlay).toBe("webgpu");
        expect(env.NVIDIA_DRIVER_CAPABILITIES, overlay).toBe("compute,utility,graphics");
        expect(c.image, overlay).toBe("registry.example.com/inflora:0.1.0-webgpu");
      }
    }
  });

  it("runs the coordinator as a resuming Job with a metrics Service and NATS with JetStream storage", () => {
    for (const overlay of OVERLAYS) {
      const list = objects(overlay);
      const job = find(list, "Job", "inflora-coordinator");
      const c = container(job, "coordinator");
      expect(c.args.slice(0, 10)).toEqual([
        "train",
        "--config",
        "/etc/inflora/config.json",
        "--out",
        "/runs/$(RUN_NAME)",
        "--nats",
        "nats://nats:4222",
        "--metrics-port",
        "9464",
        "--resume",
      ]);
      expect(c.args.slice(10)).toEqual(
        overlay === "gpu-pushgateway" ? ["--pushgateway", "http://inflora-pushgateway:9091"] : [],
      );
      expect(job.spec.template.spec.restartPolicy).toBe("Never");
      expect(job.spec.podFailurePolicy.rules[0]).toMatchObject({
        action: "FailJob",
        onExitCodes: { values: [2, 3] },
      });
      const svc = find(list, "Service", "inflora-coordinator");
      expect(svc.spec.ports).toEqual([{ name: "metrics", port: 9464, targetPort: "metrics" }]);
      const configMap = job.spec.template.spec.volumes.find((v: Obj) => v.name === "config").configMap.name;
      expect(find(list, "ConfigMap", configMap).data["config.json"]).toBeDefined();
      for (const claim of ["inflora-data", "inflora-runs"]) find(list, "PersistentVolumeClaim", claim);
      const nats = find(list, "StatefulSet", "nats");
      expect(nats.spec.template.spec.containers[0].args).toContain("--jetstream");
      expect(nats.spec.volumeClaimTemplates[0].metadata.name).toBe("jetstream");
    }
  });

  it("has Prometheus operator objects that select the pods and Service they mean (gpu, imagenet-r)", () => {
    expect(objects("cpu").filter((o) => o.apiVersion.startsWith("monitoring.coreos.com"))).toEqual([]);
    for (const overlay of ["gpu", "imagenet-r", "gpu-pushgateway"]) {
      const list = objects(overlay);
      const pm = find(list, "PodMonitor", "inflora-workers");
      const workerLabels = find(list, "Job", "inflora-worker").spec.template.metadata.labels;
      for (const [k, v] of Object.entries(pm.spec.selector.matchLabels)) expect(workerLabels[k]).toBe(v);
      expect(pm.spec.podMetricsEndpoints[0].port).toBe("metrics");
      const sm = find(list, "ServiceMonitor", "inflora-coordinator");
      const svcLabels = find(list, "Service", "inflora-coordinator").metadata.labels;
      for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) expect(svcLabels[k]).toBe(v);
      expect(find(list, "PrometheusRule", "inflora").spec.groups.length).toBe(2);
      const dashboard = find(list, "ConfigMap", "inflora-grafana-dashboard");
      expect(dashboard.metadata.labels.grafana_dashboard).toBe("1");
      JSON.parse(dashboard.data["inflora-run.json"]);
    }
  });

  it("gives a stopping worker time to finish its calls and serve its final counters for the default linger", () => {
    // The worker's shutdown: in-flight calls get up to 30 s (runWorkerServer), then the metrics linger.
    const needed = 30 + DEFAULT_METRICS_LINGER_MS / 1000;
    for (const overlay of OVERLAYS) {
      const pod = find(objects(overlay), "Job", "inflora-worker").spec.template.spec;
      expect(pod.terminationGracePeriodSeconds, overlay).toBeGreaterThan(needed);
    }
  });

  it("can include a Pushgateway that the coordinator pushes to and Prometheus scrapes with honor_labels", () => {
    const list = objects("gpu-pushgateway");
    const svc = find(list, "Service", "inflora-pushgateway");
    const deploy = find(list, "Deployment", "inflora-pushgateway");
    const podLabels = deploy.spec.template.metadata.labels;
    for (const [k, v] of Object.entries(svc.spec.selector)) expect(podLabels[k]).toBe(v);
    const port = deploy.spec.template.spec.containers[0].ports[0];
    expect(svc.spec.ports[0]).toMatchObject({ port: port.containerPort, targetPort: port.name });
    const args = container(find(list, "Job", "inflora-coordinator"), "coordinator").args as string[];
    const url = new URL(args[args.indexOf("--pushgateway") + 1]);
    expect([url.hostname, Number(url.port)]).toEqual([svc.metadata.name, svc.spec.ports[0].port]);
    const sm = find(list, "ServiceMonitor", "inflora-pushgateway");
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) expect(svc.metadata.labels[k]).toBe(v);
    expect(sm.spec.endpoints[0]).toMatchObject({ port: "http", honorLabels: true });
    for (const overlay of ["cpu", "gpu", "imagenet-r"])
      expect(
        objects(overlay).some((o) => o.metadata.name === "inflora-pushgateway"),
        overlay,
      ).toBe(false);
  });

  it("ships run configs the trainer accepts; ImageNet-R is the reference's 10-task config", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "inflora-k8s-config-"));
    try {
      const configs = new Map<string, ReturnType<typeof loadConfig>>();
      for (const overlay of OVERLAYS) {
        const list = objects(overlay);
        const job = find(list, "Job", "inflora-coordinator");
        const name = job.spec.template.spec.volumes.find((v: Obj) => v.name === "config").configMap.name;
        const file = path.join(dir, `${overlay}.json`);
        writeFileSync(file, find(list, "ConfigMap", name).data["config.json"]);
        configs.set(overlay, loadConfig(file));
      }
      const c = configs.get("imagenet-r")!;
      expect(c).toMatchObject({
        total_sessions: 10,
        init_cls: 20,
        increment: 20,
        init_epoch: 50,
        epochs: 50,
        batch_size: 128,
        lrate: 0.0005,
        rank: 10,
        lamb: 0.98,
        lame: 1,
        optim: "adam",
      });
      const workers = find(objects("imagenet-r"), "Job", "inflora-worker").spec.parallelism;
      // Every worker gets at least one micro-shard of every batch.
      expect(c.micro_shards).toBeGreaterThanOrEqual(workers);
      expect(path.isAbsolute(c.data_path) && path.isAbsolute(c.weights)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("validates the helper pods in deploy/k8s/tools", async () => {
    expect(tools.length).toBeGreaterThan(0);
    for (const o of tools) {
      const mod = (await import(MODELS[keyOf(o)].module)) as Record<string, ModelClass>;
      const Model = Object.values(mod).find((v) => typeof v === "function") as ModelClass;
      expect(() => new Model(o).validate()).not.toThrow();
    }
  });
});
