/**
 * The /metrics endpoint of a coordinator or worker: a bare node:http server, so scraping adds no framework
 * and no route a caller could abuse. Anything but GET/HEAD /metrics is a 404 (405 for other methods on it).
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import { log } from "./log.js";

/**
 * How long a process keeps serving /metrics after its work is done, unless told otherwise: two scrape
 * intervals of the shipped configs (15 s in deploy/prometheus/prometheus.yml and the k8s monitors), so
 * the final values are scraped even when one scrape fails. A unit test ties the two together.
 */
export const DEFAULT_METRICS_LINGER_MS = 30_000;

export interface MetricsServer {
  /** The bound port (the requested one, or the one the OS picked for port 0). */
  readonly port: number;
  close(): Promise<void>;
}

export async function serveMetrics(registry: Registry, port: number, host?: string): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    handle(registry, req, res).catch((err: unknown) => {
      log.error({ err }, "rendering /metrics failed");
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
      res.end("metrics collection failed\n");
    });
  });
  // A scrape is one short request; a stalled client must not keep a socket open forever.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) =>
      reject(new Error(`cannot serve metrics on ${host ?? "*"}:${port}: ${err.message}`)),
    );
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  log.info({ host: host ?? "*", port: bound }, "serving Prometheus metrics on /metrics");
  let closing: Promise<void> | undefined;
  return {
    port: bound,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/**
 * Keeps the process alive for `ms` after its work, so Prometheus scrapes the final values (finished
 * phase, last accuracies, final counters) before the endpoint goes away. SIGTERM or SIGINT ends the wait
 * early: an operator who stops the process during the linger is not kept waiting.
 */
export async function lingerMetrics(server: MetricsServer | undefined, ms: number): Promise<void> {
  if (!server || ms <= 0) return;
  log.info({ port: server.port, seconds: ms / 1000 }, "serving the final metrics before exiting");
  await new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      process.off("SIGTERM", done);
      process.off("SIGINT", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    process.once("SIGTERM", done);
    process.once("SIGINT", done);
  });
}

async function handle(registry: Registry, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? "/", "http://metrics.invalid");
  if (url.pathname !== "/metrics") {
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
    res.end("not found: metrics are served on /metrics\n");
    return;
  }
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" });
    res.end("method not allowed\n");
    return;
  }
  const body = await registry.metrics();
  res.writeHead(200, { "content-type": registry.contentType });
  res.end(req.method === "HEAD" ? undefined : body);
}
