/**
 * The container images, without a container engine: every file a Dockerfile copies from the build context
 * exists and passes its .dockerignore, the libtensorflow provisioning script does what the images rely on
 * (against a stand-in tfjs-node package), and the image's entry point — `node bin/inflora.js` — runs the
 * commands and flags the Kubernetes manifests use.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { run } from "./ops_tools.js";

const ROOT = path.join(import.meta.dirname, "../..");
const DOCKER = path.join(ROOT, "deploy/docker");
const DOCKERFILES = ["Dockerfile.gpu", "Dockerfile.webgpu", "Dockerfile.cpu"];
const execFileP = promisify(execFile);

/** Instructions with their continuation lines joined, comments dropped. */
function instructions(file: string): string[] {
  const out: string[] = [];
  let current = "";
  for (const raw of readFileSync(file, "utf8").split("\n")) {
    const line = raw.trim();
    if (current === "" && (line === "" || line.startsWith("#"))) continue;
    current += `${line.replace(/\\$/, "")} `;
    if (!line.endsWith("\\")) {
      out.push(current.trim());
      current = "";
    }
  }
  return out;
}

function copySources(file: string): string[] {
  return instructions(file)
    .filter((i) => /^(COPY|ADD)\s/i.test(i) && !/--from=/.test(i))
    .flatMap((i) => {
      const args = i
        .split(/\s+/)
        .slice(1)
        .filter((a) => !a.startsWith("--"));
      return args.slice(0, -1);
    });
}

const work: string[] = [];
afterAll(() => {
  for (const d of work) rmSync(d, { recursive: true, force: true });
});

describe("Dockerfiles", () => {
  it.each(DOCKERFILES)("%s copies only files that exist and that its .dockerignore lets through", (name) => {
    const sources = copySources(path.join(DOCKER, name));
    expect(sources.length).toBeGreaterThan(8);
    const allowed = readFileSync(path.join(DOCKER, `${name}.dockerignore`), "utf8")
      .split("\n")
      .filter((l) => l.startsWith("!"))
      .map((l) =>
        l
          .slice(1)
          .replace(/\/\*\*$/, "")
          .replace(/\/$/, ""),
      );
    for (const src of sources) {
      const clean = src.replace(/\/$/, "");
      expect(
        existsSync(path.join(ROOT, clean)),
        `${name}: COPY ${src} — no such file in the repository`,
      ).toBe(true);
      expect(
        allowed.some((a) => clean === a || clean.startsWith(`${a}/`)),
        `${name}: COPY ${src} is excluded by ${name}.dockerignore`,
      ).toBe(true);
    }
  });

  it.each(DOCKERFILES)("%s copies every module the CLI can import (static and dynamic imports)", (name) => {
    const copied = copySources(path.join(DOCKER, name)).map((s) => s.replace(/\/$/, ""));
    const seen = new Set<string>();
    const queue = [path.join(ROOT, "cli/main.ts")];
    while (queue.length > 0) {
      const file = queue.pop() as string;
      if (seen.has(file)) continue;
      seen.add(file);
      const text = readFileSync(file, "utf8");
      for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*)"(\.{1,2}\/[^"]+)"/g)) {
        const target = path.resolve(path.dirname(file), m[1]);
        const ts = target.replace(/\.js$/, ".ts");
        if (existsSync(ts)) queue.push(ts);
        else if (existsSync(target) && /\.(ts|mjs|js)$/.test(target)) queue.push(target);
      }
    }
    expect(seen.size).toBeGreaterThan(50);
    for (const file of seen) {
      const rel = path.relative(ROOT, file);
      expect(
        copied.some((c) => rel === c || rel.startsWith(`${c}/`)),
        `${name}: the CLI imports ${rel}, which the image does not COPY`,
      ).toBe(true);
    }
  });

  it("GPU image: CUDA 11.2 + cuDNN 8 runtime and Node 20; CPU image: node:20-bookworm-slim", () => {
    const gpu = readFileSync(path.join(DOCKER, "Dockerfile.gpu"), "utf8");
    expect(gpu).toContain("ARG CUDA_IMAGE=nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04");
    expect(gpu).toContain("ARG NODE_IMAGE=node:20-bookworm-slim");
    expect(gpu).toMatch(/RUN install-tfjs-native\.sh gpu \/app/);
    const cpu = readFileSync(path.join(DOCKER, "Dockerfile.cpu"), "utf8");
    expect(cpu).toContain("ARG NODE_IMAGE=node:20-bookworm-slim");
    for (const text of [gpu, cpu]) {
      expect(text).toContain('ENTRYPOINT ["node", "/app/bin/inflora.js"]');
      expect(text).toContain("USER 1000:1000");
      expect(text).toContain("ARG TFJS_NODE_CDN_STORAGE=");
    }
  });
});

