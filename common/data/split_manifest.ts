import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname, relative, resolve, sep } from "node:path";
import { DataError } from "./errors.js";

export const MANIFEST_FORMAT = "inflora-split-manifest/1";

/** The train/test assignment of a raw image tree, kept in the run dir so a run can be repeated. */
export interface SplitManifest {
  readonly format: typeof MANIFEST_FORMAT;
  readonly dataset: string;
  /** Informational: the dataset root the paths are relative to. */
  readonly root: string;
  readonly seed: number;
  readonly test_fraction: number;
  readonly method: string;
  readonly classes: readonly string[];
  /** Paths relative to the root, `/`-separated, in ImageFolder order. */
  readonly train: readonly string[];
  readonly test: readonly string[];
}

function isInside(path: string, dir: string): boolean {
  const rel = relative(resolve(dir), resolve(path));
  return rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !rel.startsWith(sep));
}

/**
 * Returns the split to use: the one stored at `manifestPath` when it exists (it must describe the same
 * files and seed), else `computed`, which is then written there when `write` is set (the coordinator;
 * workers only read). Nothing is written without a path, and never inside the dataset.
 */
export async function settleManifest(
  manifestPath: string | undefined,
  dataRoot: string,
  computed: SplitManifest,
  write: boolean,
): Promise<SplitManifest> {
  if (manifestPath === undefined) return computed;
  if (isInside(manifestPath, dataRoot)) {
    throw new DataError("the split manifest must not be written inside the dataset folder", manifestPath);
  }
  let text: string | undefined;
  try {
    text = await readFile(manifestPath, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new DataError(`cannot read split manifest (${(e as Error).message})`, manifestPath);
    }
  }
  if (text === undefined) {
    if (!write) return computed;
    try {
      await mkdir(dirname(manifestPath), { recursive: true });
      const tmp = `${manifestPath}.${process.pid}.tmp`;
      await writeFile(tmp, `${JSON.stringify(computed, null, 1)}\n`);
      await rename(tmp, manifestPath);
    } catch (e) {
      throw new DataError(`cannot write split manifest (${(e as Error).message})`, manifestPath);
    }
    return computed;
  }
  let stored: SplitManifest;
  try {
    stored = JSON.parse(text) as SplitManifest;
  } catch (e) {
    throw new DataError(`split manifest is not valid JSON (${(e as Error).message})`, manifestPath);
  }
  if (stored.format !== MANIFEST_FORMAT || !Array.isArray(stored.train) || !Array.isArray(stored.test)) {
    throw new DataError(`not a split manifest (format must be "${MANIFEST_FORMAT}")`, manifestPath);
  }
  if (stored.seed !== computed.seed || stored.test_fraction !== computed.test_fraction) {
    throw new DataError(
      `split manifest was made with seed ${stored.seed}, test fraction ${stored.test_fraction}; this run asks for seed ${computed.seed}, ${computed.test_fraction}`,
      manifestPath,
    );
  }
  const now = new Set([...computed.train, ...computed.test]);
  const then = [...stored.train, ...stored.test];
  const missing = then.find((p) => !now.has(p));
  if (missing !== undefined || then.length !== now.size || new Set(then).size !== then.length) {
    const detail =
      missing !== undefined ? `"${missing}" is no longer in the dataset` : "the dataset's files changed";
    throw new DataError(
      `split manifest does not match the dataset at ${dataRoot}: ${detail} (move the manifest away to make a new split)`,
      manifestPath,
    );
  }
  return stored;
}
