/**
 * NATS credentials against real servers started with `--user/--pass`, `--auth` and TLS (certificates made
 * with openssl for the test): right ones work for KV leases, wrong ones fail with an error naming the
 * server, and option mistakes are caught before connecting.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  connectNats,
  natsAuthFromEnv,
  natsConnectOptions,
  redactNatsUrl,
} from "../../common/nats_connect.js";
import { natsMembership } from "../../coordinator/membership/nats_membership.js";
import { holdLease } from "../../worker/nats_lease.js";
import { type NatsTestServer, startNatsServer } from "../helpers/nats_server.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "inflora-nats-auth-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A CA and, signed by it, a server certificate for 127.0.0.1 and a client certificate. */
function makeCertificates(): {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
} {
  const f = (name: string) => path.join(dir, name);
  const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    f("ca.key"),
    "-out",
    f("ca.pem"),
    "-days",
    "1",
    "-subj",
    "/CN=inflora test CA",
  );
  for (const [who, ext] of [
    // With an IP in the URL the client checks the certificate against "localhost" (see the report).
    ["server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"],
    ["client", "extendedKeyUsage=clientAuth\n"],
  ] as const) {
    writeFileSync(f(`${who}.ext`), ext);
    openssl("req", ...ec, "-keyout", f(`${who}.key`), "-out", f(`${who}.csr`), "-subj", `/CN=inflora ${who}`);
    openssl(
      "x509",
      "-req",
      "-in",
      f(`${who}.csr`),
      "-CA",
      f("ca.pem"),
      "-CAkey",
      f("ca.key"),
      "-CAcreateserial",
      "-out",
      f(`${who}.pem`),
      "-days",
      "1",
      "-extfile",
      f(`${who}.ext`),
    );
  }
  return {
    ca: f("ca.pem"),
    serverCert: f("server.pem"),
    serverKey: f("server.key"),
    clientCert: f("client.pem"),
    clientKey: f("client.key"),
  };
}

/** A lease written and seen through authenticated connections: JetStream works for that user. */
async function leaseRoundTrip(
  server: NatsTestServer,
  auth: Parameters<typeof holdLease>[0]["auth"],
  url = server.url,
) {
  const m = await natsMembership({ url, auth, bucket: "auth_workers", leaseMs: 2000 });
  const lease = await holdLease({
    url,
    auth,
    bucket: "auth_workers",
    leaseMs: 2000,
    endpoint: { id: "w", address: "127.0.0.1:7000", capabilities: {} },
  });
  expect((await m.waitFor(1, 5000)).map((w) => w.id)).toEqual(["w"]);
  await lease.stop();
  await m.close();
}