describe("the webgpu GPU image", () => {
  const text = readFileSync(path.join(DOCKER, "Dockerfile.webgpu"), "utf8");
  const steps = instructions(path.join(DOCKER, "Dockerfile.webgpu"));
  const lastFrom = steps.map((i) => i.startsWith("FROM ")).lastIndexOf(true);
  const runtime = steps.slice(lastFrom);

  it("carries the Vulkan loader and asks the NVIDIA toolkit for the graphics capability", () => {
    expect(runtime.some((i) => /^RUN .*apt-get install .*\blibvulkan1\b/.test(i))).toBe(true);
    const env = runtime.filter((i) => i.startsWith("ENV ")).join(" ");
    expect(env).toMatch(/NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics\b/);
    expect(env).toMatch(/INFLORA_BACKEND=webgpu\b/);
  });

  it("has no libtensorflow and keeps Dawn's binary and the tfjs webgpu backend", () => {
    expect(text).not.toMatch(/install-tfjs-native/);
    const install = steps.find((i) => i.startsWith("RUN npm ci"))!;
    expect(install).toContain(
      "rm -rf node_modules/@tensorflow/tfjs-node-gpu node_modules/@tensorflow/tfjs-node",
    );
    expect(install).toContain("test -f node_modules/webgpu/dist/linux-x64/dawn.node");
  });

  it("builds on a base whose glibc and libstdc++ load dawn.node (bookworm, not the CUDA 11.2 Ubuntu 20.04 base)", () => {
    expect(text).toContain("ARG NODE_IMAGE=node:20-bookworm-slim");
    expect(text).not.toMatch(/nvidia\/cuda/);
  });
});

