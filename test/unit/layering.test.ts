/**
 * Dependencies point one way (docs/design.md#layering): cli → coordinator/worker → common. The
 * coordinator and the workers never import each other, and common imports neither.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "../..");

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(path.join(ROOT, dir))) {
    const rel = path.join(dir, name);
    if (statSync(path.join(ROOT, rel)).isDirectory()) out.push(...sources(rel));
    else if (name.endsWith(".ts")) out.push(rel);
  }
  return out;
}

function importsOf(file: string): string[] {
  const text = readFileSync(path.join(ROOT, file), "utf8");
  const specs = [...text.matchAll(/(?:from|import)\s*\(?\s*"(\.[^"]+)"/g)].map((m) => m[1]);
  return specs.map((s) => path.relative(ROOT, path.resolve(path.dirname(path.join(ROOT, file)), s)));
}

const FORBIDDEN: Record<string, string[]> = {
  common: ["worker", "coordinator", "cli", "demo"],
  worker: ["coordinator", "cli", "demo"],
  coordinator: ["worker", "cli", "demo"],
};

describe("layering", () => {
  for (const [layer, banned] of Object.entries(FORBIDDEN)) {
    it(`${layer}/ imports none of ${banned.join(", ")}`, () => {
      const violations = sources(layer).flatMap((f) =>
        importsOf(f)
          .filter((target) => banned.some((b) => target === b || target.startsWith(`${b}/`)))
          .map((target) => `${f} → ${target}`),
      );
      expect(violations).toEqual([]);
    });
  }
});
