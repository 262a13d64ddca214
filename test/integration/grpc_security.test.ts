/**
 * Issue 4 part 7 on real gRPC: the bearer token (missing / wrong → UNAUTHENTICATED, health reachable
 * without it), the loopback-only rule without a token, the token file, TLS and mutual TLS with certificates
 * made by the openssl CLI. Issue 14: a worker reached by IP verifies against the certificate's IP SAN alone,
 * with no SNI (Node 26 refuses an IP as TLS server name).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { createServer as createTlsServer } from "node:tls";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { channelCredentials, SecurityConfigError } from "../../common/grpc_security.js";
import { GrpcWorkerClient, WorkerRpcError } from "../../coordinator/transport/grpc_client.js";
import { serveWorker, type WorkerServerHandle } from "../../worker/grpc_server.js";
import { FakeWorker, healthCheck, rejection, setupRequest, TOKEN } from "./grpc_helpers.js";

const dir = mkdtempSync(path.join(tmpdir(), "inflora-grpc-sec-"));
const servers: WorkerServerHandle[] = [];
const clients: GrpcWorkerClient[] = [];

beforeAll(() => {
  delete process.env.INFLORA_TOKEN;
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(servers.map((s) => s.close()));
  rmSync(dir, { recursive: true, force: true });
});

async function serve(options: Omit<Parameters<typeof serveWorker>[0], "worker">, worker = new FakeWorker()) {
  const server = await serveWorker({ worker, ...options });
  servers.push(server);
  return server;
}

function client(options: ConstructorParameters<typeof GrpcWorkerClient>[0]): GrpcWorkerClient {
  const c = new GrpcWorkerClient({ deadlineMs: 10_000, releaseOnClose: false, ...options });
  clients.push(c);
  return c;
}

describe("bearer token", () => {
  it("refuses calls without the token or with a wrong one (UNAUTHENTICATED), accepts the right one", async () => {
    const worker = new FakeWorker();
    const server = await serve({ listen: "127.0.0.1:0", security: { token: TOKEN } }, worker);
    const none = await rejection(client({ address: server.address }).setup(setupRequest(8, 2)));
    expect(none).toBeInstanceOf(WorkerRpcError);
    expect(none).toMatchObject({ code: status.UNAUTHENTICATED });
    expect(none.message).toContain("missing authorization");
    const wrong = await rejection(
      client({ address: server.address, security: { token: `${TOKEN}x` } }).setup(setupRequest(8, 2)),
    );
    expect(wrong).toMatchObject({ code: status.UNAUTHENTICATED, details: "wrong bearer token" });
    expect(worker.calls).toEqual([]);
    const reply = await client({ address: server.address, security: { token: TOKEN } }).setup(
      setupRequest(8, 2),
    );
    expect(reply.workerId).toBe("fake-worker");
  });

  it("reads the token from a file and from INFLORA_TOKEN", async () => {
    const file = path.join(dir, "token");
    writeFileSync(file, `${TOKEN}\n`);
    const server = await serve({ listen: "127.0.0.1:0", security: { tokenFile: file } });
    await client({ address: server.address, security: { tokenFile: file } }).setup(setupRequest(8, 2));
    process.env.INFLORA_TOKEN = TOKEN;
    try {
      await client({ address: server.address }).setup(setupRequest(8, 2));
    } finally {
      delete process.env.INFLORA_TOKEN;
    }
    writeFileSync(path.join(dir, "empty"), "\n");
    await expect(
      serve({ listen: "127.0.0.1:0", security: { tokenFile: path.join(dir, "empty") } }),
    ).rejects.toThrow(/token file .*empty is empty/);
  });

  it("answers health checks without a token: SERVING once listening, the Worker service once set up", async () => {
    const server = await serve({ listen: "127.0.0.1:0", security: { token: TOKEN } });
    expect(await healthCheck(server.address, "")).toBe("SERVING");
    expect(await healthCheck(server.address, "inflora.v1.Worker")).toBe("NOT_SERVING");
    await client({ address: server.address, security: { token: TOKEN } }).setup(setupRequest(8, 2));
    expect(await healthCheck(server.address, "inflora.v1.Worker")).toBe("SERVING");
  });
});

describe("loopback rule", () => {
  it("refuses to listen beyond loopback without a token, naming the fix", async () => {
    for (const listen of ["0.0.0.0:0", "[::]:0", "10.1.2.3:0", "worker.example.org:0"]) {
      const err = await rejection(serve({ listen }));
      expect(err, listen).toBeInstanceOf(SecurityConfigError);
      expect(err.message).toContain(`refusing to listen on ${listen} without a bearer token`);
      expect(err.message).toContain("INFLORA_TOKEN");
    }
  });

  it("allows loopback addresses without a token, and any address with one", async () => {
    for (const listen of ["127.0.0.1:0", "localhost:0", "[::1]:0"]) {
      const server = await serve({ listen }).catch((err: Error) => {
        // A machine without IPv6 cannot bind ::1; that is not the rule under test.
        if (listen.startsWith("[::1]") && /EADDRNOTAVAIL|EAFNOSUPPORT|No address added/.test(err.message))
          return undefined;
        throw err;
      });
      if (server) expect(server.address).toMatch(/:\d+$/);
    }
    const any = await serve({ listen: "0.0.0.0:0", security: { token: TOKEN } });
    expect(any.port).toBeGreaterThan(0);
    await client({ address: `127.0.0.1:${any.port}`, security: { token: TOKEN } }).setup(setupRequest(8, 2));
  });
});

/**
 * A throwaway CA, a server certificate for 127.0.0.1/localhost, server certificates with only an IP SAN (as
 * `kubectl`-made certificates for pod IPs have) for 127.0.0.1 and for another address, and client
 * certificates.
 */
