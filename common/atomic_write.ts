import { randomBytes } from "node:crypto";
import { appendFileSync, statfsSync } from "node:fs";
import { type FileHandle, mkdir, open, rename, rm, statfs } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/**
 * Writes `data` to `path` so that readers see either the old file or the complete new one, never a
 * partial write: the bytes go to a temp file in the same folder (rename is only atomic within one file
 * system), which is fsynced and then renamed over the target. On any error the temp file is removed and
 * the target is left as it was. Missing parent folders are created.
 *
 * A chunk array is written chunk by chunk, so large tensor files never need one contiguous buffer.
 *
 * A full file system (ENOSPC, or EDQUOT for a quota) becomes a DiskFullError naming the file, the bytes
 * the write needed and the bytes free once the temp file is gone.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string | Uint8Array[]): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  let fh: FileHandle | undefined;
  const chunks = typeof data === "string" ? [Buffer.from(data, "utf8")] : Array.isArray(data) ? data : [data];
  try {
    // "wx": never clobber another writer's temp file, however unlikely the name clash.
    fh = await open(tmp, "wx");
    for (const chunk of chunks) {
      if (!(chunk instanceof Uint8Array)) {
        throw new TypeError(`writeFileAtomic(${path}): chunk is not a Uint8Array`);
      }
      await writeFully(fh, chunk);
    }
    // Without the fsync a crash after the rename can leave an empty or truncated file under the final name.
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, path);
  } catch (err) {
    if (fh !== undefined) await fh.close().catch(() => {});
    await rm(tmp, { force: true }).catch(() => {});
    if (isDiskFull(err)) throw await diskFullError(path, chunks, err);
    throw err;
  }
  await syncDir(dir);
}

/** The file system holding a file is full: the message names the file, the bytes needed and free. */
export class DiskFullError extends Error {
  override readonly name = "DiskFullError";
  constructor(
    readonly file: string,
    readonly neededBytes: number,
    readonly freeBytes: number | undefined,
    readonly code: string,
    options: { cause: unknown },
    outcome = "any earlier file of this name is unchanged and the temp file is removed",
  ) {
    const free = freeBytes === undefined ? "free space unknown" : `${freeBytes} bytes free`;
    super(
      `${file}: no space left to write it (${code}): needs ${neededBytes} bytes, ${free} on its file system; ${outcome}`,
      options,
    );
  }
}

export function isDiskFull(err: unknown): err is NodeJS.ErrnoException {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}

async function diskFullError(path: string, chunks: Uint8Array[], err: NodeJS.ErrnoException) {
  const needed = chunks.reduce((n, c) => n + (c instanceof Uint8Array ? c.byteLength : 0), 0);
  // Free space for an unprivileged writer (bavail), measured after the temp file was removed.
  const free = await statfs(dirname(path)).then(
    (s) => s.bavail * s.bsize,
    () => undefined,
  );
  return new DiskFullError(path, needed, free, err.code ?? "ENOSPC", { cause: err });
}

/** FileHandle.write may write fewer bytes than asked (large buffers, some file systems). */
async function writeFully(fh: FileHandle, chunk: Uint8Array): Promise<void> {
  // Writes of more than 2 GiB at once fail on some platforms; 1 GiB slices stay clear of that.
  const maxSlice = 1 << 30;
  let off = 0;
  while (off < chunk.byteLength) {
    const len = Math.min(maxSlice, chunk.byteLength - off);
    const { bytesWritten } = await fh.write(chunk, off, len);
    off += bytesWritten;
  }
}

/** Makes the rename itself durable. Directories cannot be opened for fsync everywhere (Windows); best effort. */
async function syncDir(dir: string): Promise<void> {
  let dh: FileHandle | undefined;
  try {
    dh = await open(dir, "r");
    await dh.sync();
  } catch {
    // The data is already safely in place; only durability across a power loss is weaker here.
  } finally {
    await dh?.close().catch(() => {});
  }
}

/**
 * Appends a line (the event log). A full file system becomes a DiskFullError
 * naming the file, like the atomic writes, instead of Node's bare ENOSPC.
 */
export function appendLineSync(path: string, line: string): void {
  try {
    appendFileSync(path, line);
  } catch (err) {
    if (!isDiskFull(err)) throw err;
    let free: number | undefined;
    try {
      const s = statfsSync(dirname(path));
      free = s.bavail * s.bsize;
    } catch {
      free = undefined;
    }
    throw new DiskFullError(
      path,
      Buffer.byteLength(line),
      free,
      err.code ?? "ENOSPC",
      { cause: err },
      "the line was not appended",
    );
  }
}
