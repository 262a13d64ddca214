/**
 * `tail -f` for a JSON-lines file: reads complete lines from the start, then (when following) polls for
 * appended ones. Polling, not fs.watch: it behaves the same on network volumes (a run directory on NFS or a
 * PVC) where change notifications are unreliable. A truncated or replaced file is read again from its start.
 */
import { open, stat } from "node:fs/promises";
import { StringDecoder } from "node:string_decoder";
import { setTimeout as sleep } from "node:timers/promises";

export interface TailOptions {
  follow: boolean;
  signal?: AbortSignal;
  pollMs?: number;
  /** Return false to stop reading (e.g. once the run finished). */
  onLine: (line: string) => boolean | undefined;
}

export async function tailLines(file: string, opts: TailOptions): Promise<void> {
  const pollMs = opts.pollMs ?? 250;
  let offset = 0;
  let ino: number | undefined;
  let partial = "";
  // Keeps a UTF-8 character split across two reads whole.
  let decoder = new StringDecoder("utf8");
  for (;;) {
    if (opts.signal?.aborted) return;
    const st = await stat(file).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT" && opts.follow) return undefined;
      throw err;
    });
    if (st) {
      if ((ino !== undefined && st.ino !== ino) || st.size < offset) {
        offset = 0;
        partial = "";
        decoder = new StringDecoder("utf8");
      }
      ino = st.ino;
      if (st.size > offset) {
        const fh = await open(file, "r");
        try {
          const buf = Buffer.alloc(st.size - offset);
          const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
          offset += bytesRead;
          partial += decoder.write(buf.subarray(0, bytesRead));
        } finally {
          await fh.close();
        }
        const lines = partial.split("\n");
        // The last piece is an unfinished line (or ""): keep it for the next read.
        partial = lines.pop() ?? "";
        for (const line of lines) {
          if (line.trim() === "") continue;
          if (opts.onLine(line) === false) return;
        }
      }
    }
    if (!opts.follow) {
      if (partial.trim() !== "") opts.onLine(partial);
      return;
    }
    try {
      await sleep(pollMs, undefined, { signal: opts.signal });
    } catch {
      return; // aborted
    }
  }
}
