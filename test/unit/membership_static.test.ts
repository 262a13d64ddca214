import { describe, expect, it } from "vitest";
import type { MembershipEvent } from "../../common/membership/types.js";
import { parseWorkerAddress, staticMembership } from "../../coordinator/membership/static_membership.js";

describe("static membership", () => {
  it("numbers the --worker list in order and never changes", async () => {
    const m = staticMembership(["10.0.0.5:7000", "worker-1.workers.default.svc:7000", "[::1]:7001"]);
    expect(m.members()).toEqual([
      { id: "static-0", address: "10.0.0.5:7000", capabilities: {} },
      { id: "static-1", address: "worker-1.workers.default.svc:7000", capabilities: {} },
      { id: "static-2", address: "[::1]:7001", capabilities: {} },
    ]);
    expect((await m.waitFor(3, 10)).map((w) => w.id)).toEqual(["static-0", "static-1", "static-2"]);
    expect((await m.waitFor(1, 10)).length).toBe(3);
  });

  it("fails a wait for more workers than listed at once, naming them", async () => {
    const m = staticMembership(["localhost:7000"]);
    const t0 = Date.now();
    await expect(m.waitFor(2, 60_000)).rejects.toThrow(
      "need 2 workers but the --worker list has 1: static-0 (localhost:7000)",
    );
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it("reports every member as left: closed on close, once", async () => {
    const m = staticMembership(["a:1", "b:2"]);
    const events: MembershipEvent[] = [];
    const off = m.onChange((e) => events.push(e));
    await m.close();
    await m.close();
    expect(events.map((e) => (e.kind === "left" ? `${e.endpoint.id}:${e.reason}` : e.kind))).toEqual([
      "static-0:closed",
      "static-1:closed",
    ]);
    expect(m.members()).toEqual([]);
    off();
  });

  it("rejects malformed addresses, naming the flag value", () => {
    const cases: Array<[string, RegExp]> = [
      ["nohost", /invalid --worker 'nohost': no port/],
      [":7000", /invalid --worker ':7000': no host/],
      ["host:", /port '' is not a number in 1\.\.65535/],
      ["host:0", /port '0' is not a number/],
      ["host:65536", /port '65536' is not a number/],
      ["host:70a", /port '70a' is not a number/],
      ["http://host:7000", /invalid --worker 'http:\/\/host:7000': no scheme, just host:port/],
      ["bad_host:7000", /'bad_host' is not a valid host name/],
      ["::1:7000", /IPv6 hosts must be written in brackets/],
      ["[::1]7000", /bracketed IPv6 host must be followed by :port/],
      ["[zz]:7000", /'zz' is not an IPv6 address/],
    ];
    for (const [value, message] of cases) {
      expect(() => parseWorkerAddress(value), value).toThrow(message);
      expect(() => staticMembership(["ok:1", value]), value).toThrow(message);
    }
    expect(() => staticMembership([])).toThrow(/at least one --worker/);
    expect(() => staticMembership(["h:1", " h:1 "])).toThrow("--worker 'h:1' is given more than once");
    expect(parseWorkerAddress(" h:1 ")).toBe("h:1");
  });
});
