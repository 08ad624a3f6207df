// The CLI's one flag and usage helper. A usage error (unknown flag, missing or bad value) is printed by
// main.ts as one line naming the command and the bad flag and exits 2 (the convention of kubectl, helm
// and getopt tools), where any other error exits 1; -h/--help prints the command's usage to stdout and
// exits 0. Commands throw instead of printing so that every one of them behaves the same.
import { parseArgs, type ParseArgsConfig } from "node:util";

export class UsageError extends Error {
  override name = "UsageError";
  /** "lab run": set by the subcommand dispatch, for the message to name the subcommand. */
  command?: string;
}

/** What a subcommand threw, with the subcommand's name ("lab run") for main.ts's message. */
export function commandOf(err: unknown): string | undefined {
  return err instanceof Error ? (err as Error & { command?: string }).command : undefined;
}

/** -h/--help: not a failure; main.ts prints `usage` to stdout and exits 0. */
export class HelpRequested extends Error {
  override name = "HelpRequested";
  readonly usage: string;
  constructor(usage: string) {
    super("help requested");
    this.usage = usage;
  }
}

// node:util's messages, reworded to lead with the flag ("--bogus: unknown flag") like every other
// usage error of the CLI, on one line.
function parseArgsMessage(code: string, message: string): string {
  const first = message.split("\n")[0] ?? message;
  const quoted = /'([^']*)'/.exec(first)?.[1] ?? "";
  const flag = quoted.replace(/ <value>$/, "");
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") return `${flag}: unknown flag`;
  if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL")
    return `${JSON.stringify(quoted)}: unexpected argument`;
  if (/argument missing|argument is ambiguous/.test(first)) return `${flag}: a value is required`;
  if (/does not take an argument/.test(first)) return `${flag}: takes no value`;
  return first;
}

/** The UsageError an error from parsing the command line stands for, if it is one. */
export function usageErrorOf(err: unknown): UsageError | undefined {
  if (err instanceof UsageError) return err;
  if (err instanceof TypeError && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS"))
    return new UsageError(parseArgsMessage(String(err.code), err.message));
  return undefined;
}

/**
 * node:util parseArgs whose own errors (unknown flag, missing value) become UsageErrors. With `usage`,
 * -h/--help is a flag of the command too and throws HelpRequested.
 */
export function parseCommandArgs<T extends ParseArgsConfig>(
  config: T,
  usage?: string,
): ReturnType<typeof parseArgs<T>> {
  const withHelp =
    usage === undefined
      ? config
      : { ...config, options: { ...config.options, help: { type: "boolean", short: "h" } as const } };
  let parsed: ReturnType<typeof parseArgs<T>>;
  try {
    parsed = parseArgs(withHelp) as ReturnType<typeof parseArgs<T>>;
  } catch (e) {
    throw usageErrorOf(e) ?? e;
  }
  if (usage !== undefined && (parsed.values as { help?: boolean }).help === true)
    throw new HelpRequested(usage);
  return parsed;
}

/** Runs a flag value's parser (ports, durations, ...): whatever it throws is a usage error. */
export function flagValue<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw usageErrorOf(e) ?? new UsageError(e instanceof Error ? e.message : String(e));
  }
}

/** One value of a fixed set: `--attach-mode: "x" is not one of auto, tcx, tc`. */
export function oneOf<const T extends string>(flag: string, value: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new UsageError(`${flag}: ${JSON.stringify(value)} is not one of ${allowed.join(", ")}`);
}

export interface Subcommand {
  usage: string;
  run: (argv: string[]) => Promise<number>;
}

/**
 * `sluice <command> <subcommand> ...`: -h/--help/help lists every subcommand's usage; a missing or
 * unknown subcommand is a usage error; the subcommand's usage errors name it ("lab run").
 */
export async function dispatch<K extends string>(
  command: string,
  table: Record<K, Subcommand>,
  argv: readonly string[],
  hidden: Record<string, (argv: string[]) => Promise<number>> = {},
): Promise<number> {
  const [sub, ...rest] = argv;
  const names = Object.keys(table) as K[];
  if (sub === undefined) throw new UsageError(`a subcommand is required: one of ${names.join(", ")}`);
  if (sub === "-h" || sub === "--help" || sub === "help")
    throw new HelpRequested(names.map((n) => table[n].usage).join("\n"));
  const run = Object.hasOwn(hidden, sub)
    ? hidden[sub]
    : (names as string[]).includes(sub)
      ? table[sub as K].run
      : undefined;
  if (!run)
    throw new UsageError(
      sub.startsWith("-")
        ? `${sub}: unknown flag (a subcommand comes first: one of ${names.join(", ")})`
        : `${JSON.stringify(sub)}: unknown subcommand (one of ${names.join(", ")})`,
    );
  try {
    return await run(rest);
  } catch (e) {
    const err = usageErrorOf(e) ?? e;
    if (err instanceof Error && !(err instanceof HelpRequested))
      (err as Error & { command?: string }).command ??= `${command} ${sub}`;
    throw err;
  }
}
