// The optional informer against a real API server, with SIG Network's ClusterNetworkPolicy CRD
// (crds/upstream/): absent at start it counts as synced and empty (readiness and a first pass do not
// wait for it); installed later it is watched and its objects arrive as adds; deleted it empties
// itself (deletes delivered); installed again it is watched again. No restart anywhere.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { KubernetesObject } from "@kubernetes/client-node";
import { OptionalInformer, resourceServed } from "../../operator/src/kube/informer.ts";
import { CLUSTER_NETWORK_POLICIES, NETWORK_POLICIES } from "../../operator/src/kube/resources.ts";
import {
  type Cluster,
  kubectlOk,
  repoRoot,
  startCluster,
  waitCrdsEstablished,
  waitFor,
} from "./operator-helpers.ts";

const CRD_FILE = join(repoRoot, "crds/upstream/clusternetworkpolicies.yaml");
const CRD_NAME = "clusternetworkpolicies.policy.networking.k8s.io";

const cnp = (name: string) => `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: ${name}}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {}}
  ingress:
  - action: Deny
    from: [{namespaces: {matchLabels: {team: red}}}]
`;

describe("optional informer (real API server)", () => {
  let c: Cluster;
  let inf: OptionalInformer<KubernetesObject>;
  const events: string[] = [];
  const served: boolean[] = [];
  const errors: string[] = [];
  const names = () => inf.list().map((o) => o.metadata?.name ?? "");

  before(async () => {
    // Sluice's own CRDs only: the upstream one is installed by the tests below.
    c = await startCluster();
    inf = new OptionalInformer<KubernetesObject>(c.kc, CLUSTER_NETWORK_POLICIES, {
      // Fast polling here; the 404 of a deleted CRD also triggers discovery at once.
      discoveryIntervalMs: 200,
      minBackoffMs: 50,
      maxBackoffMs: 500,
      onServedChange: (s) => served.push(s),
      onError: (d) => errors.push(d),
    });
    for (const ev of ["add", "update", "delete"] as const)
      inf.on(ev, (o) => events.push(`${ev} ${o.metadata?.name}`));
  });
  after(async () => {
    await inf?.stop();
    await c?.stop();
  });

  test("discovery tells a served resource from an absent one", async () => {
    assert.equal(await resourceServed(c.kc, NETWORK_POLICIES), true);
    assert.equal(await resourceServed(c.kc, CLUSTER_NETWORK_POLICIES), false);
    // A served group/version without the plural is absent too.
    assert.equal(await resourceServed(c.kc, { ...NETWORK_POLICIES, plural: "nopes" }), false);
  });

  test("CRD absent: synced at once and empty", async () => {
    inf.start();
    await inf.waitForSync(5000);
    assert.equal(inf.served, false);
    assert.deepEqual(names(), []);
    assert.equal(inf.get("anything"), undefined);
  });

  test("CRD installed later: watched, its objects delivered as adds", async () => {
    await kubectlOk(["apply", "--server-side", "-f", CRD_FILE], c.api.kubeconfigPath);
    await waitCrdsEstablished(c.api.kubeconfigPath, [CRD_NAME]);
    await kubectlOk(["apply", "-f", "-"], c.api.kubeconfigPath, cnp("deny-red"));
    await waitFor("deny-red in the cache", () => names().includes("deny-red"), 15_000);
    assert.equal(inf.served, true);
    assert.deepEqual(served, [true]);
    assert.ok(events.includes("add deny-red"), events.join(", "));
    // And later objects through the watch.
    await kubectlOk(["apply", "-f", "-"], c.api.kubeconfigPath, cnp("deny-red-2"));
    await waitFor("deny-red-2 in the cache", () => names().includes("deny-red-2"), 15_000);
    assert.equal(inf.get("deny-red-2")?.metadata?.name, "deny-red-2");
  });

  test("CRD deleted: the cache empties and every object it held is delivered as a delete", async () => {
    events.length = 0;
    await kubectlOk(["delete", "crd", CRD_NAME, "--wait=true"], c.api.kubeconfigPath);
    await waitFor("discovery sees it gone", () => inf.served === false, 15_000);
    assert.deepEqual(names(), []);
    for (const n of ["deny-red", "deny-red-2"])
      assert.ok(events.includes(`delete ${n}`), `no delete of ${n}: ${events.join(", ")}`);
    assert.deepEqual(served, [true, false]);
    // Still synced: an absent resource is an empty cache, not a pending one.
    assert.equal(inf.hasSynced(), true);
  });

  test("CRD installed again: watched again, the new objects delivered", async () => {
    events.length = 0;
    await kubectlOk(["apply", "--server-side", "-f", CRD_FILE], c.api.kubeconfigPath);
    await waitCrdsEstablished(c.api.kubeconfigPath, [CRD_NAME]);
    await kubectlOk(["apply", "-f", "-"], c.api.kubeconfigPath, cnp("deny-red-3"));
    await waitFor("deny-red-3 in the cache", () => names().includes("deny-red-3"), 15_000);
    assert.deepEqual(names(), ["deny-red-3"]);
    assert.deepEqual(served, [true, false, true]);
    assert.ok(events.includes("add deny-red-3"), events.join(", "));
    assert.ok(!events.some((e) => e.includes("deny-red ") || e.endsWith("deny-red")), events.join(", "));
  });

  test("an unreachable API server is not an absent resource: the cache is kept", async () => {
    // Discovery through a closed port fails: the state (served, and the objects) must not change.
    const down = new OptionalInformer<KubernetesObject>(c.kc, CLUSTER_NETWORK_POLICIES, {
      served: async () => {
        throw new Error("connect ECONNREFUSED");
      },
      onError: () => {},
    });
    down.start();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(down.served, undefined);
    assert.equal(down.hasSynced(), false, "synced without any answer from discovery");
    await down.stop();
    await assert.rejects(down.waitForSync(100), /stopped before sync/);
  });
});
