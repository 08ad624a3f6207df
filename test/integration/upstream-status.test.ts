// The operator and SIG Network's policy kinds against a real API server: started while their CRDs
// are absent it is ready (the optional caches count as synced); once the CRDs are installed it writes
// Sluice's conditions (sluice.dev/Accepted, sluice.dev/Enforced, with observedGeneration) into each
// kind's status through the status subresource, leaves another implementation's conditions alone,
// and records a Rejected event naming the field for a policy Sluice refuses.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Operator } from "../../operator/src/controllers/run.ts";
import { publishNodeStatus } from "../../operator/src/kube/node-status.ts";
import {
  type Cluster,
  createNamespace,
  createPod,
  kubectlOk,
  repoRoot,
  startCluster,
  waitFor,
  waitCrdsEstablished,
} from "./operator-helpers.ts";

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}
interface PolicyJson {
  metadata: { uid: string; generation: number };
  status?: { conditions?: Condition[] };
}

const KINDS = [
  {
    kind: "ClusterNetworkPolicy",
    resource: "clusternetworkpolicies.policy.networking.k8s.io",
    name: "db-admin",
    yaml: (app = "web") => `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: db-admin}
spec:
  tier: Admin
  priority: 10
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: db}}}}
  ingress:
  - name: from-app
    action: Accept
    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: ${app}}}}}]
`,
  },
  {
    kind: "AdminNetworkPolicy",
    resource: "adminnetworkpolicies.policy.networking.k8s.io",
    name: "db-anp",
    yaml: (app = "web") => `apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: db-anp}
spec:
  priority: 20
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: db}}}}
  ingress:
  - name: from-app
    action: Allow
    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: ${app}}}}}]
`,
  },
  {
    kind: "BaselineAdminNetworkPolicy",
    resource: "baselineadminnetworkpolicies.policy.networking.k8s.io",
    name: "default",
    yaml: (app = "web") => `apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: db}}}}
  ingress:
  - name: from-app
    action: Allow
    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: ${app}}}}}]
`,
  },
] as const;

