// `sluice lab run -f <file or dir>... [--ports 80/TCP,81/UDP] [-o table|json] [--no-agent]`:
// builds the topology of the files as network namespaces, enforces the files' policies with one
// static agent per node, probes every pod from every other pod, prints the matrix, removes it all.
import { parseArgs } from "node:util";
import { loadObjects } from "../lab/inputs.ts";
import { Lab } from "../lab/lab.ts";
import { formatMatrixTable, type MatrixJson } from "../lab/matrix.ts";
import { parsePorts } from "../lab/ports.ts";
import { cleanStaleRuns } from "../lab/stale.ts";
import { topologyFromObjects } from "../lab/topology.ts";

const usage = `usage: sluice lab run -f <file or dir>... [--ports 80/TCP,81/UDP] [-o table|json] [--ipv6] [--no-agent]
       sluice lab clean   (removes what lab runs killed with -9 left behind)`;

export async function labMain(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "clean") {
    if (process.getuid?.() !== 0) throw new Error("sluice lab clean needs root");
    const r = await cleanStaleRuns();
    process.stdout.write(`removed ${r.runs.length} stale lab runs (${r.netns.length} namespaces)\n`);
    for (const e of r.errors) process.stderr.write(`error: ${e}\n`);
    return r.errors.length > 0 ? 1 : 0;
  }
  if (sub !== "run") {
    process.stderr.write(`${usage}\n`);
    return 2;
  }
  const { values } = parseArgs({
    args: [...rest],
    options: {
      file: { type: "string", short: "f", multiple: true },
      ports: { type: "string" },
      output: { type: "string", short: "o", default: "table" },
      ipv6: { type: "boolean", default: false },
      "no-agent": { type: "boolean", default: false },
      verbose: { type: "boolean", short: "v", default: false },
    },
    strict: true,
  });
  const files = values.file ?? [];
  if (files.length === 0) throw new Error(`-f: at least one file or directory is needed\n${usage}`);
  if (values.output !== "table" && values.output !== "json") throw new Error(`-o: must be table or json`);
  if (process.getuid?.() !== 0)
    throw new Error("sluice lab run needs root (network namespaces and BPF): run it with sudo");
  const ports = values.ports ? parsePorts(values.ports) : undefined;
  const topology = topologyFromObjects(loadObjects(files));
  const log = (line: string) => {
    if (values.verbose || values.output === "table") process.stderr.write(`${line}\n`);
  };
  const lab = await Lab.create(topology, { extraPorts: ports, log });
  try {
    if (!values["no-agent"]) await lab.startAgents(files);
    const report = await lab.probe({ ports, family: values.ipv6 ? 6 : undefined });
    if (values.output === "json") {
      const json: MatrixJson = { results: report.results };
      process.stdout.write(`${JSON.stringify(json)}\n`);
    } else {
      process.stdout.write(`${formatMatrixTable(report.results)}\n`);
      const allowed = report.results.filter((r) => r.verdict === "allow").length;
      log(
        `${report.results.length} probes (${allowed} allow, ${report.results.length - allowed} deny) in ${Math.round(report.durationMs)} ms${values["no-agent"] ? ", no enforcement (--no-agent)" : ""}`,
      );
    }
    if (report.skipped.length > 0) {
      const reasons = [...new Set(report.skipped.map((s) => s.reason))].join("; ");
      process.stderr.write(`note: ${report.skipped.length} probes skipped: ${reasons}\n`);
    }
    for (const n of report.notes) process.stderr.write(`note: ${n}\n`);
  } finally {
    await lab.destroy();
  }
  return 0;
}
