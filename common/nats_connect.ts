/**
 * One place that turns a NATS URL plus credentials into a connection, so the coordinator, the workers and
 * `inflora watch` agree on auth, TLS and reconnect behaviour, and every failure names the server it was for
 * (with any password in the URL masked).
 */
import { accessSync, constants } from "node:fs";
import { connect, type NatsConnection, type NodeConnectionOptions } from "@nats-io/transport-node";

export interface NatsTls {
  /** PEM file of the CA that signed the server certificate (omit to trust the system CAs). */
  readonly ca?: string;
  /** PEM client certificate and key, for servers that verify clients (mutual TLS). */
  readonly cert?: string;
  readonly key?: string;
}

export interface NatsAuth {
  readonly user?: string;
  readonly password?: string;
  readonly token?: string;
  /** Present (even `{}`) means the connection must use TLS. */
  readonly tls?: NatsTls;
}

export interface NatsConnectOptions {
  readonly auth?: NatsAuth;
  /** Shown by the server's monitoring (`connz`), handy when several runs share one server. */
  readonly name?: string;
  /** Long-lived clients keep reconnecting forever (default); one-shot tools may prefer failing. */
  readonly reconnect?: boolean;
  readonly timeoutMs?: number;
}

/** The URL with any password or token replaced by `***`, for messages and logs. */
export function redactNatsUrl(url: string): string {
  return url
    .split(",")
    .map((part) =>
      part.trim().replace(/^([a-z]+:\/\/)?([^@/]+)@/i, (_m, scheme = "", cred: string) => {
        const user = cred.includes(":") ? `${cred.slice(0, cred.indexOf(":"))}:***` : "***";
        return `${scheme}${user}@`;
      }),
    )
    .join(",");
}

interface ParsedUrl {
  servers: string[];
  user?: string;
  password?: string;
  token?: string;
  tls: boolean;
}