function makeCertificates(): Record<string, string> {
  const probe = spawnSync("openssl", ["version"], { encoding: "utf8" });
  if (probe.error || probe.status !== 0) {
    throw new Error(
      "the openssl CLI is needed to make test certificates: install it: apt-get install openssl",
    );
  }
  const f = (name: string) => path.join(dir, name);
  const openssl = (...args: string[]) => {
    const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`openssl ${args.join(" ")} failed:\n${r.stderr}`);
  };
  const key = (name: string) =>
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f(name));
  const ca = (name: string) => {
    key(`${name}.key`);
    openssl(
      "req",
      "-x509",
      "-new",
      "-key",
      f(`${name}.key`),
      "-out",
      f(`${name}.crt`),
      "-days",
      "1",
      "-subj",
      `/CN=${name}`,
    );
  };
  const leaf = (name: string, signer: string, ext: string) => {
    key(`${name}.key`);
    openssl("req", "-new", "-key", f(`${name}.key`), "-out", f(`${name}.csr`), "-subj", `/CN=${name}`);
    writeFileSync(f(`${name}.ext`), ext);
    openssl(
      "x509",
      "-req",
      "-in",
      f(`${name}.csr`),
      "-CA",
      f(`${signer}.crt`),
      "-CAkey",
      f(`${signer}.key`),
      "-CAcreateserial",
      "-out",
      f(`${name}.crt`),
      "-days",
      "1",
      "-extfile",
      f(`${name}.ext`),
    );
  };
  ca("test-ca");
  ca("other-ca");
  leaf("server", "test-ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  leaf("ip-only", "test-ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  leaf("other-ip", "test-ca", "subjectAltName=IP:10.9.8.7\nextendedKeyUsage=serverAuth\n");
  leaf("client", "test-ca", "extendedKeyUsage=clientAuth\n");
  leaf("intruder", "other-ca", "extendedKeyUsage=clientAuth\n");
  return {
    ca: f("test-ca.crt"),
    serverCert: f("server.crt"),
    serverKey: f("server.key"),
    ipOnlyCert: f("ip-only.crt"),
    ipOnlyKey: f("ip-only.key"),
    otherIpCert: f("other-ip.crt"),
    otherIpKey: f("other-ip.key"),
    clientCert: f("client.crt"),
    clientKey: f("client.key"),
    intruderCert: f("intruder.crt"),
    intruderKey: f("intruder.key"),
  };
}

