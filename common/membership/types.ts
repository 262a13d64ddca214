/**
 * Which workers a run may use. Two sources implement it: a fixed `--worker host:port` list and a NATS KV
 * bucket of leases; the coordinator sees only this interface.
 */

export interface WorkerEndpoint {
  readonly id: string;
  /** host:port of the worker's gRPC server. */
  readonly address: string;
  /** backend, device, version… as announced by the worker; informative, not trusted (the handshake is). */
  readonly capabilities: Readonly<Record<string, string>>;
}

export type LeaveReason = "deleted" | "lease-expired" | "closed";

export type MembershipEvent =
  | { kind: "joined"; endpoint: WorkerEndpoint }
  | { kind: "left"; endpoint: WorkerEndpoint; reason: LeaveReason };

export interface Membership {
  /** Whether new members can appear (discovery) or the list is fixed for the run. */
  readonly dynamic: boolean;
  /** Members known now. */
  members(): WorkerEndpoint[];
  /** Listener for joins and departures; returns an unsubscribe function. */
  onChange(listener: (e: MembershipEvent) => void): () => void;
  /** Resolves once at least `n` members are known (or rejects after timeoutMs naming what it saw). */
  waitFor(n: number, timeoutMs: number): Promise<WorkerEndpoint[]>;
  /** Stops watching; listeners still subscribed get a "left: closed" for every member. */
  close(): Promise<void>;
}

/** "w1 (10.0.0.5:7000)" lists for error messages. */
export function describeMembers(members: readonly WorkerEndpoint[]): string {
  return members.length === 0 ? "none" : members.map((m) => `${m.id} (${m.address})`).join(", ");
}