describe("status of SIG Network's policy kinds (real API server)", () => {
  let c: Cluster;
  let op: Operator;
  const get = async (resource: string, name: string): Promise<PolicyJson> =>
    JSON.parse(await kubectlOk(["get", resource, name, "-o", "json"], c.api.kubeconfigPath));
  const cond = (p: PolicyJson, type: string) => p.status?.conditions?.find((x) => x.type === type);
  const caches = () => op.readiness().find((h) => h.name === "caches");

  before(async () => {
    // Sluice's CRDs only: the upstream ones come in the second test, with the operator running.
    c = await startCluster();
    await createNamespace(c.clients, "shop");
    await createPod(c.clients, "shop", "web", { app: "web" }, "n1");
    await createPod(c.clients, "shop", "db", { app: "db" }, "n2");
    op = new Operator({
      clients: c.clients,
      leaseNamespace: "default",
      id: "upstream-status",
      identityGcGraceMs: 60_000,
      leaseDurationMs: 3000,
      renewDeadlineMs: 2000,
      retryPeriodMs: 300,
      statusDebounceMs: 20,
      discoveryIntervalMs: 300,
    });
    op.start();
    await waitFor("the operator leads", () => op.isLeader());
  });
  after(async () => {
    await op?.stop();
    await c?.stop();
  });

  test("CRDs absent: the caches sync and the operator is ready", async () => {
    await waitFor("caches synced", async () => (await caches()?.check()) === undefined, 10_000);
    assert.equal(op.informers.clusterNetworkPolicies.served, false);
    assert.equal(op.informers.adminNetworkPolicies.served, false);
    assert.equal(op.informers.baselineAdminNetworkPolicies.served, false);
  });

  test("CRDs installed later: each kind gets Sluice's Accepted and Enforced conditions", async () => {
    await kubectlOk(["apply", "--server-side", "-f", join(repoRoot, "crds/upstream/")], c.api.kubeconfigPath);
    await waitCrdsEstablished(
      c.api.kubeconfigPath,
      KINDS.map((k) => k.resource),
    );
    for (const k of KINDS) await kubectlOk(["apply", "-f", "-"], c.api.kubeconfigPath, k.yaml());
    for (const k of KINDS) {
      const p = await waitFor(`${k.kind} status`, async () => {
        const x = await get(k.resource, k.name);
        return cond(x, "sluice.dev/Enforced") ? x : undefined;
      });
      const accepted = cond(p, "sluice.dev/Accepted");
      assert.equal(accepted?.status, "True", `${k.kind}: ${JSON.stringify(accepted)}`);
      assert.equal(accepted?.observedGeneration, p.metadata.generation);
      const enforced = cond(p, "sluice.dev/Enforced");
      // No node reported yet: n2 (db's) does not enforce it.
      assert.equal(enforced?.status, "False", k.kind);
      assert.equal(enforced?.reason, "Pending", k.kind);
      assert.match(enforced?.message ?? "", /n2/);
      assert.match(enforced?.message ?? "", /Nodes enforcing: 0\/1; selected pods: 1\./);
      // Only Sluice's own, domain-qualified types: nothing unqualified that another implementation
      // could also mean.
      assert.deepEqual((p.status?.conditions ?? []).map((x) => x.type).sort(), [
        "sluice.dev/Accepted",
        "sluice.dev/Enforced",
      ]);
    }
    // n2 reports every one of them at its generation: Enforced.
    const enforced = await Promise.all(
      KINDS.map(async (k) => {
        const p = await get(k.resource, k.name);
        return { uid: p.metadata.uid, generation: p.metadata.generation };
      }),
    );
    await publishNodeStatus(c.clients, "n2", { datapathVersion: "test", endpoints: 1, enforced, errors: [] });
    for (const k of KINDS) {
      const p = await waitFor(`${k.kind} Enforced=True`, async () => {
        const x = await get(k.resource, k.name);
        return cond(x, "sluice.dev/Enforced")?.status === "True" ? x : undefined;
      });
      const e = cond(p, "sluice.dev/Enforced");
      assert.equal(e?.reason, "Enforced");
      assert.equal(e?.observedGeneration, p.metadata.generation);
      assert.match(e?.message ?? "", /Nodes enforcing: 1\/1/);
    }
  });

  test("another implementation's conditions are kept across Sluice's writes", async () => {
    const k = KINDS[0];
    const foreign = {
      apiVersion: "policy.networking.k8s.io/v1alpha2",
      kind: k.kind,
      metadata: { name: k.name },
      status: {
        conditions: [
          {
            type: "other.example/Ready",
            status: "True",
            reason: "Programmed",
            message: "another implementation",
            lastTransitionTime: "2025-01-01T00:00:00Z",
          },
        ],
      },
    };
    await kubectlOk(
      ["apply", "--server-side", "--subresource=status", "--field-manager=other-implementation", "-f", "-"],
      c.api.kubeconfigPath,
      JSON.stringify(foreign),
    );
    // A new generation: Sluice writes its conditions again (Pending for generation 2).
    await kubectlOk(["apply", "-f", "-"], c.api.kubeconfigPath, k.yaml("api"));
    const p = await waitFor("Sluice's conditions for generation 2", async () => {
      const x = await get(k.resource, k.name);
      return cond(x, "sluice.dev/Enforced")?.observedGeneration === 2 ? x : undefined;
    });
    assert.equal(cond(p, "sluice.dev/Enforced")?.reason, "Pending");
    assert.equal(cond(p, "other.example/Ready")?.message, "another implementation");
  });

  test("a policy Sluice refuses: Accepted=False naming the field, Enforced=False, a Rejected event", async () => {
    await kubectlOk(
      ["apply", "-f", "-"],
      c.api.kubeconfigPath,
      `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: matches-nothing}
spec:
  tier: Baseline
  priority: 5
  subject: {namespaces: {}}
  ingress:
  - action: Deny
    from:
    - pods:
        namespaceSelector: {}
        podSelector:
          matchExpressions: [{key: app, operator: Exists}, {key: app, operator: DoesNotExist}]
`,
    );
    const p = await waitFor("Accepted=False", async () => {
      const x = await get("clusternetworkpolicies.policy.networking.k8s.io", "matches-nothing");
      return cond(x, "sluice.dev/Accepted")?.status === "False" ? x : undefined;
    });
    const a = cond(p, "sluice.dev/Accepted");
    assert.equal(a?.reason, "Invalid");
    assert.match(a?.message ?? "", /spec\.ingress\[0\]/);
    assert.equal(cond(p, "sluice.dev/Enforced")?.reason, "NotAccepted");
    // Events of cluster-scoped objects live in "default".
    const ev = await waitFor("Rejected event", async () => {
      const list = await c.clients.core.listNamespacedEvent({
        namespace: "default",
        fieldSelector: `involvedObject.uid=${p.metadata.uid}`,
      });
      return list.items.find((e) => e.reason === "Rejected");
    });
    assert.equal(ev.type, "Warning");
    assert.equal(ev.involvedObject.kind, "ClusterNetworkPolicy");
    assert.equal(ev.involvedObject.apiVersion, "policy.networking.k8s.io/v1alpha2");
    assert.match(ev.message ?? "", /spec\.ingress\[0\]: .*matches nothing/);
  });

  test("CRD deleted: the operator stays ready and its cache of the kind empties", async () => {
    await kubectlOk(
      ["delete", "crd", "adminnetworkpolicies.policy.networking.k8s.io", "--wait=true"],
      c.api.kubeconfigPath,
    );
    await waitFor("ANP cache emptied", () => op.informers.adminNetworkPolicies.served === false, 10_000);
    assert.equal(op.informers.adminNetworkPolicies.list().length, 0);
    assert.equal(await caches()?.check(), undefined);
  });
});
