// Issue 14 §2 end to end: full maps fail closed, visibly. The demo lab on a real API server with
// Kubernetes-mode agents whose policy maps are small (--map-policy-entries) and an operator. A
// SecurityPolicy that gives db more entries than node-b's policy map has left makes db fail closed:
// real packets show it denied both ways but for its own node (allow-localhost), the rest of the demo
// unchanged; node-b's SecurityNodeStatus, the policies' Enforced condition, an event and the agent's
// metrics say so with the numbers. Deleting the policy brings db back without a restart; so does an
// agent restarted with a bigger map, which grows node-b's pinned maps under live traffic. A policy
// whose addresses overflow the ipcache (--map-ipcache-entries) is refused whole: the maps keep the
// last good state and the node status carries the error until it is deleted.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { makeClients, loadKubeConfig } from "../../operator/src/kube/client.ts";
import type { Operator } from "../../operator/src/controllers/run.ts";
import type { MatrixRow } from "../../operator/src/api/matrix-rows.ts";
import { runLiveTraffic } from "../../operator/src/lab/traffic.ts";
import { MapNames } from "../../operator/src/datapath/kernel/maps.ts";
import { loadObjects } from "../../operator/src/manifests/load.ts";
import {
  DEMO_POLICIES,
  DEMO_TOPOLOGY,
  expectedMatrix,
  type KubeLab,
  startKubeLab,
} from "../support/kube-lab.ts";
import { privilegeProblem } from "../support/privileged.ts";
import { parseSamples } from "../support/prometheus.ts";
import { verdictOf } from "../e2e/lab-support.ts";
import { startTestOperator, waitFor } from "./operator-helpers.ts";

const skip = privilegeProblem();
if (skip && process.env.CI === "true")
  throw new Error(`capacity-lab integration cannot run under CI: ${skip}`);

// The demo's node-b (backend and db) needs a few dozen entries; db with BIG needs more than 2 x 70.
const POLICY_MAP_ENTRIES = 128;
// Prefixes each ipcache map holds: the demo's pods and nodes fit, WIDE's addresses do not.
const IPCACHE_ENTRIES = 32;
const DB = "shop/db";
// Two rules of 35 ports (a rule holds at most 64), 3 apart: each its own entry.
const ports = (from: number) =>
  Array.from({ length: 35 }, (_, i) => `{port: ${from + 3 * i}, protocol: TCP}`).join(", ");
const BIG = `apiVersion: sluice.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: db-replicas, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - endpoints: [{endpointSelector: {matchLabels: {app: backend}}}]
    ports: [${ports(6000)}]
  - endpoints: [{endpointSelector: {matchLabels: {app: backend}}}]
    ports: [${ports(7000)}]
`;

// 40 addresses outside the cluster, each its own prefix: more than the agents' ipcache maps hold.
const WIDE = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: many-addresses, namespace: shop}
spec:
  podSelector: {matchLabels: {app: frontend}}
  policyTypes: [Egress]
  egress:
  - to: [${Array.from({ length: 40 }, (_, i) => `{ipBlock: {cidr: 198.51.100.${i + 1}/32}}`).join(", ")}]
