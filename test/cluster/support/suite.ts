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
import {
  deploymentManifests,
  type LivePod,
  livePods,
  loadTopology,
  matrixFor,
  podHealth,
  probeRows,
  probeUntil,
  sortVerdicts,
  type Verdict,
} from "./workloads.ts";

const CHART = join(REPO_ROOT, "charts/sluice");
const POLICIES = join(REPO_ROOT, "samples/demo/policies");
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
  const topo = loadTopology();
  const namespaces = topo.namespaces.map((n) => n.metadata.name);
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
    const values = { ...c().chartValues, "operator.replicas": "1" };
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
    await c().kubectl(["apply", "-f", "-"], deploymentManifests(image, topo.namespaces, topo.workloads));
    for (const ns of namespaces)
      await c().kubectl([
        "wait",
        "--for=condition=Available",
        "deployment",
        "--all",
        "-n",
        ns,
        "--timeout=120s",
      ]);
    pods = await livePods(c(), topo.workloads);
    const open = await matrixFor(c(), namespaces, []);
    assert.ok(
      open.length > 0 && open.every((r) => r.verdict === "allow"),
      "no policy: the matrix allows everything",
    );
    assert.deepEqual(await probeUntil(c(), pods, open), sortVerdicts(open));
  });

  test(`${shape}: kubectl apply of the demo policies: probes follow sluice matrix`, {
    timeout: 180_000,
  }, async (t) => {
    if (!requirePrivileged(t)) return;
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
        assert.equal(p.restarts, 0, `${ns}/${p.pod} was not restarted`);
      }
  });

  if (!opts.lifecycle) return;

  test(`${shape}: kubectl delete pod of the agent under traffic: verdicts never change`, {
    timeout: 180_000,
  }, async (t) => {
    if (!requirePrivileged(t)) return;
    const agent = (
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
    assert.ok(agent, "an agent pod");
    assert.ok(enforced.length > 0, "the policies' matrix (an earlier test) is known");
    let stop = false;
    const rounds: Verdict[][] = [];
    const traffic = (async () => {
      while (!stop) rounds.push(await probeRows(c(), pods, enforced));
    })();
    await c().kubectl(["delete", "-n", RELEASE_NS, agent, "--wait=true"]);
    await c().kubectl(["rollout", "status", "daemonset/sluice-agent", "-n", RELEASE_NS, "--timeout=120s"]);
    await new Promise((r) => setTimeout(r, 2000));
    stop = true;
    await traffic;
    const want = JSON.stringify(sortVerdicts(enforced));
    assert.ok(rounds.length >= 2, `probed ${rounds.length} times while the agent restarted`);
    for (const [i, r] of rounds.entries())
      assert.equal(JSON.stringify(r), want, `round ${i} of ${rounds.length}`);
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
