/**
 * The process-wide structured logger (pino). JSON lines by default when stderr is not a terminal, a
 * human-readable form otherwise; `configureLogging` lets the CLI choose (`--log-format json|pretty`).
 */
import { createRequire } from "node:module";
import { type Logger, pino } from "pino";
import type PinoPretty from "pino-pretty";

/**
 * pino-pretty (and its dependencies) only where a person reads the log: a command's start stays light.
 * The one-folder bundle (scripts/bundle.ts) defines `require` and inlines the literal call.
 */
function loadPretty(): typeof PinoPretty {
  if (typeof require === "function") return require("pino-pretty") as typeof PinoPretty;
  return createRequire(import.meta.url)("pino-pretty") as typeof PinoPretty;
}

export type LogFormat = "json" | "pretty";

function build(format: LogFormat, level: string): Logger {
  if (format === "json") return pino({ level, base: undefined }, pino.destination({ fd: 2, sync: true }));
  return pino(
    { level, base: undefined },
    loadPretty()({ destination: 2, sync: true, ignore: "pid,hostname", translateTime: "HH:MM:ss" }),
  );
}

const defaultFormat: LogFormat = process.stderr.isTTY ? "pretty" : "json";
const defaultLevel = process.env.INFLORA_LOG_LEVEL ?? (process.env.VITEST ? "warn" : "info");

export let log: Logger = build(defaultFormat, defaultLevel);

export function configureLogging(options: { format?: LogFormat; level?: string }): void {
  log = build(options.format ?? defaultFormat, options.level ?? defaultLevel);
}
