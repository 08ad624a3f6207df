// The status controller's indexes for scale (issue 14): pods grouped by namespace and label set
// (controllers/pod-groups.ts) select exactly the pods a per-pod scan selects, and a pod event names
// the groups it changed; the informers' cache view (kube/cache-view.ts) keeps what Sluice reads of
// a pod and drops the rest.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { KubernetesObject } from "@kubernetes/client-node";
import { PodGroups } from "../../operator/src/controllers/pod-groups.ts";
import type { PodObject } from "../../operator/src/controllers/identity-controller.ts";
import { type PolicyView, selects } from "../../operator/src/controllers/policy-status.ts";
import { podView, withoutManagedFields } from "../../operator/src/kube/cache-view.ts";

const pod = (ns: string, name: string, labels: Record<string, string>, node = "n1", phase = "Running") =>
  ({
    kind: "Pod",
    metadata: { name, namespace: ns, labels },
    spec: { nodeName: node },
    status: { phase },
  }) as PodObject;

const policy = (p: Partial<PolicyView>): PolicyView => ({
  uid: "u",
  generation: 1,
  subjectPods: {},
  errors: [],
  ...p,
});

const nsLabels = (ns: string) => ({ team: ns.startsWith("a") ? "x" : "y" });

test("grouped selection equals a per-pod scan, for namespaced and cluster-wide subjects", () => {
  const pods: PodObject[] = [];
  for (let i = 0; i < 60; i++)
    pods.push(
      pod(`${"ab"[i % 2]}${i % 5}`, `p${i}`, { app: `a${i % 3}`, tier: i % 4 ? "web" : "api" }, `n${i % 7}`),
    );
  pods.push(pod("a0", "done", { app: "a0" }, "n1", "Succeeded"));
  const g = new PodGroups();
  for (const p of pods) g.update(p);
  const policies = [
    policy({ subjectNamespace: { kind: "name", name: "a0" }, subjectPods: { matchLabels: { app: "a0" } } }),
    policy({ subjectNamespace: { kind: "selector", selector: { matchLabels: { team: "y" } } } }),
    policy({ subjectPods: { matchExpressions: [{ key: "tier", operator: "In", values: ["api"] }] } }),
  ];
  for (const pol of policies) {
    const grouped = [...g.selected(pol, nsLabels)].map((v) => `${v.namespace} ${v.nodeName}`).sort();
    const scanned = pods
      .filter((p) => p.status?.phase === "Running")
      .map((p) => ({
        namespace: p.metadata.namespace ?? "",
        labels: p.metadata.labels ?? {},
        nodeName: p.spec?.nodeName,
      }))
      .filter((v) => selects(pol, v, nsLabels))
      .map((v) => `${v.namespace} ${v.nodeName}`)
      .sort();
    assert.deepEqual(grouped, scanned);
    assert.ok(grouped.length > 0);
  }
});

test("a pod event names the groups it changed: relabel both, reschedule one, no change none", () => {
  const g = new PodGroups();
  assert.equal(g.update(pod("a", "p", { app: "x" })).length, 1);
  assert.deepEqual(g.update(pod("a", "p", { app: "x" })), []);
  const moved = g.update(pod("a", "p", { app: "y" }));
  assert.deepEqual(
    moved.map((x) => x.labels.app),
    ["x", "y"],
  );
  assert.equal(g.update(pod("a", "p", { app: "y" }, "n2")).length, 1);
  assert.equal(g.update(pod("a", "p", { app: "y" }, "n2"), true).length, 1);
  assert.deepEqual([...g.selected(policy({}), nsLabels)], []);
});

test("the cache view keeps a pod's identity, placement, ports and addresses, and nothing else", () => {
  const wire = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: "p",
      namespace: "a",
      uid: "u1",
      resourceVersion: "7",
      labels: { app: "x" },
      annotations: { big: "x".repeat(1000) },
      managedFields: [{ manager: "kubelet" }],
      ownerReferences: [{ kind: "ReplicaSet" }],
    },
    spec: {
      nodeName: "n1",
      hostNetwork: false,
      containers: [
        { name: "c", image: "i", env: [{ name: "E" }], ports: [{ name: "http", containerPort: 80 }] },
      ],
      volumes: [{ name: "v" }],
    },
    status: {
      phase: "Running",
      podIP: "10.0.0.1",
      podIPs: [{ ip: "10.0.0.1" }],
      conditions: [{ type: "Ready" }],
    },
  };
  assert.deepEqual(podView(wire as unknown as KubernetesObject), {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "p", namespace: "a", uid: "u1", resourceVersion: "7", labels: { app: "x" } },
    spec: {
      nodeName: "n1",
      hostNetwork: false,
      containers: [{ name: "c", ports: [{ name: "http", containerPort: 80 }] }],
    },
    status: { phase: "Running", podIP: "10.0.0.1", podIPs: [{ ip: "10.0.0.1" }] },
  });
  const policyObj = {
    kind: "NetworkPolicy",
    metadata: { name: "n", managedFields: [{}], annotations: { a: "b" } },
    spec: { x: 1 },
  };
  assert.deepEqual(withoutManagedFields(policyObj), {
    kind: "NetworkPolicy",
    metadata: { name: "n", annotations: { a: "b" } },
    spec: { x: 1 },
  });
});
