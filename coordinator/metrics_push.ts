/**
 * `--pushgateway URL`: a run's final series pushed to a Prometheus Pushgateway, for batch semantics — the
 * coordinator Job completes and its pod goes away, but the Pushgateway keeps the last values for
 * Prometheus to scrape (with `honor_labels: true`).
 */
import { Pushgateway } from "prom-client";
import type { CoordinatorMetrics } from "./metrics.js";

/** The Pushgateway job the coordinator pushes under; the run id is the grouping key's other label. */
export const PUSH_JOB = "inflora";

export class PushError extends Error {
  override readonly name = "PushError";
}

/**
 * Replaces the group `job="inflora", run=<run>` with the run's series (PUT, so a resumed run's push
 * leaves no series of an earlier attempt behind).
 */
export async function pushRunMetrics(url: string, metrics: CoordinatorMetrics, run: string): Promise<void> {
  const gateway = new Pushgateway(url, { timeout: 10_000 }, metrics.runRegistry(run));
  try {
    await gateway.push({ jobName: PUSH_JOB, groupings: { run } });
  } catch (err) {
    throw new PushError(
      `pushing run ${run}'s metrics to the Pushgateway at ${url} failed: ${(err as Error).message}`,
    );
  }
}
