/**
 * Files the package ships beside its code: package.json, the .proto sources, the demo's data and
 * configs, the native addon. They are found from the package root — the nearest folder above this module
 * whose package.json is inflora's — so one lookup serves the TypeScript sources, the compiled `dist/`
 * (one level deeper) and the one-folder bundle (`dist/bundle/`, which carries a package.json of its own).
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const PACKAGE_NAME = "inflora";

interface PackageJson {
  readonly name?: string;
  readonly version?: string;
}

let root: { dir: string; json: PackageJson } | undefined;

function findRoot(): { dir: string; json: PackageJson } {
  const start = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; dir = path.dirname(dir)) {
    const file = path.join(dir, "package.json");
    if (existsSync(file)) {
      const json = JSON.parse(readFileSync(file, "utf8")) as PackageJson;
      if (json.name === PACKAGE_NAME) return { dir, json };
    }
    if (path.dirname(dir) === dir) {
      throw new Error(`no package.json named "${PACKAGE_NAME}" in ${start} or any folder above it`);
    }
  }
}

/** The package's root folder (where package.json is). */
export function packageRoot(): string {
  root ??= findRoot();
  return root.dir;
}

/** A file shipped with the package, e.g. `packageFile("data", "demo")`. */
export function packageFile(...segments: string[]): string {
  return path.join(packageRoot(), ...segments);
}

/** The package version from its package.json. */
export function packageVersion(): string {
  root ??= findRoot();
  return root.json.version ?? "unknown";
}
