// The CLI's one output-format helper: every command that prints data takes -o table|json|yaml (kubectl's
// flag), prints JSON on one line (for scripts and tests to parse) and YAML as a document; the table is
// the command's own text for people. Counts in messages go through plural() so they read "1 error".
import { stringify } from "yaml";
import { oneOf } from "./usage.ts";

export const OUTPUT_FORMATS = ["table", "json", "yaml"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** The -o flag, for a command's parseArgs options; its default is outputFormat's fallback. */
export const outputOption = { output: { type: "string", short: "o" } } as const;

export function outputFormat(value: string | undefined, fallback: OutputFormat = "table"): OutputFormat {
  return oneOf("-o", value ?? fallback, OUTPUT_FORMATS);
}

/**
 * `data` as JSON or YAML, or the command's table: `table` is called only when it is printed, and an
 * empty table prints nothing (not an empty line).
 */
export function writeOutput(format: OutputFormat, data: unknown, table: () => string): void {
  let text: string;
  if (format === "json") text = JSON.stringify(data);
  else if (format === "yaml") text = stringify(data);
  else text = table();
  if (text === "") return;
  process.stdout.write(text.endsWith("\n") ? text : `${text}\n`);
}

/** "1 error", "2 errors". */
export function plural(n: number, singular: string, pluralForm = `${singular}s`): string {
  return `${n} ${n === 1 ? singular : pluralForm}`;
}
