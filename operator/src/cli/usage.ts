// A command-line usage error: main.ts prints it as one line naming the command and the bad flag and
// exits 2 (the convention of kubectl, helm and getopt tools), where any other error exits 1.
import { parseArgs, type ParseArgsConfig } from "node:util";

export class UsageError extends Error {
  override name = "UsageError";
}

/** node:util parseArgs whose own errors (unknown flag, missing value) become UsageErrors. */
export function parseCommandArgs<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (e) {
    if (e instanceof TypeError && "code" in e && String(e.code).startsWith("ERR_PARSE_ARGS"))
      throw new UsageError(e.message.split("\n")[0] ?? e.message);
    throw e;
  }
}
