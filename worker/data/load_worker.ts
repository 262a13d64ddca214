/** Piscina worker: runs load jobs for one dataset; its context arrives as workerData. */
import { move, workerData } from "piscina";
import { DataError } from "../../common/data/errors.js";
import type { JobContextData, JobReply, LoadJob } from "./load_job.js";
import { JobRunner } from "./run_job.js";

const runner = new JobRunner(workerData as JobContextData);

export default async function runLoadJob(job: LoadJob): Promise<JobReply | Float32Array> {
  const out = new Float32Array(job.indices.length * runner.imageFloats);
  try {
    const bad = await runner.run(job, out, 0);
    // Transfer the pixels back without a copy; the rare skipped-image report rides along uncopied.
    return bad.length === 0 ? (move(out) as Float32Array) : { data: out, bad };
  } catch (e) {
    // Error classes do not survive the thread boundary: send the parts to rebuild it.
    if (e instanceof DataError) return { dataError: { detail: e.detail, file: e.file } };
    throw e;
  }
}