describe("TLS", () => {
  let pem: Record<string, string>;
  beforeAll(() => {
    pem = makeCertificates();
  });

  it("serves over TLS: a client trusting the CA gets through, a plaintext client does not", async () => {
    const server = await serve({
      listen: "127.0.0.1:0",
      security: { token: TOKEN, tls: { certFile: pem.serverCert, keyFile: pem.serverKey } },
    });
    const ok = client({ address: server.address, security: { token: TOKEN, tls: { caFile: pem.ca } } });
    expect((await ok.setup(setupRequest(8, 2))).workerId).toBe("fake-worker");
    const byName = client({
      address: `localhost:${server.port}`,
      security: { token: TOKEN, tls: { caFile: pem.ca } },
    });
    await byName.setup(setupRequest(8, 2));
    const plain = await rejection(
      client({ address: server.address, security: { token: TOKEN }, deadlineMs: 3000 }).setup(
        setupRequest(8, 2),
      ),
    );
    expect(plain).toBeInstanceOf(WorkerRpcError);
    expect([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.INTERNAL]).toContain(
      (plain as WorkerRpcError).code,
    );
    expect(await healthCheck(server.address, "", channelCredentials({ caFile: pem.ca }))).toBe("SERVING");
  });

  it("requires a client certificate from the client CA under mutual TLS", async () => {
    const server = await serve({
      listen: "127.0.0.1:0",
      security: {
        token: TOKEN,
        tls: { certFile: pem.serverCert, keyFile: pem.serverKey, clientCaFile: pem.ca },
      },
    });
    const mutual = client({
      address: server.address,
      security: { token: TOKEN, tls: { caFile: pem.ca, certFile: pem.clientCert, keyFile: pem.clientKey } },
    });
    expect((await mutual.setup(setupRequest(8, 2))).workerId).toBe("fake-worker");
    for (const tls of [
      { caFile: pem.ca },
      { caFile: pem.ca, certFile: pem.intruderCert, keyFile: pem.intruderKey },
    ]) {
      const refused = await rejection(
        client({ address: server.address, security: { token: TOKEN, tls }, deadlineMs: 3000 }).setup(
          setupRequest(8, 2),
        ),
      );
      expect(refused, JSON.stringify(tls)).toBeInstanceOf(WorkerRpcError);
      expect([status.UNAVAILABLE, status.DEADLINE_EXCEEDED]).toContain((refused as WorkerRpcError).code);
    }
  });

  it("verifies a worker reached by IP against a certificate with only that IP as SAN", async () => {
    const server = await serve({
      listen: "127.0.0.1:0",
      security: { token: TOKEN, tls: { certFile: pem.ipOnlyCert, keyFile: pem.ipOnlyKey } },
    });
    const byIp = client({ address: server.address, security: { token: TOKEN, tls: { caFile: pem.ca } } });
    expect((await byIp.setup(setupRequest(8, 2))).workerId).toBe("fake-worker");
    // An IP given as the name to verify (the certificate's IP, reached under another host name).
    const named = client({
      address: `localhost:${server.port}`,
      security: { token: TOKEN, tls: { caFile: pem.ca, serverName: "127.0.0.1" } },
    });
    expect((await named.setup(setupRequest(8, 2))).workerId).toBe("fake-worker");
    // The same certificate does not vouch for a DNS name: an IP SAN matches only its IP.
    const byName = await rejection(
      client({
        address: `localhost:${server.port}`,
        security: { token: TOKEN, tls: { caFile: pem.ca } },
        deadlineMs: 3000,
      }).setup(setupRequest(8, 2)),
    );
    expect(byName).toMatchObject({ code: status.UNAVAILABLE });
    expect(byName.message).toContain("localhost");
  });

  it("refuses a worker whose certificate is for another IP, naming the mismatch", async () => {
    const worker = new FakeWorker();
    const server = await serve(
      {
        listen: "127.0.0.1:0",
        security: { token: TOKEN, tls: { certFile: pem.otherIpCert, keyFile: pem.otherIpKey } },
      },
      worker,
    );
    for (const tls of [{ caFile: pem.ca }, { caFile: pem.ca, serverName: "10.9.8.6" }]) {
      const refused = await rejection(
        client({ address: server.address, security: { token: TOKEN, tls }, deadlineMs: 3000 }).setup(
          setupRequest(8, 2),
        ),
      );
      expect(refused, JSON.stringify(tls)).toBeInstanceOf(WorkerRpcError);
      expect(refused).toMatchObject({ code: status.UNAVAILABLE });
      expect(refused.message).toMatch(/IP: 10\.9\.8\.6|IP: 127\.0\.0\.1/);
      expect(refused.message).toContain("is not in the cert's list");
    }
    expect(worker.calls).toEqual([]);
    // Told to expect that IP, the client accepts it: the refusal above was the name check, not the chain.
    const asNamed = client({
      address: server.address,
      security: { token: TOKEN, tls: { caFile: pem.ca, serverName: "10.9.8.7" } },
    });
    expect((await asNamed.setup(setupRequest(8, 2))).workerId).toBe("fake-worker");
  });

  it("sends no SNI for an IP target or IP server name, and the DNS name for a named one", async () => {
    // The server names each handshake carried (false: none), seen by a bare TLS server that then hangs up;
    // one server per case, so a late retry of one client cannot count for the next.
    const serverNames = async (host: string, serverName?: string) => {
      const seen: (string | false | null)[] = [];
      const tlsServer = createTlsServer({
        cert: readFileSync(pem.serverCert),
        key: readFileSync(pem.serverKey),
        ALPNProtocols: ["h2"],
      });
      const first = new Promise<void>((resolve) =>
        tlsServer.on("secureConnection", (socket) => {
          seen.push(socket.servername);
          socket.destroy();
          resolve();
        }),
      );
      await new Promise<void>((resolve) => tlsServer.listen(0, "127.0.0.1", resolve));
      const { port } = tlsServer.address() as AddressInfo;
      const c = client({ address: `${host}:${port}`, security: { tls: { caFile: pem.ca, serverName } } });
      c.waitForReady(5000).catch(() => {});
      await first;
      await c.close();
      await new Promise((resolve) => tlsServer.close(resolve));
      return [...new Set(seen)];
    };
    expect(await serverNames("127.0.0.1")).toEqual([false]);
    expect(await serverNames("localhost", "127.0.0.1")).toEqual([false]);
    expect(await serverNames("localhost")).toEqual(["localhost"]);
    expect(await serverNames("127.0.0.1", "localhost")).toEqual(["localhost"]);
  });

  it("names the file when a certificate cannot be read", async () => {
    const err = await rejection(
      serve({
        listen: "127.0.0.1:0",
        security: { tls: { certFile: path.join(dir, "nope.crt"), keyFile: pem.serverKey } },
      }),
    );
    expect(err.message).toContain(`cannot read the server certificate ${path.join(dir, "nope.crt")}`);
  });
});
