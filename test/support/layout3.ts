// The last commit whose datapath is layout 3 (map names end in _v3), from git history: the starting
// point of the upgrade tests (test/e2e/upgrade.test.ts runs its agent in the lab,
// test/cluster/upgrade.test.ts builds its image and installs it with the chart).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const LAYOUT3_COMMIT = "b1b8cee78b33cf034040046eefc7c3dc7f755ba9";
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function requireCommit(): void {
  try {
    execFileSync("git", ["-C", ROOT, "cat-file", "-e", `${LAYOUT3_COMMIT}^{commit}`], { stdio: "ignore" });
  } catch {
    throw new Error(
      `the upgrade test builds commit ${LAYOUT3_COMMIT} from git history: run it in a clone that has it`,
    );
  }
}

/**
 * That commit's files (`git archive`: nothing of the repository is touched, no worktree to prune) in a
 * new temporary directory, which the caller removes.
 */
export function layout3Tree(): string {
  requireCommit();
  const dir = mkdtempSync(join(tmpdir(), "sluice-layout3-"));
  try {
    execFileSync("bash", ["-c", `git -C "${ROOT}" archive ${LAYOUT3_COMMIT} | tar -x -C "${dir}"`]);
    return dir;
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/** The commit's time (seconds): the SOURCE_DATE_EPOCH of a build of it, as a build in a clone gets. */
export function layout3CommitTime(): string {
  requireCommit();
  return execFileSync("git", ["-C", ROOT, "log", "-1", "--format=%ct", LAYOUT3_COMMIT], {
    encoding: "utf8",
  }).trim();
}
