// The previous datapath layout, built, for the benchmarks that price this layout against it in the same
// run (packet.bench.ts runs that tree's own packet bench between rounds of its own; veth.bench.ts
// enforces with that tree's map writer and programs between its own trials). The commit's files come
// from test/support/previous-layout.ts; its BPF objects, layout module and addon are built by its own
// Makefile against this checkout's node_modules and .tooling. The tree is removed when the process
// exits, also on failure.
import { execFileSync } from "node:child_process";
import { rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  PREVIOUS_LAYOUT_COMMIT,
  PREVIOUS_LAYOUT_VERSION,
  previousLayoutTree,
} from "../support/previous-layout.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export interface PreviousLayout {
  dir: string;
  commit: string;
  version: number;
  remove(): void;
}

export function buildPreviousLayout(): PreviousLayout {
  let dir: string;
  try {
    dir = previousLayoutTree();
  } catch (e) {
    throw new Error(
      `the benchmark compares with layout ${PREVIOUS_LAYOUT_VERSION} (commit ${PREVIOUS_LAYOUT_COMMIT}), built from git history: ${(e as Error).message}; or leave it out (packet.bench.ts --previous-rounds 0, veth.bench.ts --no-previous)`,
    );
  }
  const remove = () => rmSync(dir, { recursive: true, force: true });
  // Also when the bench fails or is interrupted (its signal handlers exit the process).
  process.once("exit", remove);
  try {
    symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
    symlinkSync(join(ROOT, ".tooling"), join(dir, ".tooling"));
    execFileSync("make", ["-s", "-C", join(dir, "bpf")], { stdio: ["ignore", "ignore", "inherit"] });
  } catch (e) {
    remove();
    throw e;
  }
  return { dir, commit: PREVIOUS_LAYOUT_COMMIT, version: PREVIOUS_LAYOUT_VERSION, remove };
}

// Runs a bench script (a path inside tree) with this Node, its working directory the tree; its stdout.
export function runBench(tree: string, script: string, args: readonly string[]): string {
  return execFileSync(
    process.execPath,
    ["--expose-gc", "--disable-warning=ExperimentalWarning", join(tree, script), ...args],
    { cwd: tree, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 64 << 20 },
  );
}

// The rows of the first markdown table after the line that starts with `heading` in a bench's output:
// first cell -> the other cells.
export function tableAfter(text: string, heading: string): Map<string, string[]> {
  const lines = text.split("\n");
  const at = lines.findIndex((l) => l.startsWith(heading));
  if (at < 0) throw new Error(`bench output has no "${heading}"`);
  const rows = new Map<string, string[]>();
  let seen = 0;
  for (const line of lines.slice(at + 1)) {
    if (!line.startsWith("|")) {
      if (seen > 0) break;
      continue;
    }
    // The header and the separator line come first.
    if (seen++ < 2) continue;
    const cells = line
      .slice(1, -1)
      .split("|")
      .map((c) => c.trim());
    rows.set(cells[0], cells.slice(1));
  }
  if (rows.size === 0) throw new Error(`bench output has no table after "${heading}"`);
  return rows;
}
