// Preloaded into every test process by scripts/test.sh (`--import`). With --test-force-exit, a test
// file's process calls process.exit() as soon as its tests finish; its results travel to the runner
// through a pipe on stdout, which Node writes asynchronously, so the exit cut them short: in a run of
// the whole suite one file reported 19 of its 28 tests, and the run still passed (Node 24.21). Blocking
// writes deliver every result before the exit (test/unit/harness.test.ts checks it).
const handle = (process.stdout as unknown as { _handle?: { setBlocking?: (b: boolean) => void } })._handle;
handle?.setBlocking?.(true);
