// The last commit of the previous datapath layout (layout 4: map names end in _v4), from git history:
// the starting point of the upgrade tests (test/e2e/upgrade.test.ts runs its agent in the lab,
// test/cluster/upgrade.test.ts builds its image and installs it with the chart). When the layout
// changes again, this names the last commit of the layout being replaced.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const PREVIOUS_LAYOUT_COMMIT = "05358137d5220b4c07d23a83abe8cd83e311bbe5";
/** SL_LAYOUT_VERSION of that commit: its pins end in `_v${PREVIOUS_LAYOUT_VERSION}`. */
export const PREVIOUS_LAYOUT_VERSION = 4;
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function requireCommit(): void {
  try {
    execFileSync("git", ["-C", ROOT, "cat-file", "-e", `${PREVIOUS_LAYOUT_COMMIT}^{commit}`], {
      stdio: "ignore",
    });
  } catch {
    throw new Error(
      `the upgrade test builds commit ${PREVIOUS_LAYOUT_COMMIT} from git history: run it in a clone that has it`,
    );
  }
}

/**
 * That commit's files (`git archive`: nothing of the repository is touched, no worktree to prune) in a
 * new temporary directory, which the caller removes.
 */
export function previousLayoutTree(): string {
  requireCommit();
  const dir = mkdtempSync(join(tmpdir(), `sluice-layout${PREVIOUS_LAYOUT_VERSION}-`));
  try {
    execFileSync("bash", ["-c", `git -C "${ROOT}" archive ${PREVIOUS_LAYOUT_COMMIT} | tar -x -C "${dir}"`]);
    return dir;
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/** The commit's time (seconds): the SOURCE_DATE_EPOCH of a build of it, as a build in a clone gets. */
export function previousLayoutCommitTime(): string {
  requireCommit();
  return execFileSync("git", ["-C", ROOT, "log", "-1", "--format=%ct", PREVIOUS_LAYOUT_COMMIT], {
    encoding: "utf8",
  }).trim();
}
