/**
 * Membership from `--worker host:port` flags (or a Kubernetes headless service's pod names): fixed for the
 * whole run, so errors in the list are reported before anything starts.
 */
import { parseWorkerAddress } from "../../common/membership/address.js";
import {
  describeMembers,
  type Membership,
  type MembershipEvent,
  type WorkerEndpoint,
} from "../../common/membership/types.js";

export { parseWorkerAddress };

export function staticMembership(addresses: string[]): Membership {
  if (addresses.length === 0) throw new Error("static membership needs at least one --worker host:port");
  const seen = new Set<string>();
  const endpoints: WorkerEndpoint[] = addresses.map((a, i) => {
    const address = parseWorkerAddress(a);
    if (seen.has(address)) throw new Error(`--worker '${address}' is given more than once`);
    seen.add(address);
    return { id: `static-${i}`, address, capabilities: {} };
  });
  const listeners = new Set<(e: MembershipEvent) => void>();
  let closed = false;
  return {
    dynamic: false,
    members: () => (closed ? [] : [...endpoints]),
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    // A fixed list can never grow, so waiting would only delay the inevitable error.
    async waitFor(n) {
      if (!closed && endpoints.length >= n) return [...endpoints];
      throw new Error(
        `need ${n} workers but the --worker list has ${closed ? 0 : endpoints.length}: ${describeMembers(closed ? [] : endpoints)}`,
      );
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const endpoint of endpoints)
        for (const l of [...listeners]) l({ kind: "left", endpoint, reason: "closed" });
      listeners.clear();
    },
  };
}
