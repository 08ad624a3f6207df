// What `sluice lab down` removes itself when the lab's supervisor is gone (killed with -9, crashed):
// the operator and API server it started (by their recorded pids, checked against their command
// lines so a reused pid is never hit), the run's namespaces with the processes inside, its bpffs
// root and work dir, and the state directory.
import { readFileSync, rmSync } from "node:fs";
import { cleanRuns, pidAlive, signalAll, waitGone } from "./stale.ts";
import type { UpState } from "./up-state.ts";

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ");
  } catch {
    return "";
  }
}

// The recorded processes that still run the program they were started as.
export function recordedProcesses(state: UpState): Array<{ what: string; pid: number }> {
  const out: Array<{ what: string; pid: number }> = [];
  const check = (what: string, pid: number | undefined, test: (cmd: string) => boolean) => {
    if (pid && pidAlive(pid) && test(cmdline(pid))) out.push({ what, pid });
  };
  check("supervisor", state.pid, (c) => c.includes(" lab serve "));
  check("operator", state.operatorPid, (c) => c.includes(" operator --kubeconfig "));
  check("API server", state.apiserverPid, (c) => c.includes("sluice-apiserver"));
  return out;
}

async function killRecorded(state: UpState, graceMs = 10_000): Promise<string[]> {
  const procs = recordedProcesses(state);
  const pids = procs.map((p) => p.pid);
  signalAll(pids, "SIGTERM");
  if (!(await waitGone(pids, graceMs, 50))) signalAll(pids.filter(pidAlive), "SIGKILL");
  return procs.map((p) => `${p.what} (pid ${p.pid})`);
}

export interface LeftoverReport {
  killed: string[];
  netns: number;
  errors: string[];
}

export async function removeLeftovers(dir: string, state: UpState | undefined): Promise<LeftoverReport> {
  const killed = state ? await killRecorded(state) : [];
  const errors: string[] = [];
  let netns = 0;
  if (state?.runId) {
    const r = await cleanRuns([state.runId]);
    netns = r.netns.length;
    if (r.killed > 0) killed.push(`${r.killed} processes in the lab's namespaces`);
    errors.push(...r.errors);
  }
  if (errors.length === 0) rmSync(dir, { recursive: true, force: true });
  return { killed, netns, errors };
}
