// Argument parsing and output shared by the `sluice lab` subcommands (run, up, probe, status, down).
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { ProbeReport } from "../lab/lab.ts";
import { formatMatrixTable, type MatrixJson } from "../api/matrix-rows.ts";
import { DEFAULT_STATE_DIR } from "../lab/up-state.ts";

export const usage = `usage: sluice lab run -f <file or dir>... [--ports 80/TCP,81/UDP] [-o table|json] [--ipv6] [--no-agent]
                      [--allow-localhost always|policy]
       sluice lab up -f <file or dir>... [--ports 80/TCP,81/UDP] [--timeout 10m] [--allow-localhost always|policy]
                     (API server, operator, one agent per node; prints the KUBECONFIG to apply policies with)
       --allow-localhost: the agents' flag (always, the default: each node reaches its own pods whatever
                     the policies say; policy: only where a policy allows the host entity)
       sluice lab probe [--ports 80/TCP,81/UDP] [-o table|json] [--ipv6]   (probes the lab that is up)
       sluice lab status [-o json]
       sluice lab down    (removes the lab that is up, also after its supervisor was killed)
       sluice lab clean   (removes what lab runs killed with -9 left behind)
The lab that is up keeps its state in ${DEFAULT_STATE_DIR} (SLUICE_LAB_STATE_DIR overrides).`;

export function needRoot(what: string): void {
  if (process.getuid?.() !== 0)
    throw new Error(`sluice lab ${what} needs root (network namespaces and BPF): run it with sudo`);
}

export function inputFiles(files: readonly string[] | undefined): string[] {
  if (!files?.length) throw new Error(`-f: at least one file or directory is needed\n${usage}`);
  for (const f of files) if (!existsSync(f)) throw new Error(`-f ${f}: no such file or directory`);
  return files.map((f) => resolve(f));
}

export function outputFormat(value: string | undefined): "table" | "json" {
  if (value !== "table" && value !== "json") throw new Error(`-o: must be table or json`);
  return value;
}

// What run and probe print: the matrix (table or JSON) on stdout, counts and notes on stderr.
export function printReport(
  report: ProbeReport,
  output: "table" | "json",
  summary: (line: string) => void,
): void {
  if (output === "json") {
    const json: MatrixJson = { results: report.results };
    process.stdout.write(`${JSON.stringify(json)}\n`);
  } else {
    process.stdout.write(`${formatMatrixTable(report.results)}\n`);
    const allowed = report.results.filter((r) => r.verdict === "allow").length;
    summary(
      `${report.results.length} probes (${allowed} allow, ${report.results.length - allowed} deny) in ${Math.round(report.durationMs)} ms`,
    );
  }
  if (report.skipped.length > 0) {
    const reasons = [...new Set(report.skipped.map((s) => s.reason))].join("; ");
    process.stderr.write(`note: ${report.skipped.length} probes skipped: ${reasons}\n`);
  }
  for (const n of report.notes) process.stderr.write(`note: ${n}\n`);
}

// --allow-localhost as the agents take it (undefined: their default); `sluice agent` parses it here too.
export function allowLocalhostOption(value: string | undefined): "always" | "policy" | undefined {
  if (value === undefined || value === "always" || value === "policy") return value;
  throw new Error(`--allow-localhost: ${JSON.stringify(value)} is not one of always, policy`);
}

export const probeOptions = {
  ports: { type: "string" },
  output: { type: "string", short: "o", default: "table" },
  ipv6: { type: "boolean", default: false },
  verbose: { type: "boolean", short: "v", default: false },
} as const;
