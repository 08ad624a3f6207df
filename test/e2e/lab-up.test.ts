// `sluice lab up / probe / down` through the real CLI: a local kube-apiserver, the operator and one
// Kubernetes-mode agent per node on a network-namespace lab; `kubectl apply` of the sample policies
// against the printed KUBECONFIG changes what `lab probe` measures (equal to the compiler's matrix);
// `lab down` leaves nothing behind, also after the lab's supervisor was killed with -9.
// `lab clean` removes what a `lab run` killed with -9 left behind, the processes inside its namespaces too.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { kubectlOk } from "../../operator/src/lab/cluster-setup.ts";
import { loadObjects } from "../../operator/src/manifests/load.ts";
import { type MatrixJson, type MatrixRow, sortRows } from "../../operator/src/api/matrix-rows.ts";
import { cleanRuns, netnsPids, pidAlive, waitGone } from "../../operator/src/lab/stale.ts";
import { removeLeftovers } from "../../operator/src/lab/up-leftovers.ts";
import { readState, type UpState } from "../../operator/src/lab/up-state.ts";
import { DEMO_POLICIES, DEMO_TOPOLOGY, expectedMatrix } from "../support/kube-lab.ts";
import { requirePrivileged } from "../support/privileged.ts";
import { agentMissing, labNetns, sluice } from "./lab-support.ts";

const topologyFile = DEMO_TOPOLOGY;
const policyDir = DEMO_POLICIES;
// A state directory of this run's own, so a lab someone has up on this machine is never touched.
const stateDir = `/run/sluice-lab/up-test-${randomBytes(3).toString("hex")}`;
process.env.SLUICE_LAB_STATE_DIR = stateDir;
let work = "";

function expected(paths: string[]): MatrixRow[] {
  return expectedMatrix(loadObjects(paths));
}

async function up(): Promise<{ kubeconfig: string; state: UpState; stderr: string }> {
  const r = await sluice(["lab", "up", "-f", topologyFile]);
  assert.equal(r.code, 0, `lab up failed:\n${r.stderr}`);
  const m = /^export KUBECONFIG=(.+)$/m.exec(r.stdout);
  assert.ok(m, `lab up printed no KUBECONFIG: ${r.stdout}`);
  const state = readState(stateDir);
  assert.ok(state, "lab up left no state");
  assert.equal(state.phase, "ready");
  return { kubeconfig: m[1], state, stderr: r.stderr };
}

async function probe(): Promise<MatrixRow[]> {
  const r = await sluice(["lab", "probe", "-o", "json"]);
  assert.equal(r.code, 0, `lab probe failed:\n${r.stderr}`);
  return sortRows((JSON.parse(r.stdout) as MatrixJson).results);
}

// The agents apply asynchronously: probe until the lab measures what the compiler says.
async function probeUntil(want: MatrixRow[], timeoutMs = 60_000): Promise<MatrixRow[]> {
  const t0 = Date.now();
  for (;;) {
    const got = await probe();
    if (JSON.stringify(got) === JSON.stringify(want) || Date.now() - t0 > timeoutMs) return got;
    await new Promise((r) => setTimeout(r, 300));
  }
}

function processesMentioning(text: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, "utf8").includes(text)) out.push(Number(d));
    } catch {
      // exited
    }
  }
  return out;
}

// Nothing of the lab may remain: namespaces, bpffs root, work dir, state, processes.
function assertGone(state: UpState): void {
  assert.deepEqual(labNetns(state.runId), [], "no namespace of the run");
  assert.ok(!existsSync(`/sys/fs/bpf/sluice-lab-${state.runId}`), "no bpffs root of the run");
  assert.deepEqual(
    readdirSync(tmpdir()).filter((d) => d.startsWith(`sluice-lab-${state.runId}-`)),
    [],
    "no lab work dir",
  );
  assert.ok(!existsSync(stateDir), "no state dir");
  assert.ok(!existsSync(`/run/sluice-lab/${state.runId}`), "the run is no longer recorded");
  for (const [what, pid] of [
    ["supervisor", state.pid],
    ["API server", state.apiserverPid],
    ["operator", state.operatorPid],
  ] as const)
    assert.ok(pid && !pidAlive(pid), `${what} (pid ${pid}) is gone`);
  assert.deepEqual(processesMentioning(`sluice-lab-${state.runId}`), [], "no agent of the run is left");
  assert.deepEqual(processesMentioning(stateDir), [], "no process uses the state dir");
}

before(() => {
  work = mkdtempSync(join(tmpdir(), "sluice-lab-up-test-"));
});

// Whatever a failed assertion left: the CLI first, then directly.
async function cleanup(): Promise<void> {
  if (existsSync(stateDir)) await sluice(["lab", "down"]);
  if (existsSync(stateDir)) await removeLeftovers(stateDir, readState(stateDir));
}

after(async () => {
  await cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
});

