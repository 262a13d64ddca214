/**
 * The process-wide structured logger (pino). JSON lines by default when stderr is not a terminal, a
 * human-readable form otherwise; `configureLogging` lets the CLI choose (`--log-format json|pretty`).
 */
import { type Logger, pino } from "pino";
import pretty from "pino-pretty";

export type LogFormat = "json" | "pretty";

function build(format: LogFormat, level: string): Logger {
  if (format === "json") return pino({ level, base: undefined }, pino.destination({ fd: 2, sync: true }));
  return pino(
    { level, base: undefined },
    pretty({ destination: 2, sync: true, ignore: "pid,hostname", translateTime: "HH:MM:ss" }),
  );
}

const defaultFormat: LogFormat = process.stderr.isTTY ? "pretty" : "json";
const defaultLevel = process.env.INFLORA_LOG_LEVEL ?? (process.env.VITEST ? "warn" : "info");

export let log: Logger = build(defaultFormat, defaultLevel);

export function configureLogging(options: { format?: LogFormat; level?: string }): void {
  log = build(options.format ?? defaultFormat, options.level ?? defaultLevel);
}
