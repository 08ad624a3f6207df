// `helm upgrade` across a datapath layout change on a real cluster, under traffic (issue 9 §4). The
// chart is installed with the image of the previous layout's last commit (test/support/
// previous-layout.ts, built from git history with scripts/image-build.sh --tree), the demo's workloads
// (with their kubelet probes) and policies are enforced by that agent, then `helm upgrade` rolls the
// agent (and the operator) to this tree's image while UDP streams cross the enforced path: an allowed
// one (every datagram must arrive), a denied one (none may arrive) and a reply-only one into an
// ingress-isolated pod (it passes only on the conntrack entry the old datapath made). The new agent
// must carry conntrack over and remove the previous layout's pins, no workload pod may restart (nor
// fail kubelet's probes into a restart), and every probe must still give sluice matrix's verdict.
//
// Both installs use cni.install=false, and the node's conflist has no sluice-cni (chainSluice: false):
// pods start without the chained plugin and the agent finds their veths by the ptp route. The plugin
// only acts when a pod is created, which an in-place upgrade does not do to the workloads, so it
// would add nothing to what this test checks (the datapath carried across the agent swap); ptp.test.ts
// and bridge.test.ts cover it. The old image's agent and operator already have every flag and
// endpoint the chart uses (--metrics-addr, --log-*, /healthz, /readyz), so it is installed as a
// current image is, not with image.legacy.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { REPO_ROOT } from "../../operator/src/lab/local-apiserver.ts";
import type { TrafficReport } from "../../operator/src/lab/traffic-protocol.ts";
import { LAYOUT_VERSION } from "../../operator/src/datapath/kernel/maps.ts";
import { PREVIOUS_LAYOUT_COMMIT, PREVIOUS_LAYOUT_VERSION as FROM } from "../support/previous-layout.ts";
import { requirePrivileged } from "../support/privileged.ts";
import { builtImages, type Cluster, type ImageRef, startCluster } from "./support/cluster.ts";
import {
  agentPods,
  buildPreviousLayoutImage,
  hostPinRoot,
  type PodFacts,
  type PushResult,
  pins,
  podFacts,
  RELEASE_NS,
  udpPush,
} from "./support/upgrade.ts";
import {
  deploymentManifests,
  type LivePod,
  deployWorkloads,
  loadTopology,
  matrixFor,
  probeRows,
  probeUntil,
  sendTraffic,
  sortVerdicts,
  streamCounts,
  type Verdict,
} from "./support/workloads.ts";

const CHART = join(REPO_ROOT, "charts/sluice");
const POLICIES = join(REPO_ROOT, "samples/demo/policies");
const OLD_TAG = `layout${FROM}`;
const MIGRATED = new RegExp(
  `upgraded the datapath from layout ${FROM}: (\\d+) conntrack entries and (\\d+) counters`,
);
// The streams: long enough to cover the whole rollout (the test checks that they did).
const TRAFFIC_MS = 30_000;
const RATE = 1000; // datagrams per second, each stream
const UPGRADE_AFTER_MS = 6000;
const STREAM_PORT = 5000; // backend's events port: frontend may send to it, db may not
const PUSH_PORT = 7070;

