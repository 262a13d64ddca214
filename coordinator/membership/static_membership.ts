/**
 * Membership from `--worker host:port` flags (or a Kubernetes headless service's pod names): fixed for the
 * whole run, so errors in the list are reported before anything starts.
 */
import { describeMembers, type Membership, type MembershipEvent, type WorkerEndpoint } from "./types.js";

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;

/** Checks `host:port` and returns it normalised (trimmed); throws naming the flag value. */
export function parseWorkerAddress(value: string): string {
  const v = value.trim();
  const bad = (why: string) =>
    new Error(`invalid --worker '${value}': ${why} (expected host:port, e.g. 10.0.0.5:7000 or [::1]:7000)`);
  if (v.includes("://")) throw bad("no scheme, just host:port");
  let host: string;
  let port: string;
  if (v.startsWith("[")) {
    const close = v.indexOf("]");
    if (close < 0 || v[close + 1] !== ":") throw bad("bracketed IPv6 host must be followed by :port");
    host = v.slice(1, close);
    port = v.slice(close + 2);
    if (!IPV6.test(host) || !host.includes(":")) throw bad(`'${host}' is not an IPv6 address`);
  } else {
    const colon = v.lastIndexOf(":");
    if (colon < 0) throw bad("no port");
    host = v.slice(0, colon);
    port = v.slice(colon + 1);
    if (host.includes(":")) throw bad("IPv6 hosts must be written in brackets");
    if (!HOSTNAME.test(host)) throw bad(host === "" ? "no host" : `'${host}' is not a valid host name`);
  }
  if (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw bad(`port '${port}' is not a number in 1..65535`);
  }
  return v;
}

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