function parseNatsUrl(url: string): ParsedUrl {
  const shown = redactNatsUrl(url);
  const parts = url
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (parts.length === 0) throw new Error(`invalid NATS URL '${shown}': expected nats://host:port`);
  const out: ParsedUrl = { servers: [], tls: false };
  for (const part of parts) {
    let u: URL;
    try {
      u = new URL(/^[a-z]+:\/\//i.test(part) ? part : `nats://${part}`);
    } catch {
      throw new Error(`invalid NATS URL '${shown}': expected nats://host:port`);
    }
    if (u.protocol !== "nats:" && u.protocol !== "tls:") {
      throw new Error(`invalid NATS URL '${shown}': scheme must be nats:// or tls://, not ${u.protocol}//`);
    }
    if (u.hostname === "") throw new Error(`invalid NATS URL '${shown}': no host`);
    if (u.pathname !== "" && u.pathname !== "/")
      throw new Error(`invalid NATS URL '${shown}': unexpected path`);
    if (u.protocol === "tls:") out.tls = true;
    // Credentials in the URL are a common way to pass them (e.g. from a Kubernetes Secret); the client
    // wants them as options, and we keep them out of the server list so they never reach a log line.
    if (u.username !== "" && u.password !== "") {
      out.user = decodeURIComponent(u.username);
      out.password = decodeURIComponent(u.password);
    } else if (u.username !== "") {
      out.token = decodeURIComponent(u.username);
    }
    out.servers.push(`${u.hostname.includes(":") ? `[${u.hostname}]` : u.hostname}:${u.port || "4222"}`);
  }
  return out;
}

function checkReadable(file: string, what: string, shown: string): void {
  try {
    accessSync(file, constants.R_OK);
  } catch (err) {
    throw new Error(
      `NATS TLS ${what} file '${file}' (for ${shown}) is not readable: ${(err as Error).message}`,
    );
  }
}

/** The client options for `url` and `auth`; explicit `auth` fields win over credentials in the URL. */
export function natsConnectOptions(url: string, opts: NatsConnectOptions = {}): NodeConnectionOptions {
  const shown = redactNatsUrl(url);
  const parsed = parseNatsUrl(url);
  const auth = opts.auth ?? {};
  const user = auth.user ?? parsed.user;
  const password = auth.password ?? parsed.password;
  const token = auth.token ?? parsed.token;
  if ((user === undefined) !== (password === undefined)) {
    throw new Error(`NATS auth for ${shown}: user and password must be given together`);
  }
  if (user !== undefined && token !== undefined) {
    throw new Error(`NATS auth for ${shown}: give either user/password or a token, not both`);
  }
  const o: NodeConnectionOptions = {
    servers: parsed.servers,
    name: opts.name,
    timeout: opts.timeoutMs ?? 5000,
    // Fail fast when the server is not there at start; once connected, ride out restarts.
    waitOnFirstConnect: false,
    reconnect: opts.reconnect ?? true,
    maxReconnectAttempts: opts.reconnect === false ? 0 : -1,
    reconnectTimeWait: 1000,
    // The default (2 min × 2 pings) would notice a silently vanished server only after minutes.
    pingInterval: 10_000,
    maxPingOut: 3,
  };
  if (user !== undefined) {
    o.user = user;
    o.pass = password;
  }
  if (token !== undefined) o.token = token;
  if (auth.tls !== undefined || parsed.tls) {
    const tls = auth.tls ?? {};
    if ((tls.cert === undefined) !== (tls.key === undefined)) {
      throw new Error(`NATS TLS for ${shown}: a client certificate needs its key and vice versa`);
    }
    if (tls.ca !== undefined) checkReadable(tls.ca, "CA", shown);
    if (tls.cert !== undefined) checkReadable(tls.cert, "certificate", shown);
    if (tls.key !== undefined) checkReadable(tls.key, "key", shown);
    // Only set keys we have: the client treats a present-but-undefined file as one to read.
    o.tls = {
      ...(tls.ca !== undefined && { caFile: tls.ca }),
      ...(tls.cert !== undefined && { certFile: tls.cert }),
      ...(tls.key !== undefined && { keyFile: tls.key }),
    };
  }
  return o;
}

/** Connects, or throws an error that names the (redacted) URL and the server's reason. */
export async function connectNats(url: string, opts: NatsConnectOptions = {}): Promise<NatsConnection> {
  const options = natsConnectOptions(url, opts);
  try {
    return await connect(options);
  } catch (err) {
    let reason = err instanceof Error ? err.message : String(err);
    // A server that wants a client certificate just drops the handshake; say what that silence means.
    if (/timeout/i.test(reason) && options.tls != null && options.tls.certFile === undefined) {
      reason += " (if the server requires client certificates, give a TLS certificate and key)";
    }
    throw new Error(`cannot connect to NATS at ${redactNatsUrl(url)}: ${reason}`, { cause: err });
  }
}

/**
 * Credentials from the environment, so secrets need not appear on command lines:
 * INFLORA_NATS_USER/INFLORA_NATS_PASSWORD, INFLORA_NATS_TOKEN, INFLORA_NATS_CA/_CERT/_KEY (PEM files).
 */
export function natsAuthFromEnv(env: NodeJS.ProcessEnv = process.env): NatsAuth | undefined {
  const pick = (k: string): string | undefined =>
    env[k] !== undefined && env[k] !== "" ? env[k] : undefined;
  const user = pick("INFLORA_NATS_USER");
  const password = pick("INFLORA_NATS_PASSWORD");
  const token = pick("INFLORA_NATS_TOKEN");
  const ca = pick("INFLORA_NATS_CA");
  const cert = pick("INFLORA_NATS_CERT");
  const key = pick("INFLORA_NATS_KEY");
  const tls = ca !== undefined || cert !== undefined || key !== undefined ? { ca, cert, key } : undefined;
  if (user === undefined && password === undefined && token === undefined && tls === undefined)
    return undefined;
  return { user, password, token, tls };
}

/** Resolves `p`, or rejects after `ms` with "`what` timed out": shutdown paths must not hang on a dead server. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Drains (delivering what is buffered) when the server is there, and just closes when it is not. */
export async function closeNats(nc: NatsConnection, timeoutMs = 2000): Promise<void> {
  if (nc.isClosed()) return;
  try {
    await withTimeout(nc.drain(), timeoutMs, "NATS drain");
  } catch {
    await nc.close().catch(() => {});
  }
}