let cluster: Cluster | undefined;
let imageDir: string | undefined;
let current: ImageRef | undefined;
let old: ImageRef | undefined;
let pods: LivePod[] = [];
let enforced: Verdict[] = [];
const topo = loadTopology();
const namespaces = topo.namespaces.map((n) => n.metadata.name);
const c = (): Cluster => {
  assert.ok(cluster, "the cluster did not start");
  return cluster;
};
const tagOf = (ref: string) => ref.slice(ref.lastIndexOf(":") + 1);
const pod = (key: string): LivePod => {
  const p = pods.find((x) => `${x.namespace}/${x.name}` === key);
  assert.ok(p, `a live pod of ${key}`);
  return p;
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function chartArgs(tag: string): string[] {
  const values = {
    ...c().chartValues,
    "operator.replicas": "1",
    "image.tag": tag,
    "cni.install": "false",
  };
  return Object.entries(values).flatMap(([k, v]) => ["--set", `${k}=${v}`]);
}

async function workloadPods(): Promise<PodFacts[]> {
  return (await Promise.all(namespaces.map((ns) => podFacts(c(), ns)))).flat();
}

async function agentLog(name: string): Promise<string> {
  return c().kubectl(["logs", "-n", RELEASE_NS, name]);
}

before(async () => {
  if (process.getuid?.() !== 0) return;
  // Not sluice-cl-*: startCluster removes those as runs' leftovers.
  const dir = mkdtempSync(join(tmpdir(), "sluice-upgrade-images-"));
  imageDir = dir;
  // Also when the runner exits without after() (a timeout, --test-force-exit).
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  const [built, oldImages] = await Promise.all([builtImages(), buildPreviousLayoutImage(imageDir, OLD_TAG)]);
  current = built.find((i) => i.image.includes("/sluice:"));
  const pause = built.find((i) => i.image.includes("/pause:"));
  old = oldImages.find((i) => i.image.includes("/sluice:"));
  assert.ok(current && pause && old, `images: ${JSON.stringify([...built, ...oldImages])}`);
  assert.notEqual(old.digest, current.digest);
  cluster = await startCluster({
    shape: "ptp",
    images: [pause.archive, current.archive, old.archive],
    chainSluice: false,
  });
});

after(async () => {
  await cluster?.stop();
  if (imageDir) rmSync(imageDir, { recursive: true, force: true });
});

test(`helm install of the layout-${FROM} image (${PREVIOUS_LAYOUT_COMMIT.slice(0, 7)}, cni.install=false) enforces the demo policies`, {
  timeout: 400_000,
}, async (t) => {
  if (!requirePrivileged(t)) return;
  assert.ok(current && old);
  await c().helm([
    "install",
    "sluice",
    CHART,
    "-n",
    RELEASE_NS,
    "--create-namespace",
    "--wait",
    "--timeout",
    "180s",
    ...chartArgs(OLD_TAG),
  ]);
  const [agent] = await agentPods(c());
  assert.equal(agent?.image, old.image, `the agent runs the layout-${FROM} image`);

  pods = await deployWorkloads(
    c(),
    deploymentManifests(current.image, topo.namespaces, topo.workloads),
    namespaces,
    topo.workloads,
  );
  await c().kubectl(["apply", "-f", POLICIES]);
  enforced = await matrixFor(c(), namespaces, [POLICIES]);
  assert.ok(enforced.some((r) => r.verdict === "deny") && enforced.some((r) => r.verdict === "allow"));
  assert.deepEqual(await probeUntil(c(), pods, enforced), sortVerdicts(enforced));
  const pinned = pins(hostPinRoot(c().chartValues));
  assert.ok(pinned.includes(`sl_ct4_v${FROM}`), `layout ${FROM}'s conntrack pinned: ${pinned.join(" ")}`);
});

test("helm upgrade to this tree's image under traffic: 0 lost, 0 leaked, conntrack carried over, no pod restarted", {
  timeout: 400_000,
}, async (t) => {
  if (!requirePrivileged(t)) return;
  assert.ok(current && old);
  assert.ok(enforced.length > 0, "the old agent enforced (the previous test)");
  const verdict = (from: string, to: string) =>
    enforced.find((r) => r.from === from && r.to === to && r.port === STREAM_PORT && r.protocol === "UDP")
      ?.verdict;
  const frontend = pod("shop/frontend");
  const backend = pod("shop/backend");
  const db = pod("shop/db");
  const prometheus = pod("monitoring/prometheus");
  const to = `shop/${backend.pod}`;
  assert.equal(verdict(`shop/${frontend.pod}`, to), "allow", "frontend -> backend 5000/UDP is allowed");
  assert.equal(verdict(`shop/${db.pod}`, to), "deny", "db -> backend 5000/UDP is denied");

  const podsBefore = await workloadPods();
  const [oldAgent] = await agentPods(c());
  assert.ok(oldAgent, "an agent pod");
  const id = `${process.pid}x${Date.now() % 1e6}`;
  const allowed = `a${id}`;
  const denied = `d${id}`;
  const stream = (name: string) => ({
    durationMs: TRAFFIC_MS,
    udp: [{ stream: name, ip: backend.ip, port: STREAM_PORT, rate: RATE }],
  });

  // backend (ingress-isolated: frontend and monitoring's metrics only) asks prometheus for a push:
  // what comes back passes backend's ingress only as replies of the flow the old datapath tracked.
  const push: Promise<PushResult> = udpPush(c(), prometheus, backend, {
    port: PUSH_PORT,
    rate: RATE,
    durationMs: TRAFFIC_MS,
  });
  await sleep(1500);
  const t0 = Date.now();
  const senders: Promise<TrafficReport>[] = [
    sendTraffic(c(), frontend, stream(allowed)),
    sendTraffic(c(), db, stream(denied)),
  ];
  for (const s of senders) s.catch(() => {}); // awaited below
  await sleep(UPGRADE_AFTER_MS);

  const tUpgrade = Date.now();
  await c().helm([
    "upgrade",
    "sluice",
    CHART,
    "-n",
    RELEASE_NS,
    "--wait",
    "--timeout",
    "180s",
    ...chartArgs(tagOf(current.image)),
  ]);
  const helmMs = Date.now() - tUpgrade;
  // The rollout is done when the new agent says it enforces (it migrates before that).
  let newAgent: PodFacts | undefined;
  let log = "";
  for (const deadline = Date.now() + 120_000; ; await sleep(250)) {
    newAgent = (await agentPods(c())).find((p) => p.image === current?.image && p.ready);
    log = newAgent ? await agentLog(newAgent.name).catch(() => "") : "";
    if (/agent ready on node/.test(log)) break;
    assert.ok(Date.now() < deadline, `the new agent did not get ready\n${log}`);
  }
  const upgradeMs = Date.now() - tUpgrade;
  const tEnforcing = Date.now();

  const reports = await Promise.all(senders);
  const pushed = await push;
  await sleep(1000);
  const counts = await streamCounts(c(), backend, STREAM_PORT);
  const sent = reports[0].udpSent[allowed] ?? 0;
  const received = counts[`${STREAM_PORT}/${allowed}`] ?? 0;
  const deniedSent = reports[1].udpSent[denied] ?? 0;
  const leaked = counts[`${STREAM_PORT}/${denied}`] ?? 0;
  const migration = MIGRATED.exec(log);
  t.diagnostic(
    `helm upgrade ${helmMs} ms, new agent enforcing ${upgradeMs} ms after it started; ` +
      `allowed: sent ${sent}, received ${received}; denied: sent ${deniedSent}, leaked ${leaked}; ` +
      `reply-only push: sent ${pushed.sent}, received ${pushed.received}, socket overflows ${pushed.overflowed}; ` +
      `migration: ${migration?.[0] ?? "not logged"}`,
  );

  // The agent was rolled to the new image, and that agent migrated the datapath.
  assert.ok(newAgent, "a Ready agent pod of the new image");
  assert.notEqual(newAgent.name, oldAgent.name, "a new agent pod");
  assert.notEqual(newAgent.imageID, oldAgent.imageID, "the agent runs another image than before");
  assert.deepEqual(
    (await agentPods(c())).map((p) => p.name),
    [newAgent.name],
    "the old agent pod is gone",
  );
  const operators = await podFacts(c(), RELEASE_NS, "app.kubernetes.io/component=operator");
  assert.deepEqual(
    operators.map((p) => [p.image, p.ready]),
    [[current.image, true]],
    "the operator rolled to the new image",
  );
  assert.ok(migration, `the new agent reports the migration from layout ${FROM}\n${log}`);
  assert.ok(Number(migration[1]) > 0, "the streams' conntrack entries were carried over");
  const pinned = pins(hostPinRoot(c().chartValues));
  assert.deepEqual(
    pinned.filter((p) => p.endsWith(`_v${FROM}`)),
    [],
    `layout ${FROM}'s pins removed`,
  );
  assert.ok(
    pinned.includes(`sl_ct4_v${LAYOUT_VERSION}`),
    `layout ${LAYOUT_VERSION}'s conntrack pinned: ${pinned.join(" ")}`,
  );

  // The streams covered the whole upgrade, from the old datapath to the new one.
  assert.ok(pushed.startedAt < tUpgrade, "the reply-only push began under the old datapath");
  assert.ok(
    t0 + TRAFFIC_MS > tEnforcing + 3000,
    `the streams ended ${tEnforcing + 3000 - t0 - TRAFFIC_MS} ms too early: the upgrade took ${upgradeMs} ms`,
  );
  assert.ok(sent >= (RATE * TRAFFIC_MS) / 1000 - 1, `sent ${sent}`);
  assert.equal(received, sent, "no allowed datagram lost");
  assert.ok(deniedSent >= (RATE * TRAFFIC_MS) / 1000 - 1, `denied stream sent ${deniedSent}`);
  assert.equal(leaked, 0, "no denied datagram leaked");
  assert.ok(pushed.sent >= (RATE * TRAFFIC_MS) / 1000 - 1, `pushed ${pushed.sent}`);
  // Every reply of the flow opened before the upgrade passed the datapath: it arrived, or the kernel
  // counted it at the client's full socket buffer (a client starved of CPU during the rollout).
  assert.ok(
    pushed.received + pushed.overflowed >= pushed.sent,
    `replies lost in the datapath: ${pushed.sent - pushed.received - pushed.overflowed} of ${pushed.sent}`,
  );

  // No workload pod restarted or was replaced; every verdict is what it was.
  const podsAfter = await workloadPods();
  assert.deepEqual(
    podsAfter.map(({ namespace, name, uid, restarts }) => ({ namespace, name, uid, restarts })),
    podsBefore.map(({ namespace, name, uid }) => ({ namespace, name, uid, restarts: 0 })),
  );
  assert.deepEqual(await probeRows(c(), pods, enforced), sortVerdicts(enforced));
});