describe("NATS user/password", () => {
  let server: NatsTestServer;
  beforeAll(async () => {
    server = await startNatsServer({ user: "inflora", password: "s3cret" });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("accepts the right credentials, as options or in the URL", async () => {
    await leaseRoundTrip(server, { user: "inflora", password: "s3cret" });
    await leaseRoundTrip(server, undefined, server.url.replace("nats://", "nats://inflora:s3cret@"));
  });

  it("refuses wrong or missing credentials with an error naming the server, without the password", async () => {
    const wrong = connectNats(server.url, { auth: { user: "inflora", password: "nope" } });
    await expect(wrong).rejects.toThrow(new RegExp(`cannot connect to NATS at ${server.url}: .*[Aa]uthoriz`));
    await expect(connectNats(server.url)).rejects.toThrow(/cannot connect to NATS at .*[Aa]uthoriz/);
    const inUrl = server.url.replace("nats://", "nats://inflora:nope@");
    const err: Error = await natsMembership({ url: inUrl }).then(
      () => new Error("connected"),
      (e: Error) => e,
    );
    expect(err.message).toMatch(/cannot connect to NATS at nats:\/\/inflora:\*\*\*@127\.0\.0\.1:\d+/);
    expect(err.message).not.toContain("nope");
  });
});

describe("NATS token", () => {
  let server: NatsTestServer;
  beforeAll(async () => {
    server = await startNatsServer({ token: "t0ken" });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("accepts the right token and refuses a wrong or missing one", async () => {
    await leaseRoundTrip(server, { token: "t0ken" });
    await expect(connectNats(server.url, { auth: { token: "wrong" } })).rejects.toThrow(
      new RegExp(`cannot connect to NATS at ${server.url}: .*[Aa]uthoriz`),
    );
    await expect(
      holdLease({ url: server.url, endpoint: { id: "w", address: "h:1", capabilities: {} } }),
    ).rejects.toThrow(/cannot connect to NATS at .*[Aa]uthoriz/);
  });
});

describe("NATS TLS", () => {
  let certs: ReturnType<typeof makeCertificates>;
  let server: NatsTestServer;
  beforeAll(async () => {
    certs = makeCertificates();
    server = await startNatsServer({
      tls: { cert: certs.serverCert, key: certs.serverKey, ca: certs.ca, verify: true },
    });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("connects with the CA and a client certificate (mutual TLS), by IP or host name", async () => {
    const tls = { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey };
    await leaseRoundTrip(server, { tls });
    await leaseRoundTrip(server, { tls }, `tls://localhost:${server.port}`);
  });

  it("refuses a server it cannot verify and a client without a certificate", async () => {
    await expect(connectNats(server.url, { auth: { tls: {} } })).rejects.toThrow(
      /cannot connect to NATS at .*unable to verify the first certificate/,
    );
    await expect(
      connectNats(server.url, { auth: { tls: { ca: certs.ca } }, timeoutMs: 1000 }),
    ).rejects.toThrow(
      /cannot connect to NATS at .*timeout \(if the server requires client certificates, give a TLS certificate and key\)/,
    );
  });
});

describe("NATS connection options", () => {
  it("reject inconsistent credentials and unreadable files before connecting", () => {
    const url = "nats://127.0.0.1:4222";
    expect(() => natsConnectOptions(url, { auth: { user: "u" } })).toThrow(
      "NATS auth for nats://127.0.0.1:4222: user and password must be given together",
    );
    expect(() => natsConnectOptions(url, { auth: { user: "u", password: "p", token: "t" } })).toThrow(
      /either user\/password or a token/,
    );
    expect(() => natsConnectOptions(url, { auth: { tls: { cert: "/x.pem" } } })).toThrow(/needs its key/);
    expect(() => natsConnectOptions(url, { auth: { tls: { ca: "/nonexistent/ca.pem" } } })).toThrow(
      /NATS TLS CA file '\/nonexistent\/ca.pem' \(for nats:\/\/127.0.0.1:4222\) is not readable/,
    );
    expect(() => natsConnectOptions("http://h:1")).toThrow(/invalid NATS URL 'http:\/\/h:1': scheme must be/);
    expect(() => natsConnectOptions("nats://h:1/path")).toThrow(/unexpected path/);
  });

  it("parse URLs, credentials in them, clusters and tls://", () => {
    expect(natsConnectOptions("127.0.0.1:4333").servers).toEqual(["127.0.0.1:4333"]);
    expect(natsConnectOptions("nats://a, nats://b:5000").servers).toEqual(["a:4222", "b:5000"]);
    const creds = natsConnectOptions("nats://me:p%40ss@h:1");
    expect([creds.user, creds.pass, creds.servers]).toEqual(["me", "p@ss", ["h:1"]]);
    expect(natsConnectOptions("nats://tok@h:1").token).toBe("tok");
    expect(natsConnectOptions("nats://tok@h:1", { auth: { token: "explicit" } }).token).toBe("explicit");
    expect(natsConnectOptions("tls://h:1").tls).toEqual({});
    expect(natsConnectOptions("nats://h:1").tls).toBeUndefined();
    expect(redactNatsUrl("nats://me:secret@h:1,nats://tok@g:2")).toBe("nats://me:***@h:1,nats://***@g:2");
  });

  it("read credentials from the environment", () => {
    expect(natsAuthFromEnv({})).toBeUndefined();
    expect(natsAuthFromEnv({ INFLORA_NATS_USER: "u", INFLORA_NATS_PASSWORD: "p" })).toEqual({
      user: "u",
      password: "p",
      token: undefined,
      tls: undefined,
    });
    expect(natsAuthFromEnv({ INFLORA_NATS_TOKEN: "t", INFLORA_NATS_CA: "/ca.pem" })).toMatchObject({
      token: "t",
      tls: { ca: "/ca.pem" },
    });
  });
});
