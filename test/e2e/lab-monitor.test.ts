// `sluice monitor` against `sluice lab up` (a real kube-apiserver, the operator, one Kubernetes-mode
// agent per node on the real kernel): after `kubectl apply` of the demo's policies, probes between the
// pods produce verdict events that the agents name; `sluice monitor --lab -o json` shows each denied and
// allowed probe with the right pods and port, and the rule that decided it as the policies say (written
// out below from the manifests, not computed), or the default deny with the policies that isolate the
// pod; `--follow` streams them while they happen; filters select; the table is one line a flow.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { type MatrixJson, type MatrixRow, sortRows } from "../../operator/src/api/matrix-rows.ts";
import { kubectlOk } from "../../operator/src/lab/cluster-setup.ts";
import { removeLeftovers } from "../../operator/src/lab/up-leftovers.ts";
import { readState } from "../../operator/src/lab/up-state.ts";
import { loadObjects } from "../../operator/src/manifests/load.ts";
import type { FlowRecord, MonitorRecord } from "../../operator/src/monitor/flow-record.ts";
import { DEMO_POLICIES, DEMO_TOPOLOGY, expectedMatrix } from "../support/kube-lab.ts";
import { requirePrivileged } from "../support/privileged.ts";
import { agentMissing, SLUICE, sluice } from "./lab-support.ts";

const stateDir = `/run/sluice-lab/up-monitor-${randomBytes(3).toString("hex")}`;
process.env.SLUICE_LAB_STATE_DIR = stateDir;
const work = mkdtempSync(join(tmpdir(), "sluice-lab-monitor-test-"));

async function cleanup(): Promise<void> {
  if (existsSync(stateDir)) await sluice(["lab", "down"]);
  if (existsSync(stateDir)) await removeLeftovers(stateDir, readState(stateDir));
}
after(async () => {
  await cleanup();
  rmSync(work, { recursive: true, force: true });
});

async function probe(): Promise<MatrixRow[]> {
  const r = await sluice(["lab", "probe", "-o", "json"]);
  assert.equal(r.code, 0, `lab probe failed:\n${r.stderr}`);
  return sortRows((JSON.parse(r.stdout) as MatrixJson).results);
}

async function monitor(args: readonly string[]): Promise<MonitorRecord[]> {
  const r = await sluice(["monitor", "--lab", "-o", "json", ...args]);
  assert.equal(r.code, 0, `monitor ${args.join(" ")} failed:\n${r.stderr}`);
  return r.stdout
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as MonitorRecord);
}

const flows = (rs: readonly MonitorRecord[]) => rs.filter((r): r is FlowRecord => r.type === "flow");

// The flows of one probe: the pods, the destination port, the verdict.
function of(
  fs: readonly FlowRecord[],
  from: string,
  to: string,
  port: number,
  verdict: FlowRecord["verdict"],
) {
  return fs.filter(
    (f) =>
      f.source.pod === from &&
      f.destination.pod === to &&
      f.port === port &&
      f.verdict === verdict &&
      f.protocol === "TCP",
  );
}

