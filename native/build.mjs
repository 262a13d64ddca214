// `npm run build:native`: builds native/build/Release/inflora_native.node (OpenBLAS + LAPACKE) with the
// node-gyp bundled in npm. It fails soft: when the compiler, make, python3, Node's headers or the
// libraries are missing, it says why and exits 0 with nothing built, and the runtime falls back to
// wasm/cpu and the pure-TypeScript linear algebra. INFLORA_NATIVE_STRICT=1 makes such a failure exit 1
// (for CI that must have the addon).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ADDON = path.join(HERE, "build", "Release", "inflora_native.node");
const HINT = "apt-get install -y g++ make python3 libopenblas-dev liblapacke-dev";
const strict = process.env.INFLORA_NATIVE_STRICT === "1";

function giveUp(why) {
  process.stderr.write(`build:native: not built — ${why}\n`);
  process.stderr.write("build:native: the runtime will use wasm/cpu and the TypeScript linear algebra.\n");
  process.exit(strict ? 1 : 0);
}

function onPath(cmd) {
  return (process.env.PATH ?? "")
    .split(path.delimiter)
    .some((dir) => dir !== "" && existsSync(path.join(dir, cmd)));
}

/** Node's headers: npm's nodedir (npm run sets it), else the prefix this node runs from. */
function nodeDir() {
  const candidates = [process.env.npm_config_nodedir, path.resolve(path.dirname(process.execPath), "..")];
  return candidates.find((d) => d && existsSync(path.join(d, "include", "node", "node_api.h")));
}

function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    path.resolve(
      path.dirname(process.execPath),
      "../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js",
    ),
  ];
  const found = candidates.find((p) => p && existsSync(p));
  if (found) return found;
  try {
    return createRequire(import.meta.url).resolve("node-gyp/bin/node-gyp.js");
  } catch {
    return undefined;
  }
}

/** Compiles and links a tiny program against CBLAS and LAPACKE: proves headers and libraries exist. */
function probeLibraries(cxx) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "inflora-native-probe-"));
  try {
    const src = path.join(dir, "probe.cc");
    writeFileSync(
      src,
      [
        "#include <cblas.h>",
        "#include <lapacke.h>",
        "int main() {",
        "  double a[1] = {2.0}, w[1];",
        "  float x[1] = {1.0f}, y[1] = {1.0f}, z[1];",
        "  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.0f, x, 1, y, 1, 0.0f, z, 1);",
        "  return LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'U', 1, a, 1, w) == 0 && z[0] == 1.0f ? 0 : 1;",
        "}",
        "",
      ].join("\n"),
    );
    const exe = path.join(dir, "probe");
    const cc = spawnSync(cxx, [src, "-o", exe, "-llapacke", "-lopenblas"], { encoding: "utf8" });
    if (cc.status !== 0) {
      return `cannot compile/link against cblas.h + lapacke.h, -llapacke -lopenblas (${firstLine(cc.stderr || cc.error?.message)})`;
    }
    const run = spawnSync(exe, [], { encoding: "utf8" });
    if (run.status !== 0)
      return `the probe program linked against OpenBLAS/LAPACKE did not run (${run.status})`;
    return undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function firstLine(text) {
  return (
    String(text ?? "")
      .trim()
      .split("\n")
      .find((l) => /error|cannot|not found/i.test(l)) ??
    String(text ?? "")
      .trim()
      .split("\n")[0] ??
    ""
  );
}

const cxx = process.env.CXX ?? "g++";
const missingTools = [cxx, "make", "python3"].filter((t) => !onPath(t));
if (missingTools.length > 0) giveUp(`missing ${missingTools.join(", ")} (install: ${HINT})`);
const headers = nodeDir();
if (!headers) giveUp("Node's headers (include/node/node_api.h) not found; set npm's nodedir");
const gyp = nodeGyp();
if (!gyp) giveUp("node-gyp not found (it ships with npm)");
const libs = probeLibraries(cxx);
if (libs) giveUp(`${libs}; install: ${HINT}`);

const args = [gyp, "rebuild", "--directory", HERE, `--nodedir=${headers}`, "--jobs=2"];
const built = spawnSync(process.execPath, args, { stdio: ["ignore", "inherit", "inherit"] });
if (built.status !== 0 || !existsSync(ADDON)) giveUp(`node-gyp failed (exit ${built.status})`);

// Load it in a fresh process: a library that links but does not load must not count as built.
const check = spawnSync(
  process.execPath,
  ["-e", `const a = require(${JSON.stringify(ADDON)}); console.log(JSON.stringify(a.blasInfo()));`],
  { encoding: "utf8" },
);
if (check.status !== 0) {
  rmSync(ADDON, { force: true });
  giveUp(`the built addon does not load (${firstLine(check.stderr)})`);
}
process.stdout.write(`build:native: built ${path.relative(process.cwd(), ADDON)} — ${check.stdout.trim()}\n`);
