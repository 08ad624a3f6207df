// The end-to-end suite on a real cluster, for one CNI shape: `helm install` of the chart from the
// image `npm run image` builds, workloads from Deployments started by kubelet through the CNI and
// Sluice's chained plugin, `kubectl apply` of the demo's policies, probes with `kubectl exec` that
// must equal `sluice matrix` for the same objects, kubelet's readiness and liveness probes under
// default deny, an agent restarted by its DaemonSet, and `helm uninstall`.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { REPO_ROOT } from "../../../operator/src/lab/local-apiserver.ts";
import { requirePrivileged } from "../../support/privileged.ts";
import { builtImages, type Cluster, type CniShape, startCluster } from "./cluster.ts";
import type { FlowRecord, MonitorRecord } from "../../../operator/src/monitor/flow-record.ts";
import { measureFirstPacket } from "./first-packet.ts";
import {
  deploymentManifests,
  type LivePod,
  deployWorkloads,
  loadTopology,
  matrixFor,
  podHealth,
  probeRows,
  probeUntil,
  sendTraffic,
  sortVerdicts,
  streamCounts,
  type Verdict,
} from "./workloads.ts";

const CHART = join(REPO_ROOT, "charts/sluice");
const POLICIES = join(REPO_ROOT, "samples/demo/policies");
const SAMPLES = join(REPO_ROOT, "samples/policies");
const RELEASE_NS = "sluice-system";

export interface SuiteOptions {
  /** Also restart the agent under traffic and uninstall the chart (the longer half of the suite). */
  lifecycle: boolean;
}

