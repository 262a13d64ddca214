/**
 * Parameters published by the coordinator on NATS (`inflora.v1.ParamSet`), kept for the TrainStep that
 * names them. The gRPC request carries the version and the SHA-256 of the published bytes; the feed
 * hands out a ParamSet only when both match — a forged or stale message on the subject is never used —
 * and waits briefly for one still in flight. Anything else is "stale params", and the coordinator resends
 * them over gRPC.
 */
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { log } from "../common/log.js";
import { decodeParamSet, paramSetVersion, sha256Hex } from "../common/param_set.js";
import type { TrainParams } from "../common/protocol.js";

/** What the gRPC service needs of a parameter feed. */
export interface ParamsFeed {
  /** Follows `subject` for a model of `depth` blocks of width D (replacing an earlier subject). */
  follow(subject: string, D: number, depth: number): boolean;
  /** The parameters of `version` whose encoding has `sha256`, waiting up to `waitMs`; else undefined. */
  get(version: number, sha256: string, waitMs: number): Promise<TrainParams | undefined>;
  close(): Promise<void>;
}

/** Messages kept: a late or retried call may name an earlier step's; forged ones take slots too. */
const KEEP = 8;

export class NatsParamsFeed implements ParamsFeed {
  private sub?: Subscription;
  private subject?: string;
  /** By `${version}/${sha256}`, oldest first. */
  private readonly kept = new Map<string, Uint8Array>();
  private readonly waiters = new Set<() => void>();
  private dims = { D: 0, depth: 0 };

  constructor(private readonly nc: NatsConnection) {}

  follow(subject: string, D: number, depth: number): boolean {
    this.dims = { D, depth };
    if (this.subject === subject && this.sub) return true;
    this.sub?.unsubscribe();
    this.kept.clear();
    this.subject = subject;
    this.sub = this.nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err) {
          log.warn({ subject, err: err.message }, "parameter subscription failed");
          return;
        }
        this.keep(msg.data);
      },
    });
    return true;
  }

  private keep(bytes: Uint8Array): void {
    let version: number;
    try {
      version = paramSetVersion(bytes);
    } catch (err) {
      log.warn(
        { subject: this.subject, err: (err as Error).message },
        "ignored a malformed parameter message",
      );
      return;
    }
    // Keyed by version and digest: the TrainStep says which digest it means, so a forged message under
    // the same version cannot displace the real one.
    this.kept.set(`${version}/${sha256Hex(bytes)}`, bytes);
    for (const key of [...this.kept.keys()].slice(0, -KEEP)) this.kept.delete(key);
    for (const wake of this.waiters) wake();
  }

  async get(version: number, sha256: string, waitMs: number): Promise<TrainParams | undefined> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const hit = this.kept.get(`${version}/${sha256}`);
      // The digest is the coordinator's, so these are its bytes; decoded only now, for the step using them.
      if (hit) return decodeParamSet(hit, this.dims.D, this.dims.depth);
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.waiters.add(wake);
      });
    }
  }

  async close(): Promise<void> {
    this.sub?.unsubscribe();
    this.sub = undefined;
    for (const wake of this.waiters) wake();
  }
}