`;
const mapFlags = (policy: number) => [
  "--map-policy-entries",
  String(policy),
  // No per-endpoint limit below the map's (default: half of it): the node's map is the limit here.
  "--endpoint-policy-entries",
  String(policy),
  "--map-ipcache-entries",
  String(IPCACHE_ENTRIES),
];

let kl: KubeLab | undefined;
let op: Operator | undefined;
const k = (args: string[], input?: string) => kl!.kubectl(args, input);

before(async () => {
  if (skip) return;
  kl = await startKubeLab();
  for (const n of kl.lab.plan.nodes)
    await kl.lab.startKubeAgent(n.name, kl.api.kubeconfigPath, 60_000, mapFlags(POLICY_MAP_ENTRIES));
  op = await startTestOperator(makeClients(loadKubeConfig(kl.api.kubeconfigPath)), "capacity-op");
});

after(async () => {
  await op?.stop();
  await kl?.destroy();
});

const demo = () => expectedMatrix(loadObjects([DEMO_TOPOLOGY, DEMO_POLICIES]));
// db failed closed: every row to or from it denied, the others as the policies say.
const dbClosed = (rows: MatrixRow[]) =>
  rows.map((r) => (r.from === DB || r.to === DB ? { ...r, verdict: "deny" as const } : r));

interface NodeStatus {
  status?: {
    failedClosedEndpoints?: number;
    errors?: {
      policy?: string;
      reason?: string;
      endpoint?: string;
      needed?: number;
      capacity?: number;
      message: string;
    }[];
  };
}
const nodeStatus = async (node: string) =>
  JSON.parse(await k(["get", "securitynodestatus", node, "-o", "json"])) as NodeStatus;
const enforcedCondition = async (name: string) => {
  const p = JSON.parse(await k(["get", "securitypolicy", "-n", "shop", name, "-o", "json"])) as {
    status?: { conditions?: { type: string; status: string; reason: string; message: string }[] };
  };
  return p.status?.conditions?.find((c) => c.type === "Enforced");
};
const metric = async (node: string, name: string, labels: Record<string, string> = {}) => {
  const { body } = await kl!.lab.agentHttp(node, "/metrics");
  return parseSamples(body).find(
    (s) => s.name === name && Object.entries(labels).every(([key, v]) => s.labels[key] === v),
  )?.value;
};

test("the demo fits: enforced as the compiler says", { skip }, async () => {
  await k(["apply", "-f", DEMO_POLICIES]);
  assert.deepEqual(await kl!.probeUntil(demo()), demo());
  assert.equal(await metric("node-b", "sluice_agent_endpoints_failed_closed", { limit: "policy_map" }), 0);
  const fill = await metric("node-b", "sluice_datapath_policy_fill_ratio");
  assert.ok(fill !== undefined && fill > 0 && fill < 1, `policy fill ratio ${fill}`);
});

test("db's policy does not fit node-b's map: db fails closed, visibly, with the numbers", {
  skip,
}, async () => {
  await k(["apply", "-f", "-"], BIG);
  const want = dbClosed(demo());
  assert.deepEqual(await kl!.probeUntil(want), want, "db denied both ways; the rest unchanged");
  // db's own node still reaches it (kubelet probes: allow-localhost).
  const own = await kl!.lab.probeFromNode("node-b", { to: [DB], ports: [{ port: 5432, protocol: "TCP" }] });
  assert.equal(verdictOf(own.results, "node:node-b", DB, 5432, "TCP"), "allow");

  const s = await waitFor("node-b reports db failed closed", async () => {
    const st = await nodeStatus("node-b");
    return st.status?.failedClosedEndpoints === 1 ? st : undefined;
  });
  const errors = s.status?.errors ?? [];
  // Every policy that selects db, each with the numbers: none of them is enforced for db on node-b.
  assert.deepEqual(errors.map((e) => [e.policy, e.reason, e.endpoint]).sort(), [
    ["ClusterSecurityPolicy/allow-monitoring-scrape", "CapacityExceeded", DB],
    ["NetworkPolicy/shop/default-deny-ingress", "CapacityExceeded", DB],
    ["SecurityPolicy/shop/db", "CapacityExceeded", DB],
    ["SecurityPolicy/shop/db-replicas", "CapacityExceeded", DB],
  ]);
  for (const e of errors) {
    assert.ok((e.needed ?? 0) > (e.capacity ?? 0), `needed ${e.needed} > available ${e.capacity}`);
    assert.match(
      e.message,
      /endpoint shop\/db needs \d+ entries in the node's policy map .* of its 128 are left; it fails closed/,
    );
  }
  assert.equal((await nodeStatus("node-a")).status?.failedClosedEndpoints, 0);

  for (const name of ["db", "db-replicas"]) {
    const c = await waitFor(`${name}: Enforced=False`, async () => {
      const e = await enforcedCondition(name);
      return e?.status === "False" && e.reason === "EnforcementFailed" ? e : undefined;
    });
    assert.match(c.message, /node-b: endpoint shop\/db needs \d+ entries .* it fails closed/);
  }
  const events = await waitFor("an EnforcementFailed event", async () => {
    const out = await k(["get", "events", "-n", "shop", "-o", "json"]);
    const items = (JSON.parse(out) as { items: { reason: string; message: string }[] }).items;
    return items.find((e) => e.reason === "EnforcementFailed" && /fails closed/.test(e.message));
  });
  assert.match(events.message, /^node node-b: endpoint shop\/db needs \d+ entries/);
  assert.equal(await metric("node-b", "sluice_agent_endpoints_failed_closed", { limit: "policy_map" }), 1);
  assert.equal(await metric("node-a", "sluice_agent_endpoints_failed_closed", { limit: "policy_map" }), 0);
});

test("the policy is deleted: db recovers its policy without a restart, the reports clear", {
  skip,
}, async () => {
  const agents = kl!.lab.runningAgents().sort();
  await k(["delete", "securitypolicy", "-n", "shop", "db-replicas"]);
  assert.deepEqual(await kl!.probeUntil(demo()), demo());
  await waitFor("node-b reports nothing failed closed", async () => {
    const st = await nodeStatus("node-b");
    return st.status?.failedClosedEndpoints === 0 && (st.status.errors ?? []).length === 0;
  });
  await waitFor("db: Enforced=True", async () => (await enforcedCondition("db"))?.status === "True");
  assert.equal(await metric("node-b", "sluice_agent_endpoints_failed_closed", { limit: "policy_map" }), 0);
  assert.deepEqual(kl!.lab.runningAgents().sort(), agents, "the same agents: no restart");
});

test("a node-wide map is full (ipcache): the write is refused whole, the last good state stays, the status says so", {
  skip,
}, async () => {
  const agents = kl!.lab.runningAgents().sort();
  await k(["apply", "-f", "-"], WIDE);
  try {
    await refusedWhole();
  } finally {
    await k(["delete", "networkpolicy", "-n", "shop", "many-addresses", "--ignore-not-found"]);
  }
  await waitFor("node-a's report clears", async () => {
    const st = await nodeStatus("node-a");
    return (st.status?.errors ?? []).length === 0;
  });
  assert.equal((await kl!.lab.agentHttp("node-a", "/readyz")).status, 200);
  assert.deepEqual(await kl!.probeUntil(demo()), demo());
  assert.deepEqual(kl!.lab.runningAgents().sort(), agents, "the same agents: no restart");
});

async function refusedWhole(): Promise<void> {
  // frontend's node holds the 40 prefixes' identities for its egress rule: they do not fit.
  const full = await waitFor("node-a reports its full ipcache", async () => {
    const errors = (await nodeStatus("node-a")).status?.errors ?? [];
    return errors.find((e) => e.reason === "CapacityExceeded" && e.policy === undefined);
  });
  assert.match(
    full.message,
    new RegExp(
      `^the node's ipcache map is full: the desired state needs \\d+ entries, it holds ${IPCACHE_ENTRIES}; nothing was written, the maps keep the last good state$`,
    ),
  );
  assert.equal(full.capacity, IPCACHE_ENTRIES);
  // The demo's prefixes and the 40 addresses.
  assert.ok((full.needed ?? 0) > 40, `needed ${full.needed}`);
  const ready = await kl!.lab.agentHttp("node-a", "/readyz");
  assert.equal(ready.status, 503, "the agent is not ready while its passes fail");
  assert.deepEqual(
    await kl!.probeUntil(demo()),
    demo(),
    "the maps keep the last good state: nothing opened or closed",
  );
}

