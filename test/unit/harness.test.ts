// The suite's own runner (scripts/test.sh): with --test-force-exit a test file's process exits as soon
// as its tests finish, and without test/support/blocking-stdout.ts that exit dropped results still in
// the pipe to the runner, so files reported fewer tests than they have and the run passed. A file of
// 40 tests in 8 suites, run as scripts/test.sh runs files, must report all 40 every time.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "../../operator/src/lab/local-apiserver.ts";

function withoutTestContext(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  return env;
}

test("every test of a file reaches the runner under --test-force-exit", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-harness-"));
  try {
    const body = Array.from(
      { length: 8 },
      (_, d) =>
        `describe("suite ${d}", () => {\n${Array.from(
          { length: 5 },
          (_, t) => `  test("t${d}.${t}", () => { let x = 0; for (let i = 0; i < 200000; i++) x += i; });`,
        ).join("\n")}\n});`,
    ).join("\n");
    const file = join(dir, "forty.test.mjs");
    writeFileSync(file, `import { describe, test } from "node:test";\n${body}\n`);
    const counts: number[] = [];
    for (let run = 0; run < 8; run++) {
      const out = execFileSync(
        process.execPath,
        [
          "--disable-warning=ExperimentalWarning",
          "--import",
          join(REPO_ROOT, "test/support/blocking-stdout.ts"),
          "--test",
          "--test-force-exit",
          "--test-reporter=tap",
          file,
        ],
        // As a top-level run: a test process's own context would make the nested run report to it.
        { encoding: "utf8", env: withoutTestContext() },
      );
      counts.push(Number(/^# tests (\d+)$/m.exec(out)?.[1]));
    }
    assert.deepEqual(counts, Array(8).fill(40));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
