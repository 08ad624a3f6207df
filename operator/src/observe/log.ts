// The daemons' logger (agent, operator): pino, one JSON object per line on stderr, or pino-pretty's
// human lines for a terminal. Fields are structured (component, node, policy, endpoint, keys, *_ms,
// err with its cause chain), never interpolated into msg. The CLI's own messages do not use this.
import pino, { type Logger } from "pino";
import { UsageError } from "../cli/usage.ts";

export type { Logger } from "pino";

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFormat = "json" | "pretty";

export interface LogSettings {
  level: LogLevel;
  format: LogFormat;
}

/** parseArgs options every daemon takes. */
export const logArgOptions = {
  "log-level": { type: "string" },
  "log-format": { type: "string" },
} as const;

export const logUsage =
  "[--log-level trace|debug|info|warn|error|fatal|silent] (or SLUICE_LOG_LEVEL; default info)\n" +
  "         [--log-format json|pretty] (default json, pretty when stderr is a terminal)";

/** The settings from flags, then SLUICE_LOG_LEVEL, then defaults; a bad value is a UsageError. */
export function logSettings(
  flags: { "log-level"?: string; "log-format"?: string },
  env: NodeJS.ProcessEnv = process.env,
  isTty: boolean = process.stderr.isTTY === true,
): LogSettings {
  const levelText = flags["log-level"] ?? env.SLUICE_LOG_LEVEL ?? "info";
  const source = flags["log-level"] !== undefined ? "--log-level" : "SLUICE_LOG_LEVEL";
  if (!(LOG_LEVELS as readonly string[]).includes(levelText))
    throw new UsageError(`${source}: ${JSON.stringify(levelText)} is not one of ${LOG_LEVELS.join(", ")}`);
  const format = flags["log-format"] ?? (isTty ? "pretty" : "json");
  if (format !== "json" && format !== "pretty")
    throw new UsageError(`--log-format: ${JSON.stringify(format)} is not one of json, pretty`);
  return { level: levelText as LogLevel, format };
}

export interface LoggerOptions extends LogSettings {
  /** Fields on every line, e.g. { component: "agent", node }. */
  base: Record<string, unknown>;
  /** Where lines go; default stderr (fd 2), like every Kubernetes component. */
  destination?: pino.DestinationStream;
}

/** pino-pretty loads only for the pretty format: a daemon logging JSON never pays for it. */
export async function createLogger(o: LoggerOptions): Promise<Logger> {
  const options: pino.LoggerOptions = {
    level: o.level,
    base: o.base,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    serializers: { err: pino.stdSerializers.errWithCause },
  };
  if (o.format === "pretty") {
    const { default: pretty } = await import("pino-pretty");
    return pino(
      options,
      o.destination ?? pretty({ destination: 2, sync: true, translateTime: "SYS:HH:MM:ss.l" }),
    );
  }
  return pino(options, o.destination ?? pino.destination({ fd: 2, sync: true }));
}

/** A logger that drops everything: library code and tests that need no output. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