export function clusterSuite(shape: CniShape, opts: SuiteOptions): void {
  let cluster: Cluster | undefined;
  let image = "";
  let pods: LivePod[] = [];
  let enforced: Verdict[] = [];
  const restartsBefore = new Map<string, number>();
  const topo = loadTopology();
  const namespaces = topo.namespaces.map((n) => n.metadata.name);
  const agentPod = async (): Promise<string> =>
    (
      await c().kubectl([
        "get",
        "pods",
        "-n",
        RELEASE_NS,
        "-l",
        "app.kubernetes.io/component=agent",
        "-o",
        "name",
      ])
    ).trim();
  const c = (): Cluster => {
    assert.ok(cluster, "the cluster did not start");
    return cluster;
  };

  before(async () => {
    if (process.getuid?.() !== 0) return;
    const images = await builtImages();
    image = images.find((i) => i.image.includes("/sluice:"))?.image ?? "";
    assert.ok(image, `npm run image built no sluice image (${JSON.stringify(images)})`);
    cluster = await startCluster({ shape });
  });
  after(async () => {
    await cluster?.stop();
  });

  test(`${shape}: helm install runs the operator and the agent from the image`, async (t) => {
    if (!requirePrivileged(t)) return;
    // The upstream policy CRDs too: the samples include ClusterNetworkPolicy, AdminNetworkPolicy and
    // BaselineAdminNetworkPolicy, which the agents then enforce on the cluster's traffic.
    const values = { ...c().chartValues, "operator.replicas": "1", "upstreamCRDs.install": "true" };
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
      ...Object.entries(values).flatMap(([k, v]) => ["--set", `${k}=${v}`]),
    ]);
    const ds = JSON.parse(
      await c().kubectl(["get", "daemonset", "sluice-agent", "-n", RELEASE_NS, "-o", "json"]),
    ) as {
      status: { desiredNumberScheduled: number; numberReady: number };
    };
    assert.ok(ds.status.desiredNumberScheduled >= 1);
    assert.equal(ds.status.numberReady, ds.status.desiredNumberScheduled, "every agent Ready");
    const op = JSON.parse(
      await c().kubectl(["get", "deployment", "sluice-operator", "-n", RELEASE_NS, "-o", "json"]),
    ) as {
      status: { readyReplicas?: number };
    };
    assert.equal(op.status.readyReplicas, 1, "the operator Ready");
  });

  test(`${shape}: pods from Deployments start through the chained plugin; probes follow sluice matrix`, {
    timeout: 180_000,
  }, async (t) => {
    if (!requirePrivileged(t)) return;
    pods = await deployWorkloads(
      c(),
      deploymentManifests(image, topo.namespaces, topo.workloads),
      namespaces,
      topo.workloads,
    );
    const open = await matrixFor(c(), namespaces, []);
    assert.ok(
      open.length > 0 && open.every((r) => r.verdict === "allow"),
      "no policy: the matrix allows everything",
    );
    assert.deepEqual(await probeUntil(c(), pods, open), sortVerdicts(open));
    // Host routing in BPF (the chart's default) over the CNI's own veths: the agent's last word on it is
    // that it is on (off would name the interface that keeps it off).
    const said = (await c().kubectl(["logs", "-n", RELEASE_NS, await agentPod()]))
      .split("\n")
      .filter((l) => l.includes("host routing in BPF"));
    assert.match(
      said.at(-1) ?? "",
      /host routing in BPF on/,
      `the agent on host routing: ${said.join(" | ")}`,
    );
  });

  test(`${shape}: kubectl apply of the demo policies: probes follow sluice matrix`, {
    timeout: 180_000,
  }, async (t) => {
    if (!requirePrivileged(t)) return;
    for (const ns of namespaces)
      for (const p of await podHealth(c(), ns)) restartsBefore.set(`${ns}/${p.pod}`, p.restarts);
    await c().kubectl(["apply", "-f", POLICIES]);
    enforced = await matrixFor(c(), namespaces, [POLICIES]);
    assert.ok(enforced.some((r) => r.verdict === "deny") && enforced.some((r) => r.verdict === "allow"));
    const got = await probeUntil(c(), pods, enforced);
    assert.deepEqual(got, sortVerdicts(enforced));
  });

  test(`${shape}: kubelet's readiness and liveness probes keep working under default deny`, {
    timeout: 60_000,
  }, async (t) => {
    if (!requirePrivileged(t)) return;
    // Five probe periods (2 s) under shop's default-deny-ingress: a blocked probe would have made a
    // pod unready (2 failures) and restarted it (liveness).
    await new Promise((r) => setTimeout(r, 10_000));
    for (const ns of namespaces)
      for (const p of await podHealth(c(), ns)) {
        assert.ok(p.ready, `${ns}/${p.pod} is Ready`);
        assert.equal(
          p.restarts,
          restartsBefore.get(`${ns}/${p.pod}`),
          `${ns}/${p.pod} was not restarted under the policies`,
        );
      }
  });

  test(`${shape}: sluice monitor through pods/portforward names the probes' drops and the isolating policies`, {
    timeout: 120_000,
  }, async (t) => {
    if (!requirePrivileged(t)) return;
    assert.ok(enforced.length > 0, "the demo's matrix (an earlier test) is known");
    const since = new Date().toISOString();
    assert.deepEqual(await probeRows(c(), pods, enforced), sortVerdicts(enforced));
    // The agent pod's loopback is the node's (host network): the API server's port-forward reaches its
    // monitor there through kubelet and containerd.
    const out = await c().sluice([
      "monitor",
      "--sluice-namespace",
      RELEASE_NS,
      "--since",
      since,
      "-o",
      "json",
    ]);
    const records = out
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as MonitorRecord);
    assert.equal(records[0]?.type, "stats", out.slice(0, 500));
    const flows = records.filter((r): r is FlowRecord => r.type === "flow");
    // Every denied TCP probe of the demo's policies shows as a denied flow between the two pods
    // (denied packets are all reported), decided by a rule or by the default of an isolated pod.
    const denied = enforced.filter((r) => r.verdict === "deny" && r.protocol === "TCP");
    assert.ok(denied.length > 0);
    for (const row of denied) {
      const seen = flows.filter(
        (f) =>
          f.verdict === "denied" &&
          f.source.pod === row.from &&
          f.destination.pod === row.to &&
          f.port === row.port,
      );
      assert.ok(
        seen.length > 0,
        `a denied flow ${row.from} -> ${row.to}:${row.port} in ${flows.length} flows`,
      );
      for (const f of seen)
        assert.ok(f.rule || (f.isolatedBy?.length ?? 0) > 0, `${f.decidedBy}: names a rule or what isolates`);
      // Dropped at a shop pod's ingress: the default of a pod the demo's default-deny-ingress isolates
      // (prometheus' drops to db are its own egress, by the Baseline rule).
      for (const f of seen.filter((x) => x.direction === "ingress" && row.to.startsWith("shop/")))
        assert.ok(f.isolatedBy?.includes("NetworkPolicy/shop/default-deny-ingress"), JSON.stringify(f));
    }
    assert.ok(
      flows.some(
        (f) => f.verdict === "denied" && f.direction === "ingress" && (f.isolatedBy?.length ?? 0) > 0,
      ),
      "some drop is a default deny naming what isolates the pod",
    );
    t.diagnostic(`${flows.length} flows, ${denied.length} denied probe rows named`);
  });

  test(`${shape}: kubectl apply of every sample policy on top: probes follow sluice matrix; deleted again`, {
    timeout: 180_000,
  }, async (t) => {
    if (!requirePrivileged(t)) return;
    assert.ok(enforced.length > 0, "the demo's matrix (an earlier test) is known");
    await c().kubectl(["apply", "-f", SAMPLES]);
    const withSamples = await matrixFor(c(), namespaces, [POLICIES, SAMPLES]);
    assert.notDeepEqual(sortVerdicts(withSamples), sortVerdicts(enforced), "the samples change some verdict");
    assert.deepEqual(await probeUntil(c(), pods, withSamples), sortVerdicts(withSamples));
    await c().kubectl(["delete", "-f", SAMPLES]);
    assert.deepEqual(await probeUntil(c(), pods, enforced), sortVerdicts(enforced));
  });

  if (!opts.lifecycle) return;

  test(`${shape}: a pod is enforced from its first packet`, { timeout: 240_000 }, async (t) => {
    if (!requirePrivileged(t)) return;
    const starts = 9;
    const r = await measureFirstPacket(c(), image, starts);
    t.diagnostic(JSON.stringify(r));
    assert.ok(
      r.controlSent > 0 && r.controlReceived === r.controlSent,
      `controls: ${r.controlReceived} of ${r.controlSent} arrived`,
    );
    assert.ok(
      r.openReceived.every((n) => n > 0),
      `open pods received the peer's datagrams: ${r.openReceived}`,
    );
    assert.ok(r.deniedSent >= starts * 1000, `denied senders sent ${r.deniedSent}`);
    assert.equal(r.deniedLeaked, 0, "datagrams of new pods that their egress policy denies reached the sink");
    assert.equal(r.isolatedPods, starts);
    assert.equal(r.isolatedLeaked, 0, "datagrams reached new pods that their ingress policy isolates");
  });

  test(`${shape}: kubectl delete pod of the agent under traffic: 0 lost, 0 leaked`, {
    timeout: 180_000,
  }, async (t) => {
    if (!requirePrivileged(t)) return;
    assert.ok(enforced.length > 0, "the policies' matrix (an earlier test) is known");
    const pod = (app: string) => pods.find((p) => p.name === app) ?? assert.fail(`no ${app} pod`);
    const [frontend, backend, db] = [pod("frontend"), pod("backend"), pod("db")];
    // The demo's policies: frontend may send to backend's 5000/UDP, db may not.
    const verdict = (from: LivePod) =>
      enforced.find((r) => r.from === `shop/${from.pod}` && r.to === `shop/${backend.pod}` && r.port === 5000)
        ?.verdict;
    assert.equal(verdict(frontend), "allow");
    assert.equal(verdict(db), "deny");
    const agent = await agentPod();
    assert.ok(agent, "an agent pod");
    const id = `r${Date.now() % 100000}`;
    const stream = (name: string) => ({
      durationMs: 10_000,
      udp: [{ stream: name, ip: backend.ip, port: 5000, rate: 500 }],
    });
    const senders = [sendTraffic(c(), frontend, stream(`${id}a`)), sendTraffic(c(), db, stream(`${id}d`))];
    // Replaced in the middle of the streams: SIGTERM, a new pod that adopts the pinned datapath.
    await new Promise((r) => setTimeout(r, 2000));
    await c().kubectl(["delete", "-n", RELEASE_NS, agent, "--wait=true"]);
    await c().kubectl(["rollout", "status", "daemonset/sluice-agent", "-n", RELEASE_NS, "--timeout=120s"]);
    const newAgent = await agentPod();
    assert.notEqual(newAgent, agent, "the DaemonSet started a new agent pod");
    const [allowed, denied] = await Promise.all(senders);
    await new Promise((r) => setTimeout(r, 500));
    const counts = await streamCounts(c(), backend, 5000);
    const sent = allowed.udpSent[`${id}a`];
    assert.ok(
      sent > 1000 && denied.udpSent[`${id}d`] > 1000,
      `streams sent ${sent} and ${denied.udpSent[`${id}d`]} datagrams`,
    );
    assert.equal(sent - (counts[`5000/${id}a`] ?? 0), 0, "allowed datagrams lost");
    assert.equal(counts[`5000/${id}d`] ?? 0, 0, "denied datagrams leaked");
    t.diagnostic(
      `allowed ${sent} sent, ${counts[`5000/${id}a`]} received; denied ${denied.udpSent[`${id}d`]} sent, 0 received`,
    );
    assert.deepEqual(await probeRows(c(), pods, enforced), sortVerdicts(enforced));
  });

  test(`${shape}: helm uninstall keeps the CRDs and the policies; the datapath keeps enforcing`, {
    timeout: 180_000,
  }, async (t) => {
    if (!requirePrivileged(t)) return;
    assert.ok(enforced.length > 0, "the policies' matrix (an earlier test) is known");
    await c().helm(["uninstall", "sluice", "-n", RELEASE_NS, "--wait", "--timeout", "120s"]);
    const crds = await c().kubectl(["get", "crd", "-o", "name"]);
    for (const crd of ["securitypolicies.sluice.dev", "clustersecuritypolicies.sluice.dev"])
      assert.ok(crds.includes(crd), `${crd} kept`);
    assert.ok(
      (await c().kubectl(["get", "securitypolicy", "-n", "shop", "db", "-o", "name"])).includes("db"),
    );
    // No agent runs, but the pinned maps and programs stay: nothing opens, nothing closes.
    assert.deepEqual(await probeRows(c(), pods, enforced), sortVerdicts(enforced));
  });
}
