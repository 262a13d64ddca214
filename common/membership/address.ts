/** `host:port` addresses of workers, as `--worker`, `--listen` and `--advertise` take them. */

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
