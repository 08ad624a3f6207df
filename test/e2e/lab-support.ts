// Shared pieces of the lab e2e tests: fixture paths, the CLI, and what must exist for a test to run.
import { spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { loadObjects } from "../../operator/src/manifests/load.ts";
import type { MatrixRow } from "../../operator/src/api/matrix-rows.ts";
import { type LabTopology, topologyFromObjects } from "../../operator/src/lab/topology.ts";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));
export const TOPOLOGY = `${FIXTURES}basic/topology.yaml`;
export const SLUICE = `${ROOT}bin/sluice`;

// Live traffic of the basic topology with fixture("traffic") enforced: across nodes, through both
// endpoints' programs, allowed and denied UDP at 3 kpps each, and TCP. Pods must also listen on the
// denied port (Lab option extraPorts).
export const DENIED_UDP = 5434;
export const STREAMS = {
  from: "ops/probe",
  to: "shop/db",
  allowedUdpPort: 5433,
  deniedUdpPort: DENIED_UDP,
  tcpPort: 5432,
  rate: 3000,
};

export function fixture(name: string): string {
  return `${FIXTURES}${name}`;
}

export function basicTopology(): LabTopology {
  return topologyFromObjects(loadObjects([TOPOLOGY]));
}

// The static agent and the datapath replace command are another part of the tree; until they are
// there the enforcement tests cannot run (and fail under CI).
export function agentMissing(): string | undefined {
  for (const f of ["operator/src/cli/agent.ts", "operator/src/cli/datapath.ts"])
    if (!existsSync(`${ROOT}${f}`)) return `${f} is not there yet`;
  if (!existsSync(`${ROOT}bpf/build`)) return "bpf/build is missing: run scripts/build.sh";
  return undefined;
}

export function matrixMissing(): string | undefined {
  return existsSync(`${ROOT}operator/src/cli/matrix.ts`)
    ? undefined
    : "operator/src/cli/matrix.ts is not there yet";
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function sluice(args: readonly string[], onSpawn?: (pid: number) => void): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(SLUICE, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    if (child.pid !== undefined) onSpawn?.(child.pid);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

export function verdictOf(
  rows: readonly MatrixRow[],
  from: string,
  to: string,
  port: number,
  protocol: string,
) {
  const r = rows.find((x) => x.from === from && x.to === to && x.port === port && x.protocol === protocol);
  if (!r) throw new Error(`no row ${from} -> ${to} ${port}/${protocol}`);
  return r.verdict;
}

// Lab namespaces of the given run (or of every run, when runId is omitted).
export function labNetns(runId?: string): string[] {
  const re = runId ? new RegExp(`^sl${runId}-`) : /^sl[0-9a-f]{4}-/;
  try {
    return readdirSync("/run/netns").filter((n) => re.test(n));
  } catch {
    return [];
  }
}
