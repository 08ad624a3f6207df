// Leftovers of lab runs whose process died without cleaning up (SIGKILL, power loss): each run
// records its pid under /run/sluice-lab; `sluice lab clean` removes the namespaces and bpffs roots
// of runs whose process is gone, and never touches a live run.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { deleteNetns, existingNetns } from "./netns.ts";

const STATE_DIR = "/run/sluice-lab";
const BPFFS_PREFIX = "sluice-lab-";
const RUN_NETNS = /^sl([0-9a-f]{4})-/;

export function recordRun(runId: string): void {
  mkdirSync(STATE_DIR, { recursive: true });
  writeFileSync(`${STATE_DIR}/${runId}`, String(process.pid));
}

export function forgetRun(runId: string): void {
  rmSync(`${STATE_DIR}/${runId}`, { force: true });
}

function alive(runId: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(`${STATE_DIR}/${runId}`, "utf8"));
  } catch {
    return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export interface CleanReport {
  runs: string[];
  netns: string[];
  errors: string[];
}

export async function cleanStaleRuns(): Promise<CleanReport> {
  const runs = new Set<string>();
  for (const ns of existingNetns()) {
    const m = RUN_NETNS.exec(ns);
    if (m) runs.add(m[1]);
  }
  let bpffs: string[] = [];
  try {
    bpffs = readdirSync("/sys/fs/bpf").filter((d) => d.startsWith(BPFFS_PREFIX));
  } catch {
    // no bpffs
  }
  for (const d of bpffs) runs.add(d.slice(BPFFS_PREFIX.length));
  const stale = [...runs].filter((r) => !alive(r)).sort();
  const netns = existingNetns().filter((ns) => stale.includes(RUN_NETNS.exec(ns)?.[1] ?? ""));
  const errors = await deleteNetns(netns);
  for (const r of stale) {
    rmSync(`/sys/fs/bpf/${BPFFS_PREFIX}${r}`, { recursive: true, force: true });
    forgetRun(r);
  }
  return { runs: stale, netns, errors };
}
