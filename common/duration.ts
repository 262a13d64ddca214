/**
 * Durations on the command line, written the way Prometheus writes them (`30s`, `2m`, `1m30s`, `500ms`)
 * so a linger can be set in the same terms as the scrape interval it has to outlast. A bare number is
 * seconds.
 */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export class DurationError extends Error {
  override readonly name = "DurationError";
}

/** Milliseconds of `text`; throws a DurationError quoting it when it is not a duration. */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  const parts = [...s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== s) {
    throw new DurationError(`"${text}" is not a duration (examples: 30s, 2m, 1m30s, 500ms, 0)`);
  }
  return Math.round(parts.reduce((ms, p) => ms + Number(p[1]) * UNIT_MS[p[2]], 0));
}
