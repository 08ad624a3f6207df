// Argument parsing and output shared by the `sluice lab` subcommands (run, up, probe, status, down).
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { ProbeReport } from "../lab/lab.ts";
import { formatMatrixTable, type MatrixJson } from "../api/matrix-rows.ts";
import { DEFAULT_STATE_DIR } from "../lab/up-state.ts";
import type { labSubcommands } from "./commands.ts";
import { type OutputFormat, outputOption, plural, writeOutput } from "./output.ts";
import { ALLOW_LOCALHOST_MODES, type AllowLocalhost } from "../policy/mapstate.ts";
import { oneOf, UsageError } from "./usage.ts";

const STATE = `The lab that is up keeps its state in ${DEFAULT_STATE_DIR} (SLUICE_LAB_STATE_DIR overrides).`;
const ALLOW_LOCALHOST = `       --allow-localhost: the agents' flag (always, the default: each node reaches its own pods whatever
                     the policies say; policy: only where a policy allows the host entity)`;

// Each subcommand's usage: its own -h/--help prints it, `sluice lab --help` prints them all.
export const labUsage: Record<(typeof labSubcommands)[number], string> = {
  run: `usage: sluice lab run -f <file or dir>... [--ports 80/TCP,81/UDP] [-o table|json|yaml] [--ipv6] [--no-agent]
                      [--allow-localhost always|policy] [-v]
${ALLOW_LOCALHOST}`,
  up: `usage: sluice lab up -f <file or dir>... [--ports 80/TCP,81/UDP] [--timeout 10m] [--allow-localhost always|policy]
                     (API server, operator, one agent per node; prints the KUBECONFIG to apply policies with)
${ALLOW_LOCALHOST}
${STATE}`,
  probe:
    "usage: sluice lab probe [--ports 80/TCP,81/UDP] [-o table|json|yaml] [--ipv6] [-v]   (probes the lab that is up)",
  status: `usage: sluice lab status [-o table|json|yaml]\n${STATE}`,
  down: "usage: sluice lab down    (removes the lab that is up, also after its supervisor was killed)",
  clean: "usage: sluice lab clean   (removes what lab runs killed with -9 left behind)",
};

export function needRoot(): void {
  if (process.getuid?.() !== 0) throw new Error("needs root (network namespaces and BPF): run it with sudo");
}

// Absolute: the lab's agents and supervisor read them from other working directories.
export function inputFiles(files: readonly string[] | undefined): string[] {
  if (!files?.length) throw new UsageError("-f: at least one file or directory is needed");
  for (const f of files) if (!existsSync(f)) throw new Error(`-f ${f}: no such file or directory`);
  return files.map((f) => resolve(f));
}

// What run and probe print: the matrix on stdout, counts and notes on stderr.
export function printReport(
  report: ProbeReport,
  output: OutputFormat,
  summary: (line: string) => void,
): void {
  const json: MatrixJson = { results: report.results };
  writeOutput(output, json, () => formatMatrixTable(report.results));
  if (output === "table") {
    const allowed = report.results.filter((r) => r.verdict === "allow").length;
    summary(
      `${plural(report.results.length, "probe")} (${allowed} allow, ${report.results.length - allowed} deny) in ${Math.round(report.durationMs)} ms`,
    );
  }
  if (report.skipped.length > 0) {
    const reasons = [...new Set(report.skipped.map((s) => s.reason))].join("; ");
    process.stderr.write(`note: ${plural(report.skipped.length, "probe")} skipped: ${reasons}\n`);
  }
  for (const n of report.notes) process.stderr.write(`note: ${n}\n`);
}

// --allow-localhost as the agents take it (undefined: their default); `sluice agent` parses it here too.
export function allowLocalhostOption(value: string | undefined): AllowLocalhost | undefined {
  return value === undefined ? undefined : oneOf("--allow-localhost", value, ALLOW_LOCALHOST_MODES);
}

export const probeOptions = {
  ports: { type: "string" },
  ...outputOption,
  ipv6: { type: "boolean", default: false },
  verbose: { type: "boolean", short: "v", default: false },
} as const;