// A follower: `sluice monitor --lab --follow -o json` running while probes happen.
function follow(args: readonly string[]): {
  child: ChildProcess;
  lines: () => MonitorRecord[];
  exited: Promise<number | null>;
} {
  const child = spawn(SLUICE, ["monitor", "--lab", "--follow", "-o", "json", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  child.stderr!.resume();
  const exited = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
  return {
    child,
    lines: () =>
      out
        .split("\n")
        .filter((l) => l.endsWith("}"))
        .map((l) => JSON.parse(l) as MonitorRecord),
    exited,
  };
}

test("lab up, the demo's policies, probes: sluice monitor names every verdict and the rule behind it", {
  timeout: 300_000,
}, async (t) => {
  if (!requirePrivileged(t, agentMissing)) return;
  t.after(cleanup);
  const up = await sluice(["lab", "up", "-f", DEMO_TOPOLOGY]);
  assert.equal(up.code, 0, `lab up failed:\n${up.stderr}`);
  const kubeconfig = /^export KUBECONFIG=(.+)$/m.exec(up.stdout)?.[1];
  assert.ok(kubeconfig, up.stdout);
  const state = readState(stateDir);
  assert.deepEqual(
    Object.keys(state?.monitors ?? {}).sort(),
    [...(state?.nodes ?? [])].sort(),
    "every agent's monitor is recorded",
  );

  const follower = follow(["--to", "shop/db", "--verdict", "denied"]);
  t.after(() => {
    follower.child.kill("SIGKILL");
  });
  await kubectlOk(["apply", "-f", DEMO_POLICIES], kubeconfig, undefined, {
    cacheDir: join(work, "kubectl-cache"),
  });
  const want = expectedMatrix(loadObjects([DEMO_TOPOLOGY, DEMO_POLICIES]));
  for (let t0 = Date.now(); ; ) {
    const got = await probe();
    if (JSON.stringify(got) === JSON.stringify(want)) break;
    assert.ok(Date.now() - t0 < 60_000, "the agents enforce the policies within a minute");
    await new Promise((r) => setTimeout(r, 300));
  }
  // One more probe of every pair, once the policies are enforced: what the monitor must show.
  const since = new Date().toISOString();
  assert.deepEqual(await probe(), want);
  const records = await monitor(["--since", since]);
  const fs = flows(records);
  assert.ok(records[0]?.type === "stats", "a stream starts with its stats");

  // Every probe the matrix has appears with its verdict and pods (TCP rows: UDP probes get no answer
  // to name, but they are there too).
  for (const row of want.filter((r) => r.protocol === "TCP")) {
    const verdict = row.verdict === "allow" ? "allowed" : "denied";
    assert.ok(
      of(fs, row.from, row.to, row.port, verdict).length > 0,
      `a ${verdict} flow ${row.from} -> ${row.to}:${row.port}`,
    );
  }
  // The deciding rules, from the manifests in samples/demo/policies: each allowed connection passes the
  // source's egress (no policy isolates egress in the demo) and the destination's ingress.
  const decided = (from: string, to: string, port: number, verdict: FlowRecord["verdict"]) => {
    const f = of(fs, from, to, port, verdict).filter((x) => x.reason === "policy" || x.reason === "default");
    assert.ok(f.length > 0, `${from} -> ${to}:${port} ${verdict}, decided by policy`);
    return new Set(f.map((x) => `${x.node} ${x.direction} ${x.decidedBy}`));
  };
  const egressOpen = (node: string) => `${node} egress default allow (not isolated)`;
  const expected: Array<[string, string, number, FlowRecord["verdict"], string[]]> = [
    [
      "shop/frontend",
      "shop/backend",
      8080,
      "allowed",
      [egressOpen("node-a"), "node-b ingress SecurityPolicy/shop/backend ingress[0]"],
    ],
    [
      "shop/backend",
      "shop/db",
      5432,
      "allowed",
      [egressOpen("node-b"), "node-b ingress SecurityPolicy/shop/db ingress[0]"],
    ],
    [
      "monitoring/prometheus",
      "shop/backend",
      9100,
      "allowed",
      [egressOpen("node-a"), "node-b ingress ClusterSecurityPolicy/allow-monitoring-scrape ingress[0]"],
    ],
    [
      "monitoring/prometheus",
      "shop/frontend",
      80,
      "allowed",
      [egressOpen("node-a"), "node-a ingress NetworkPolicy/shop/frontend-public ingress[0]"],
    ],
    // Denied by a Baseline rule on the way out of prometheus (node-a): it never reaches node-b.
    [
      "monitoring/prometheus",
      "shop/db",
      5432,
      "denied",
      ["node-a egress ClusterSecurityPolicy/baseline-no-cross-namespace-db egress[0]"],
    ],
  ];
  for (const [from, to, port, verdict, want] of expected)
    assert.deepEqual(decided(from, to, port, verdict), new Set(want), `${from} -> ${to}:${port}`);
  // Denied by the default of a pod two namespace policies isolate.
  const isolated = of(fs, "shop/frontend", "shop/db", 5432, "denied");
  for (const f of isolated) {
    assert.equal(f.reason, "default");
    assert.deepEqual(
      new Set(f.isolatedBy),
      new Set(["NetworkPolicy/shop/default-deny-ingress", "SecurityPolicy/shop/db"]),
    );
    assert.match(f.decidedBy, /^default deny \(isolated by .*NetworkPolicy\/shop\/default-deny-ingress/);
    assert.equal(f.rule, undefined);
  }
  // The policy a flow names is one the flow's pods are subject to: every denied flow into shop names
  // default-deny-ingress among its isolating policies.
  for (const f of fs.filter(
    (x) => x.verdict === "denied" && x.direction === "ingress" && x.destination.pod?.startsWith("shop/"),
  ))
    assert.ok(f.isolatedBy?.includes("NetworkPolicy/shop/default-deny-ingress"), JSON.stringify(f));

  // Filters select on the agents' side.
  const byPolicy = flows(await monitor(["--since", since, "--policy", "SecurityPolicy/shop/db"]));
  assert.ok(byPolicy.length > 0);
  for (const f of byPolicy)
    assert.ok(
      f.rule?.policy === "SecurityPolicy/shop/db" || f.isolatedBy?.includes("SecurityPolicy/shop/db"),
      JSON.stringify(f),
    );
  const nodeB = flows(
    await monitor(["--since", since, "--node", "node-b", "--verdict", "allowed", "--port", "8080"]),
  );
  assert.ok(
    nodeB.length > 0 && nodeB.every((f) => f.node === "node-b" && f.verdict === "allowed" && f.port === 8080),
  );

  // The follower saw the denied probes into shop/db while they happened, and nothing else.
  const followed = flows(follower.lines());
  assert.ok(
    of(followed, "shop/frontend", "shop/db", 5432, "denied").length > 0,
    `followed: ${followed.length} flows`,
  );
  assert.ok(followed.every((f) => f.destination.pod === "shop/db" && f.verdict === "denied"));
  assert.ok(
    follower.lines().some((r) => r.type === "stats"),
    "a follower gets the stats",
  );
  follower.child.kill("SIGINT");
  assert.equal(await follower.exited, 0, "SIGINT ends a follower with exit 0");

  // The table: a header and one line a flow.
  const table = await sluice([
    "monitor",
    "--lab",
    "--since",
    since,
    "--verdict",
    "denied",
    "--to",
    "shop/db",
  ]);
  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trim().split("\n");
  assert.match(lines[0]!, /^TIME\s+NODE\s+DIRECTION\s+VERDICT\s+SOURCE\s+DESTINATION\s+PORT\s+DECIDED BY$/);
  assert.ok(lines.length > 1);
  assert.ok(
    lines.slice(1).every((l) => /\sdenied\s.*-> shop\/db\s+5432\/TCP\s/.test(l)),
    lines.join("\n"),
  );

  const bad = await sluice(["monitor", "--lab", "--node", "node-z"]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--node: no agent on node-z/);

  const down = await sluice(["lab", "down"]);
  assert.equal(down.code, 0, down.stderr);
});
