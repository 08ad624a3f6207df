// Duration flags (--timeout, --lease-duration, ...): kept apart so a command parses one without loading
// another command's dependencies. A bad value is a usage error (exit 2).
import { UsageError } from "./usage.ts";

/** Parses 300, 300ms, 5s, 5m, 1h into milliseconds (a bare number means seconds). */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m)
    throw new UsageError(`${flag}: ${JSON.stringify(text)} is not a duration (e.g. 300ms, 30s, 5m, 1h)`);
  const n = Number(m[1]);
  const unit = m[2] ?? "s";
  const factor = unit === "ms" ? 1 : unit === "s" ? 1000 : unit === "m" ? 60_000 : 3_600_000;
  return Math.round(n * factor);
}