describe("install-tfjs-native.sh", () => {
  const SCRIPT = path.join(DOCKER, "install-tfjs-native.sh");

  /**
   * A stand-in @tensorflow/tfjs-node-gpu: its install script records how it was called and, like the real
   * one, builds the addon when deps/ holds libtensorflow (or "downloads" it when `download` is passed and
   * FAKE_DOWNLOAD_OK is set — a 403 leaves nothing behind, as upstream does).
   */
  function fakeApp(): { app: string; libs: string; pkg: string } {
    const base = mkdtempSync(path.join(tmpdir(), "inflora-tfjs-native-"));
    work.push(base);
    const app = path.join(base, "app");
    const pkg = path.join(app, "node_modules/@tensorflow/tfjs-node-gpu");
    mkdirSync(path.join(pkg, "scripts"), { recursive: true });
    writeFileSync(path.join(pkg, "package.json"), '{"name":"@tensorflow/tfjs-node-gpu","version":"4.22.0"}');
    writeFileSync(path.join(pkg, "scripts/deps-constants.js"), "const LIBTENSORFLOW_VERSION = '2.9.1';\n");
    writeFileSync(
      path.join(pkg, "scripts/install.js"),
      `const fs = require("fs"); const path = require("path");
const root = path.join(__dirname, "..");
fs.writeFileSync(path.join(root, "install-args.json"), JSON.stringify({ argv: process.argv.slice(2),
  cdn: process.env.TFJS_NODE_CDN_STORAGE || null, custom: fs.existsSync(path.join(__dirname, "custom-binary.json")),
  nodedir: process.env.npm_config_nodedir || null }));
const lib = path.join(root, "deps/lib");
if (process.argv[3] === "download" && process.env.FAKE_DOWNLOAD_OK) {
  fs.mkdirSync(lib, { recursive: true }); fs.writeFileSync(path.join(lib, "libtensorflow.so.2.9.1"), "");
}
if (fs.existsSync(path.join(lib, "libtensorflow.so.2.9.1"))) {
  fs.mkdirSync(path.join(root, "lib/napi-v8"), { recursive: true });
  fs.writeFileSync(path.join(root, "lib/napi-v8/tfjs_binding.node"), "");
}
`,
    );
    const libs = path.join(base, "libtensorflow");
    mkdirSync(libs);
    return { app, libs, pkg };
  }

  const sh = (args: string[], env: Record<string, string>) =>
    execFileP("bash", [SCRIPT, ...args], { env: { PATH: process.env.PATH ?? "", ...env } }).then(
      (r) => ({ code: 0, out: r.stdout + r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
    );
  const args = (pkg: string) => JSON.parse(readFileSync(path.join(pkg, "install-args.json"), "utf8"));

  it("is an executable bash script (the Dockerfiles RUN it by name)", () => {
    expect(statSync(SCRIPT).mode & 0o111).not.toBe(0);
    expect(readFileSync(SCRIPT, "utf8").startsWith("#!/usr/bin/env bash")).toBe(true);
  });

  it("installs libtensorflow from a tarball in the build context without downloading", async () => {
    const { app, libs, pkg } = fakeApp();
    const src = path.join(libs, "src");
    mkdirSync(path.join(src, "lib"), { recursive: true });
    writeFileSync(path.join(src, "lib/libtensorflow.so.2.9.1"), "");
    mkdirSync(path.join(src, "include"));
    await run("tar", [
      "-czf",
      path.join(libs, "libtensorflow-gpu-linux-x86_64-2.9.1.tar.gz"),
      "-C",
      src,
      "lib",
      "include",
    ]);
    const r = await sh(["gpu", app], { LIBTENSORFLOW_DIR: libs });
    expect(r.out).toContain("ready");
    expect(r.code).toBe(0);
    expect(args(pkg).argv).toEqual(["gpu"]); // no "download"
    expect(existsSync(path.join(pkg, "deps/include"))).toBe(true);
  });

  it("passes a mirror to tfjs-node and copies custom-binary.json", async () => {
    const { app, libs, pkg } = fakeApp();
    writeFileSync(
      path.join(libs, "custom-binary.json"),
      '{"tf-lib": "https://mirror.example.com/lib.tar.gz"}',
    );
    const r = await sh(["gpu", app], {
      LIBTENSORFLOW_DIR: libs,
      TFJS_NODE_CDN_STORAGE: "https://mirror.example.com/",
      FAKE_DOWNLOAD_OK: "1",
    });
    expect(r.code).toBe(0);
    expect(args(pkg)).toMatchObject({
      argv: ["gpu", "download"],
      cdn: "https://mirror.example.com/",
      custom: true,
    });
  });

  it("refuses a mirror URL tfjs-node cannot use", async () => {
    const { app, libs } = fakeApp();
    const r = await sh(["gpu", app], {
      LIBTENSORFLOW_DIR: libs,
      TFJS_NODE_CDN_STORAGE: "http://mirror.example.com",
    });
    expect(r.code).toBe(2);
    expect(r.out).toContain("https://");
  });

  it("fails with the ways to provide libtensorflow when the download produced nothing (HTTP 403)", async () => {
    const { app, libs } = fakeApp();
    const r = await sh(["gpu", app], { LIBTENSORFLOW_DIR: libs });
    expect(r.code).toBe(1);
    expect(r.out).toContain("libtensorflow-gpu-linux-x86_64-2.9.1.tar.gz");
    expect(r.out).toContain("TFJS_NODE_CDN_STORAGE");
  });

  it("fails clearly when the package is not installed", async () => {
    const r = await sh(["cpu", mkdtempSync(path.join(tmpdir(), "inflora-empty-"))], {});
    expect(r.code).toBe(1);
    expect(r.out).toContain("@tensorflow/tfjs-node is not in");
  });
});

describe("the image's entry point", () => {
  const inflora = (...a: string[]) =>
    run(process.execPath, [path.join(ROOT, "bin/inflora.js"), ...a], { cwd: ROOT });

  it("runs `inflora --help` and each command's --help", async () => {
    const { stdout } = await inflora("--help");
    expect(stdout).toContain("train");
    const commands = [...stdout.matchAll(/^\s{2}(\w+)\s/gm)].map((m) => m[1]).filter((c) => c !== "help");
    for (const c of commands) await inflora(c, "--help");
  });

  it("accepts the flags the Kubernetes manifests pass", async () => {
    const top = (await inflora("--help")).stdout;
    const train = (await inflora("train", "--help")).stdout;
    for (const flag of ["--config", "--out", "--resume"]) expect(train).toContain(flag);
    // The distributed commands arrive together: once `worker` exists, train's cluster flags must too.
    if (/^\s{2}worker\b/m.test(top)) {
      for (const flag of ["--nats", "--metrics-port", "--worker"]) expect(train).toContain(flag);
      const worker = (await inflora("worker", "--help")).stdout;
      for (const flag of ["--listen", "--token-file", "--metrics-port", "--nats", "--advertise"]) {
        expect(worker).toContain(flag);
      }
    }
  });
});
