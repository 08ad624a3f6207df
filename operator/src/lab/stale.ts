// Leftovers of lab runs whose process died without cleaning up (SIGKILL, power loss): each run
// records its pid under /run/sluice-lab; `sluice lab clean` removes the processes still inside the
// namespaces (pod servers, agents), the namespaces, bpffs roots and work dirs of runs whose process
// is gone, and never touches a live run.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_BPFFS } from "../datapath/kernel/bpffs.ts";
import { run } from "./exec.ts";
import { deleteNetns, existingNetns } from "./netns.ts";

const STATE_DIR = "/run/sluice-lab";
const BPFFS_PREFIX = "sluice-lab-";
const RUN_NETNS = /^sl([0-9a-f]{4})-/;

// The prefix of a run's work directory under the system temp dir (mkdtemp adds a suffix).
export function labWorkDirPrefix(runId: string): string {
  return `sluice-lab-${runId}-`;
}

export function recordRun(runId: string): void {
  mkdirSync(STATE_DIR, { recursive: true });
  writeFileSync(`${STATE_DIR}/${runId}`, String(process.pid));
}

export function forgetRun(runId: string): void {
  rmSync(`${STATE_DIR}/${runId}`, { force: true });
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

// Signals each pid that still runs (one that exited meanwhile is fine).
export function signalAll(pids: Iterable<number>, signal: NodeJS.Signals): void {
  for (const pid of pids)
    try {
      process.kill(pid, signal);
    } catch {
      // exited meanwhile
    }
}

// Resolves true once none of pids runs, false after timeoutMs.
export async function waitGone(pids: Iterable<number>, timeoutMs: number, everyMs = 20): Promise<boolean> {
  const list = [...pids];
  const deadline = Date.now() + timeoutMs;
  while (list.some(pidAlive)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return true;
}

function alive(runId: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(`${STATE_DIR}/${runId}`, "utf8"));
  } catch {
    return false;
  }
  return pidAlive(pid);
}

export interface CleanReport {
  runs: string[];
  netns: string[];
  // Processes killed inside the runs' namespaces.
  killed: number;
  errors: string[];
}

// The processes running inside the given network namespaces (a namespace already gone has none).
export async function netnsPids(netns: readonly string[]): Promise<Set<number>> {
  const pids = new Set<number>();
  for (const ns of netns) {
    try {
      const { stdout } = await run("ip", ["netns", "pids", ns]);
      for (const p of stdout.split(/\s+/)) if (/^\d+$/.test(p)) pids.add(Number(p));
    } catch {
      // namespace already gone
    }
  }
  return pids;
}

// A namespace with processes in it lives on after `ip netns delete` (and with it the veths and the
// programs attached to them): kill what runs inside first.
async function killInside(netns: readonly string[]): Promise<number> {
  const pids = await netnsPids(netns);
  signalAll(pids, "SIGKILL");
  await waitGone(pids, 5000);
  return pids.size;
}

// Removes everything of the given (dead) runs.
export async function cleanRuns(runs: readonly string[]): Promise<CleanReport> {
  const netns = existingNetns().filter((ns) => runs.includes(RUN_NETNS.exec(ns)?.[1] ?? ""));
  const killed = await killInside(netns);
  const errors = await deleteNetns(netns);
  const temps = runs.length > 0 ? readdirSync(tmpdir()) : [];
  for (const r of runs) {
    rmSync(join(DEFAULT_BPFFS, `${BPFFS_PREFIX}${r}`), { recursive: true, force: true });
    for (const d of temps)
      if (d.startsWith(labWorkDirPrefix(r))) rmSync(join(tmpdir(), d), { recursive: true, force: true });
    forgetRun(r);
  }
  return { runs: [...runs], netns, killed, errors };
}

export async function cleanStaleRuns(): Promise<CleanReport> {
  const runs = new Set<string>();
  for (const ns of existingNetns()) {
    const m = RUN_NETNS.exec(ns);
    if (m) runs.add(m[1]);
  }
  let bpffs: string[] = [];
  try {
    bpffs = readdirSync(DEFAULT_BPFFS).filter((d) => d.startsWith(BPFFS_PREFIX));
  } catch {
    // no bpffs
  }
  for (const d of bpffs) runs.add(d.slice(BPFFS_PREFIX.length));
  const stale = [...runs].filter((r) => !alive(r)).sort();
  return cleanRuns(stale);
}