test("a bigger map on a restart: node-b's maps grow in place and db, closed again, gets its policy", {
  skip,
}, async () => {
  await k(["apply", "-f", "-"], BIG);
  const closed = dbClosed(demo());
  assert.deepEqual(await kl!.probeUntil(closed), closed);
  await waitFor(
    "node-b reports db failed closed",
    async () => (await nodeStatus("node-b")).status?.failedClosedEndpoints === 1,
  );
  // The agent restarts with 4x the policy map: the pinned maps are grown (filled from the old ones,
  // programs swapped, pins moved), and db's policy fits. Meanwhile frontend streams UDP and TCP into
  // backend across node-b's enforced path: the resize loses none of it and resets nothing.
  const traffic = runLiveTraffic(kl!.lab, {
    from: "shop/frontend",
    to: "shop/backend",
    allowedUdpPort: 5000,
    deniedUdpPort: 9100, // backend listens there on TCP only: this stream is not measured here
    tcpPort: 8080,
    rate: 2000,
    durationMs: 6000,
  });
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await kl!.lab.stopAgent("node-b");
  await kl!.lab.startKubeAgent("node-b", kl!.api.kubeconfigPath, 60_000, mapFlags(4 * POLICY_MAP_ENTRIES));
  const r = await traffic;
  assert.ok(r.sent >= 5000, `sent ${r.sent}`);
  assert.equal(r.lost, 0, "no allowed datagram lost while the maps grew");
  assert.equal(r.tcpReset, false, `TCP stream survived (${r.tcpError})`);
  assert.ok(r.tcpBytes > 0 && r.tcpBytes === r.tcpBytesSent, "every TCP byte arrived");
  assert.deepEqual(await kl!.probeUntil(demo()), demo(), "db enforces its own policy again");
  await waitFor("node-b reports nothing failed closed", async () => {
    const st = await nodeStatus("node-b");
    return st.status?.failedClosedEndpoints === 0 && (st.status.errors ?? []).length === 0;
  });
  assert.equal(
    await metric("node-b", "sluice_datapath_map_capacity_entries", { map: MapNames.policySets }),
    4 * POLICY_MAP_ENTRIES,
  );
  assert.equal(await metric("node-b", "sluice_agent_live_replacements_total", { kind: "map_resize" }), 1);
  await waitFor(
    "db-replicas: Enforced=True",
    async () => (await enforcedCondition("db-replicas"))?.status === "True",
  );
});
