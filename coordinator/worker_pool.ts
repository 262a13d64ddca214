/**
 * The coordinator's view of its workers: setup, version-keyed state broadcast, and fanning micro-shards
 * out so that each worker gets a contiguous block; results always come back in micro-shard order.
 */
import type { MicroShard, SetupReply, SetupRequest, TaskState, WorkerClient } from "../common/protocol.js";

export class WorkerPool {
  private readonly stateVersion = new Map<WorkerClient, number>();

  constructor(readonly workers: WorkerClient[]) {
    if (workers.length === 0) throw new Error("a run needs at least one worker");
  }

  async setup(req: SetupRequest): Promise<SetupReply[]> {
    return Promise.all(this.workers.map((w) => w.setup(req)));
  }

  /** Sends the state to every worker that does not hold it yet. */
  async publishState(state: TaskState): Promise<void> {
    await Promise.all(
      this.workers.map(async (w) => {
        if (this.stateVersion.get(w) === state.version) return;
        await w.setTaskState(state);
        this.stateVersion.set(w, state.version);
      }),
    );
  }

  /** Splits shards into contiguous blocks, one per worker, and gathers results sorted by shard index. */
  async map<R extends { index: number }>(
    shards: MicroShard[],
    call: (worker: WorkerClient, shards: MicroShard[], workerIndex: number) => Promise<R[]>,
  ): Promise<R[]> {
    const n = Math.min(this.workers.length, shards.length);
    const base = Math.floor(shards.length / n);
    const extra = shards.length % n;
    const blocks: MicroShard[][] = [];
    for (let k = 0, s = 0; k < n; k++) {
      const len = base + (k < extra ? 1 : 0);
      blocks.push(shards.slice(s, s + len));
      s += len;
    }
    const parts = await Promise.all(blocks.map((b, k) => call(this.workers[k], b, k)));
    return parts.flat().sort((a, b) => a.index - b.index);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
  }
}