test("lab up, kubectl apply of the sample policies, lab probe measures the compiler's matrix, lab down", async (t) => {
  if (!requirePrivileged(t, agentMissing)) return;
  t.after(cleanup);
  const { kubeconfig, state, stderr } = await up();
  t.diagnostic(stderr.split("\n").find((l) => / up in /.test(l)) ?? "");

  const again = await sluice(["lab", "up", "-f", topologyFile]);
  assert.notEqual(again.code, 0, "a second lab up fails");
  assert.match(again.stderr, /already up/);

  // Right after up, without waiting: the operator has allocated identities and every agent enforces.
  const open = expected([topologyFile]);
  assert.ok(open.length > 0 && open.every((r) => r.verdict === "allow"));
  assert.deepEqual(await probe(), open, "a probe right after up measures the topology without policies");

  const status = await sluice(["lab", "status", "-o", "json"]);
  assert.equal(status.code, 0, status.stderr);
  const s = JSON.parse(status.stdout) as UpState;
  assert.equal(s.phase, "ready");
  assert.deepEqual(s.agents?.sort(), [...state.nodes].sort(), "an agent runs on every node");

  await kubectlOk(["apply", "-f", policyDir], kubeconfig, undefined, {
    cacheDir: join(work, "kubectl-cache"),
  });
  const want = expected([topologyFile, policyDir]);
  assert.ok(
    want.some((r) => r.verdict === "deny"),
    "the samples deny something",
  );
  assert.deepEqual(await probeUntil(want), want);

  const table = await sluice(["lab", "probe"]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^FROM\s+TO\s/);
  assert.match(table.stderr, /\d+ probes \(\d+ allow, \d+ deny\)/);

  const down = await sluice(["lab", "down"]);
  assert.equal(down.code, 0, `lab down failed:\n${down.stderr}`);
  assertGone(state);

  const after = await sluice(["lab", "probe"]);
  assert.notEqual(after.code, 0);
  assert.match(after.stderr, /no lab is up/);
});

test("lab down after the supervisor was killed with -9 removes everything", async (t) => {
  if (!requirePrivileged(t, agentMissing)) return;
  t.after(cleanup);
  const { state } = await up();
  process.kill(state.pid, "SIGKILL");
  await waitGone([state.pid], 5000);

  const probed = await sluice(["lab", "probe"]);
  assert.notEqual(probed.code, 0);
  assert.match(probed.stderr, /supervisor .* is gone/);
  const again = await sluice(["lab", "up", "-f", topologyFile]);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /sluice lab down/);

  const down = await sluice(["lab", "down"]);
  assert.equal(down.code, 0, `lab down failed:\n${down.stderr}`);
  assert.match(down.stderr, /removed leftovers/);
  assertGone(state);
});

// The processes inside a run's namespaces (pod servers, agents, API bridges).
async function pidsInside(runId: string): Promise<number[]> {
  return [...(await netnsPids(labNetns(runId)))];
}

test("lab clean removes what a lab run killed with -9 left behind, processes included", async (t) => {
  if (!requirePrivileged(t, agentMissing)) return;
  let pid = 0;
  const running = sluice(["lab", "run", "-f", topologyFile, "-f", policyDir], (p) => {
    pid = p;
  });
  // The run's id: the record under /run/sluice-lab that holds the CLI's pid.
  let runId = "";
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    runId =
      readdirSync("/run/sluice-lab").find((r) => {
        try {
          return /^[0-9a-f]{4}$/.test(r) && readFileSync(`/run/sluice-lab/${r}`, "utf8") === String(pid);
        } catch {
          return false;
        }
      }) ?? "";
    // Once every node's agent runs, there is something to leave behind.
    if (runId && processesMentioning(`sluice-lab-${runId}`).length >= 2) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(runId, "the lab run recorded itself");
  t.after(async () => {
    if (pid && pidAlive(pid)) process.kill(pid, "SIGKILL");
    await cleanRuns([runId]);
  });
  process.kill(pid, "SIGKILL");
  await running;
  const inside = await pidsInside(runId);
  assert.ok(inside.length > 0, "the killed run left processes in its namespaces");

  const clean = await sluice(["lab", "clean"]);
  assert.equal(clean.code, 0, clean.stderr);
  assert.deepEqual(labNetns(runId), [], "no namespace of the run");
  assert.ok(!existsSync(`/sys/fs/bpf/sluice-lab-${runId}`), "no bpffs root of the run");
  assert.ok(!existsSync(`/run/sluice-lab/${runId}`), "the run is no longer recorded");
  assert.deepEqual(
    readdirSync(tmpdir()).filter((d) => d.startsWith(`sluice-lab-${runId}-`)),
    [],
    "no lab work dir",
  );
  assert.deepEqual(
    inside.filter((p) => pidAlive(p)),
    [],
    "every process that was inside is gone",
  );
});
