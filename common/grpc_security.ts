/**
 * Who may talk to a worker: a shared bearer token on every RPC (checked by a server interceptor, compared in
 * constant time), optional TLS or mutual TLS from PEM files, and the rule that a server without a token
 * binds loopback only — an unauthenticated worker must never be reachable from the network.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import {
  CallCredentials,
  type ChannelCredentials,
  type ChannelOptions,
  credentials,
  Metadata,
  ServerCredentials,
  ServerInterceptingCall,
  type ServerInterceptor,
  status,
} from "@grpc/grpc-js";
import { TlsChannelCredentials } from "./grpc_tls_credentials.js";

export const TOKEN_ENV = "INFLORA_TOKEN";
const AUTHORIZATION = "authorization";

export class SecurityConfigError extends Error {
  override readonly name = "SecurityConfigError";
}

export interface TokenOptions {
  /** The shared secret itself (tests, programmatic use). */
  readonly token?: string;
  /** A file holding the secret (a mounted Kubernetes Secret); surrounding whitespace is ignored. */
  readonly tokenFile?: string;
}

export interface ServerTlsOptions {
  /** PEM certificate chain and private key of the server. */
  readonly certFile: string;
  readonly keyFile: string;
  /** PEM CA bundle: when set, mutual TLS — every client must present a certificate signed by it. */
  readonly clientCaFile?: string;
}

export interface ClientTlsOptions {
  /** PEM CA bundle that signed the server's certificate; default: the system roots. */
  readonly caFile?: string;
  /** Client certificate and key, for servers that require mutual TLS. */
  readonly certFile?: string;
  readonly keyFile?: string;
  /**
   * Name (sent as SNI) or IP address (not sent) to verify the server certificate against when it differs
   * from the address's host.
   */
  readonly serverName?: string;
}

export interface ServerSecurityOptions extends TokenOptions {
  readonly tls?: ServerTlsOptions;
}

export interface ClientSecurityOptions extends TokenOptions {
  readonly tls?: ClientTlsOptions;
}

/** The token: `token`, else the contents of `tokenFile`, else $INFLORA_TOKEN; undefined when none is set. */
export function resolveToken(opts: TokenOptions, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (opts.token !== undefined) {
    if (opts.token.trim() === "") throw new SecurityConfigError("the bearer token is empty");
    return opts.token.trim();
  }
  if (opts.tokenFile !== undefined) {
    const token = readPem(opts.tokenFile, "token file").toString("utf8").trim();
    if (token === "") throw new SecurityConfigError(`token file ${opts.tokenFile} is empty`);
    return token;
  }
  // An empty variable is what a missing Secret reference leaves behind: treat it as unset, so the
  // loopback rule (not a silently empty token) decides.
  const fromEnv = env[TOKEN_ENV]?.trim();
  return fromEnv ? fromEnv : undefined;
}

function readPem(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new SecurityConfigError(`cannot read the ${what} ${file}: ${(err as Error).message}`);
  }
}

/** Splits `host:port` / `[v6]:port`; `unix:` addresses have no host. */
export function parseListenAddress(listen: string): { host: string; port: number } | { unix: string } {
  if (listen.startsWith("unix:")) return { unix: listen.slice("unix:".length) };
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d+)$/.exec(listen);
  if (!m) throw new SecurityConfigError(`listen address "${listen}": expected host:port (IPv6: [addr]:port)`);
  const port = Number(m[3]);
  if (port > 65535) throw new SecurityConfigError(`listen address "${listen}": port ${port} is out of range`);
  return { host: m[1] ?? m[2], port };
}

export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Throws unless the address is loopback (or a unix socket) or a token protects the server. */
export function assertBindAllowed(listen: string, hasToken: boolean): void {
  const addr = parseListenAddress(listen);
  if (hasToken || "unix" in addr || isLoopbackHost(addr.host)) return;
  throw new SecurityConfigError(
    `refusing to listen on ${listen} without a bearer token: anyone who can reach it could drive this worker. ` +
      `Set ${TOKEN_ENV} or a token file, or listen on loopback (127.0.0.1, ::1, localhost)`,
  );
}

