// The bpffs mount that pins live in. Debian does not mount it by default; the agent (and tests) do.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

export const DEFAULT_BPFFS = "/sys/fs/bpf";

export function isBpffsMounted(path: string = DEFAULT_BPFFS): boolean {
  const mounts = readFileSync("/proc/self/mounts", "utf8");
  return mounts.split("\n").some((line) => {
    const [, mountPoint, type] = line.split(" ");
    return mountPoint === path && type === "bpf";
  });
}

// Mounts bpffs at path when it is not mounted yet (needs CAP_SYS_ADMIN).
export function ensureBpffs(path: string = DEFAULT_BPFFS): void {
  if (isBpffsMounted(path)) return;
  execFileSync("mount", ["-t", "bpf", "bpf", path], { stdio: "pipe" });
}
