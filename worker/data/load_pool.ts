import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { Piscina } from "piscina";
import { DataError } from "../../common/data/errors.js";
import type { BadImage, JobContextData, JobReply, LoadJob } from "./load_job.js";

/**
 * A pool of worker threads that run load jobs. The worker file is TypeScript when this module is (run
 * through tsx or vitest), so the threads then load it through tsx's loader, resolved from this package.
 * The threads run the resampling; sharp's decodes run on the process's libuv threads, which number
 * UV_THREADPOOL_SIZE (default 4, fixed at the first asynchronous I/O): a worker process with more than
 * about 4 loader threads should set it in its environment.
 */
export class LoadPool {
  private readonly pool: Piscina;

  constructor(threads: number, context: JobContextData) {
    const isTs = import.meta.url.endsWith(".ts");
    const filename = new URL(isTs ? "./load_worker.ts" : "./load_worker.js", import.meta.url).href;
    const execArgv = isTs
      ? ["--import", pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href]
      : [];
    this.pool = new Piscina({
      filename,
      execArgv,
      workerData: context,
      minThreads: threads,
      maxThreads: threads,
      // Hand every job of a batch (and of the prefetched next ones) to the threads at once: while the
      // main thread is busy computing it cannot dispatch jobs, but the threads keep working.
      concurrentTasksPerWorker: 8,
      // Jobs await decodes on libuv threads; "sync" atomics would park a thread with work still pending.
      atomics: "disabled",
      idleTimeout: 60_000,
    });
  }

  async run(job: LoadJob): Promise<{ data: Float32Array; bad: readonly BadImage[] }> {
    const result = (await this.pool.run(job)) as Float32Array | JobReply;
    if (result instanceof Float32Array) return { data: result, bad: [] };
    if ("dataError" in result) throw new DataError(result.dataError.detail, result.dataError.file);
    return result;
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
