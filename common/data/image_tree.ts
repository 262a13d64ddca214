import { readdir, realpath, stat } from "node:fs/promises";
import { extname, join } from "node:path";
import { DataError } from "./errors.js";
import { compareCodePoints } from "./python_sort.js";

/** Image files a folder dataset picks up (case-insensitive), a subset of torchvision's ImageFolder list. */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set([
  ".jpg",
  ".jpeg",
  ".png",
  ".bmp",
  ".webp",
  ".tif",
  ".tiff",
]);

export function isImageFile(name: string): boolean {
  return !name.startsWith(".") && IMAGE_EXTENSIONS.has(extname(name).toLowerCase());
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** Throws a DataError naming `dir` unless it is an existing folder. */
export async function requireDirectory(dir: string, what: string): Promise<void> {
  let s: Awaited<ReturnType<typeof stat>>;
  try {
    s = await stat(dir);
  } catch {
    throw new DataError(`${what} does not exist`, dir);
  }
  if (!s.isDirectory()) throw new DataError(`${what} is not a folder`, dir);
}

/** Names of the sub-folders of `dir` (symlinks followed, hidden ones skipped), sorted as Python sorts. */
export async function listSubfolders(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const names: string[] = [];
  for (const e of entries) {
    if (e.name.startsWith(".")) continue;
    if (e.isDirectory() || (e.isSymbolicLink() && (await isDirectory(join(dir, e.name))))) names.push(e.name);
  }
  return names.sort(compareCodePoints);
}

/**
 * Image files under `dir`, recursively, in torchvision ImageFolder's order (folders sorted by path as
 * `sorted(os.walk(dir))` does, files sorted inside each folder). Paths are relative to `dir`.
 */
export async function listImagesRecursive(dir: string): Promise<string[]> {
  const folders: { rel: string; files: string[] }[] = [];
  const seen = new Set<string>();
  const walk = async (rel: string): Promise<void> => {
    const abs = rel === "" ? dir : join(dir, rel);
    const real = await realpath(abs);
    if (seen.has(real)) return; // a symlink cycle
    seen.add(real);
    const entries = await readdir(abs, { withFileTypes: true });
    const files: string[] = [];
    const subdirs: string[] = [];
    for (const e of entries) {
      if (e.name.startsWith(".")) continue;
      const isDir = e.isDirectory() || (e.isSymbolicLink() && (await isDirectory(join(abs, e.name))));
      if (isDir) subdirs.push(rel === "" ? e.name : `${rel}/${e.name}`);
      else if (isImageFile(e.name)) files.push(e.name);
    }
    folders.push({ rel, files: files.sort(compareCodePoints) });
    for (const s of subdirs) await walk(s);
  };
  await walk("");
  // os.walk yields (dirpath, …) tuples; sorting them sorts by the full dirpath string.
  folders.sort((a, b) => compareCodePoints(`${dir}/${a.rel}`, `${dir}/${b.rel}`));
  return folders.flatMap((f) => f.files.map((name) => (f.rel === "" ? name : `${f.rel}/${name}`)));
}
