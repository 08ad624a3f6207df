// Kernel, lab and API-server tests need root and a BPF-capable kernel. Locally they skip with a reason;
// under CI=true a test that cannot run fails instead, so a green run always means they ran.
import { accessSync, constants } from "node:fs";
import type { TestContext } from "node:test";

export function privilegeProblem(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root";
  try {
    accessSync("/sys/fs/bpf", constants.W_OK);
  } catch {
    return "bpffs (/sys/fs/bpf) is not writable";
  }
  return undefined;
}

// Returns true when the test may go on. In CI a missing privilege throws (the test fails).
export function requirePrivileged(t: TestContext, extra?: () => string | undefined): boolean {
  const problem = privilegeProblem() ?? extra?.();
  if (!problem) return true;
  if (process.env.CI === "true") throw new Error(`cannot run under CI: ${problem}`);
  t.skip(problem);
  return false;
}
