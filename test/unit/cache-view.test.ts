// What the informers keep of a pod that is only a peer (kube/cache-view.ts peerPodView): everything
// the compiler, the identity allocator and the status controller read gives the same answer on the
// view as on the object the API server sent; equal parts are one shared, frozen object; an agent keeps
// its own node's pods whole; the interning tables stay bounded (kube/interner.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import type { KubernetesObject } from "@kubernetes/client-node";
import type { Pod } from "../../operator/src/api/k8s.ts";
import { securityLabels } from "../../operator/src/identity/labels.ts";
import {
  nodePodView,
  peerPodView,
  withKind,
  withoutManagedFields,
} from "../../operator/src/kube/cache-view.ts";
import { Interner } from "../../operator/src/kube/interner.ts";
import { PODS } from "../../operator/src/kube/resources.ts";
import { namedPortsKey, namedPortsOf } from "../../operator/src/policy/ports.ts";
import { isHostNetworkPod, isNetworkedPod, podIps } from "../../operator/src/policy/universe.ts";

// A pod as a list page carries it: no kind, the fields Sluice never reads included.
function wire(
  name: string,
  o: { ips?: string[]; node?: string; phase?: string; hostNetwork?: boolean } = {},
) {
  const ips = o.ips ?? ["10.0.0.1"];
  return {
    metadata: {
      name,
      namespace: "team-a",
      uid: `uid-${name}`,
      resourceVersion: "42",
      creationTimestamp: "2026-12-04T10:00:00Z",
      labels: { app: "web", tier: "api" },
      annotations: { note: "x".repeat(200) },
      managedFields: [{ manager: "kubelet" }],
    },
    spec: {
      nodeName: o.node ?? "node-b",
      ...(o.hostNetwork !== undefined && { hostNetwork: o.hostNetwork }),
      containers: [
        { name: "c", image: "i", ports: [{ name: "http", containerPort: 8080, protocol: "TCP" }] },
        { name: "sidecar", image: "j" },
      ],
    },
    status: {
      phase: o.phase ?? "Running",
      ...(ips.length > 0 && { podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) }),
      conditions: [{ type: "Ready", status: "True" }],
    },
  } as unknown as KubernetesObject;
}

const asPod = (o: KubernetesObject) => o as unknown as Pod;

test("a peer pod's view answers every reader as the pod does", () => {
  const cases = [
    wire("single"),
    wire("dual", { ips: ["10.0.0.2", "fd00::2"] }),
    wire("no-address", { ips: [] }),
    wire("finished", { phase: "Succeeded" }),
    wire("host", { hostNetwork: true }),
  ];
  for (const w of cases) {
    const full = asPod({ ...w, kind: "Pod" });
    const view = asPod(peerPodView(w, new Interner()));
    const name = w.metadata?.name;
    assert.equal(view.kind, "Pod", name);
    assert.deepEqual(podIps(view), podIps(full), `${name}: addresses`);
    assert.equal(isNetworkedPod(view), isNetworkedPod(full), `${name}: networked`);
    assert.equal(isHostNetworkPod(view), isHostNetworkPod(full), `${name}: host network`);
    assert.equal(namedPortsKey(namedPortsOf(view)), namedPortsKey(namedPortsOf(full)), `${name}: ports`);
    assert.deepEqual(securityLabels(view, undefined), securityLabels(full, undefined), `${name}: labels`);
    assert.equal(view.spec?.nodeName, full.spec?.nodeName);
    assert.equal(
      (view.metadata as { resourceVersion?: string }).resourceVersion,
      "42",
      "the informer resumes by it",
    );
  }
  // And nothing else: no uid, timestamps, annotations, conditions or images.
  assert.deepEqual(peerPodView(wire("p"), new Interner()), {
    kind: "Pod",
    metadata: { name: "p", namespace: "team-a", resourceVersion: "42", labels: { app: "web", tier: "api" } },
    spec: {
      nodeName: "node-b",
      containers: [
        { name: "c", ports: [{ name: "http", containerPort: 8080, protocol: "TCP" }] },
        { name: "sidecar" },
      ],
    },
    status: { phase: "Running", podIP: "10.0.0.1" },
  });
  assert.deepEqual(asPod(peerPodView(wire("d", { ips: ["10.0.0.2", "fd00::2"] }), new Interner())).status, {
    phase: "Running",
    podIPs: [{ ip: "10.0.0.2" }, { ip: "fd00::2" }],
  });
});

test("equal labels and ports are one frozen object across pods", () => {
  const interner = new Interner();
  const a = asPod(peerPodView(wire("a"), interner));
  const b = asPod(peerPodView(wire("b"), interner));
  assert.equal(a.metadata.labels, b.metadata.labels);
  assert.equal(a.spec?.containers, b.spec?.containers);
  assert.ok(Object.isFrozen(a.metadata.labels));
  assert.ok(Object.isFrozen(a.spec?.containers?.[0]?.ports?.[0]));
  // A reader that would change a shared value fails instead of changing it for every pod.
  assert.throws(() => {
    (a.metadata.labels as Record<string, string>).app = "db";
  }, TypeError);
  const other = asPod(
    peerPodView({ ...wire("c"), metadata: { name: "c", labels: { app: "db" } } }, interner),
  );
  assert.notEqual(other.metadata.labels, a.metadata.labels);
  assert.deepEqual(other.metadata.labels, { app: "db" });
});

test("an agent keeps its own node's pods whole and the others as peers", () => {
  const view = nodePodView("node-a", new Interner());
  const own = asPod(view(wire("own", { node: "node-a" })));
  const peer = asPod(view(wire("peer", { node: "node-b" })));
  // The CNI server matches its declarations by the pod's UID; the peer view has none.
  assert.equal(own.metadata.uid, "uid-own");
  assert.deepEqual(own.status?.podIPs, [{ ip: "10.0.0.1" }]);
  assert.equal(peer.metadata.uid, undefined);
});

test("the interning tables start over at their limit and still answer equal values", () => {
  const interner = new Interner(4);
  const first = interner.json({ k: "0" });
  for (let i = 1; i < 10; i++) interner.json({ k: String(i) });
  assert.ok(interner.size <= 4, `${interner.size} values held`);
  const again = interner.json({ k: "0" });
  assert.deepEqual(again, first);
  assert.equal(interner.string("x"), "x");
});

test("cached objects carry their kind, list items included", () => {
  const view = withKind(PODS, withoutManagedFields);
  assert.equal(view(wire("p")).kind, "Pod");
  const kept = { kind: "Pod", metadata: { name: "q" } };
  assert.equal(view(kept), kept, "an object with its kind is not copied");
});