export function serverCredentials(tls: ServerTlsOptions | undefined): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  const pair = {
    cert_chain: readPem(tls.certFile, "server certificate"),
    private_key: readPem(tls.keyFile, "server key"),
  };
  const clientCa = tls.clientCaFile === undefined ? null : readPem(tls.clientCaFile, "client CA bundle");
  return ServerCredentials.createSsl(clientCa, [pair], clientCa !== null);
}

export function channelCredentials(tls: ClientTlsOptions | undefined): ChannelCredentials {
  if (!tls) return credentials.createInsecure();
  if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
    throw new SecurityConfigError("client TLS: give both a certificate file and a key file, or neither");
  }
  // Without a CA file, the roots grpc-js would use: $GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, else Node's own.
  const caFile = tls.caFile ?? (process.env.GRPC_DEFAULT_SSL_ROOTS_FILE_PATH || undefined);
  const context = createSecureContext({
    ca: caFile === undefined ? undefined : readPem(caFile, "CA bundle"),
    key: tls.keyFile === undefined ? undefined : readPem(tls.keyFile, "client key"),
    cert: tls.certFile === undefined ? undefined : readPem(tls.certFile, "client certificate"),
    ciphers: process.env.GRPC_SSL_CIPHER_SUITES || undefined,
  });
  return new TlsChannelCredentials(context, tls.serverName || undefined);
}

/**
 * Channel options for TLS: the `:authority` of every call names `serverName` when set. Verification and SNI
 * are the credentials' job (common/grpc_tls_credentials.ts), not `grpc.ssl_target_name_override`, which
 * grpc-js would send as SNI even when it is an IP.
 */
export function tlsChannelOptions(tls: ClientTlsOptions | undefined): ChannelOptions {
  if (!tls?.serverName) return {};
  return { "grpc.default_authority": tls.serverName };
}

/**
 * Adds `authorization: Bearer <token>` to every call. Passed per call rather than composed into the channel
 * credentials, because grpc-js refuses to compose call credentials with an insecure channel — and a
 * token over plain HTTP/2 inside a cluster (or behind a mesh that does TLS) is a supported setup.
 */
export function bearerCallCredentials(token: string): CallCredentials {
  return CallCredentials.createFromMetadataGenerator((_params, callback) => {
    const md = new Metadata();
    md.set(AUTHORIZATION, `Bearer ${token}`);
    callback(null, md);
  });
}

function digest(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

/** Why `metadata` does not carry the token, or undefined when it does. */
export function checkBearer(metadata: Metadata, expectedDigest: Buffer): string | undefined {
  const values = metadata.get(AUTHORIZATION);
  if (values.length === 0) return "missing authorization metadata (expected: Bearer <token>)";
  if (values.length > 1) return "more than one authorization header";
  const m = /^Bearer\s+(.+)$/i.exec(String(values[0]).trim());
  if (!m) return "authorization metadata is not a Bearer token";
  // Hashing first gives equal lengths, so timingSafeEqual compares in constant time whatever was sent.
  if (!timingSafeEqual(digest(m[1]), expectedDigest)) return "wrong bearer token";
  return undefined;
}

/**
 * Refuses calls without the token with UNAUTHENTICATED before any handler runs. `exempt` paths pass
 * unchecked: the health service, because Kubernetes gRPC probes cannot send headers.
 */
export function bearerTokenInterceptor(
  token: string,
  exempt: (path: string) => boolean,
  /** Told about every refused call (for the log: a misconfigured coordinator, or someone probing). */
  onRefused?: (info: { path: string; peer: string; reason: string }) => void,
): ServerInterceptor {
  const expected = digest(token);
  return (method, call) => {
    if (exempt(method.path)) return new ServerInterceptingCall(call);
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, accept) => {
            const failure = checkBearer(metadata, expected);
            if (failure === undefined) return accept(metadata);
            onRefused?.({ path: method.path, peer: call.getPeer(), reason: failure });
            call.sendStatus({ code: status.UNAUTHENTICATED, details: failure, metadata: new Metadata() });
          },
        }),
    });
  };
}
