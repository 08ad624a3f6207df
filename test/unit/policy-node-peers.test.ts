// Node peers (the upstream kinds' `nodes`, ClusterSecurityPolicy's `nodes`) and host-network pods:
// a selector that picks one node and not another decides per node, through the same ipcache and
// policy-map lookups as the datapath (the reserved host and remote-node identities are refined per
// selector, never matched whole), with the reference evaluator agreeing; `sluice matrix` shows
// host-network pods as their node's address.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { MatrixRow } from "../../operator/src/api/matrix-rows.ts";
import {
  compile,
  computeMatrix,
  inputsFromObjects,
  lookupIdentity,
  lookupVerdict,
  ReferenceEvaluator,
} from "../../operator/src/policy/index.ts";
import { ReservedIdentity } from "../../operator/src/policy/mapstate.ts";
import { validatePolicy } from "../../operator/src/policy/validate.ts";
import { node, ns, pod } from "./policy-fixtures.ts";

const N1 = "172.18.0.1";
const N2 = "172.18.0.2";
const N3 = "172.18.0.3";

function hostPod(namespace: string, name: string, nodeName: string, ip: string | undefined, port: number) {
  const p = pod(namespace, name, { app: name }, ip ?? [], nodeName, [{ containerPort: port }]);
  return { ...p, spec: { ...p.spec, hostNetwork: true } };
}

const base = [
  ns("a", { team: "x" }),
  ns("kube-system"),
  node("n1", N1, { role: "infra" }),
  node("n2", N2, { role: "worker" }),
  node("n3", N3, { role: "worker" }),
  pod("a", "web", { app: "web" }, "10.0.1.1", "n1", [{ containerPort: 80 }]),
  pod("a", "db", { app: "db" }, "10.0.2.1", "n2", [{ containerPort: 5432 }]),
  // Host-network pods: one with the address a kubelet reports (its node's), one without (the node's
  // Node object gives it).
  hostPod("kube-system", "exporter-n1", "n1", N1, 9100),
  hostPod("kube-system", "exporter-n3", "n3", undefined, 9100),
];

const cnp = (name: string, spec: object) => ({
  apiVersion: "policy.networking.k8s.io/v1alpha2",
  kind: "ClusterNetworkPolicy",
  metadata: { name },
  spec: { tier: "Admin", priority: 1, ...spec },
});
const csp = (name: string, spec: object) => ({
  apiVersion: "sluice.dev/v1alpha1",
  kind: "ClusterSecurityPolicy",
  metadata: { name },
  spec: { tier: "Admin", priority: 1, ...spec },
});

// Egress of a/web (on n1) to the exporters on n1 and n3: only the infra node's.
const webToInfraOnly = cnp("web-to-infra", {
  subject: { pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: "web" } } } },
  egress: [
    { action: "Accept", to: [{ nodes: { matchLabels: { role: "infra" } } }] },
    { action: "Deny", to: [{ nodes: {} }] },
  ],
});
// Ingress of a/db (on n2) from nodes: the workers only (n2 itself and n3), not n1.
const dbFromWorkers = csp("db-from-workers", {
  endpointSelector: { matchLabels: { app: "db" } },
  ingress: [
    { action: "Allow", nodes: [{ matchLabels: { role: "worker" } }] },
    { action: "Deny", nodes: [{}] },
  ],
});

function row(rows: MatrixRow[], from: string, to: string): string | undefined {
  return rows.find((r) => r.from === from && r.to === to)?.verdict;
}

// Compiled (lookups on the endpoint's node) and reference verdicts of one side, which must agree.
function side(
  objects: unknown[],
  key: string,
  direction: "ingress" | "egress",
  peerIp: string,
  port: number,
) {
  const inputs = inputsFromObjects([...base, ...objects]);
  const p = inputs.pods.find((x) => `${x.metadata.namespace}/${x.metadata.name}` === key)!;
  const nodeName = p.spec!.nodeName!;
  const { state } = compile(inputs, { node: nodeName, allowLocalhost: "policy" });
  const ep = state.endpoints.find((e) => e.key === key)!;
  const got = lookupVerdict(ep.policy, direction, lookupIdentity(state.ipcache, peerIp), 6, port).verdict;
  const ref = new ReferenceEvaluator(inputs, { allowLocalhost: "policy" });
  const podIp = p.status!.podIP!;
  const want =
    direction === "egress"
      ? ref.evaluate(podIp, peerIp, 6, port).egress
      : ref.evaluate(peerIp, podIp, 6, port).ingress;
  assert.equal(got, want, `${key} ${direction} ${peerIp}: compiled ${got}, reference ${want}`);
  return got;
}

describe("node peers decide per node", () => {
  test("egress to the selected node's address only, not to every remote node", () => {
    assert.equal(side([webToInfraOnly], "a/web", "egress", N1, 9100), "allow");
    assert.equal(side([webToInfraOnly], "a/web", "egress", N2, 9100), "deny");
    assert.equal(side([webToInfraOnly], "a/web", "egress", N3, 9100), "deny");
    // Pods on a node are not the node, and an address outside every Node object is no node.
    assert.equal(side([webToInfraOnly], "a/web", "egress", "10.0.2.1", 5432), "allow");
    assert.equal(side([webToInfraOnly], "a/web", "egress", "8.8.8.8", 53), "allow");
  });

  test("ingress from the selected nodes: the local node (host) and a remote one, not the third", () => {
    assert.equal(side([dbFromWorkers], "a/db", "ingress", N2, 5432), "allow");
    assert.equal(side([dbFromWorkers], "a/db", "ingress", N3, 5432), "allow");
    assert.equal(side([dbFromWorkers], "a/db", "ingress", N1, 5432), "deny");
  });

  test("the ipcache gives each differently selected node its own identity, of its reserved base", () => {
    const inputs = inputsFromObjects([...base, webToInfraOnly]);
    const { state } = compile(inputs, { node: "n2" });
    const id = (ip: string) => lookupIdentity(state.ipcache, ip);
    // n1 (infra) and n3 (worker) are both remote nodes seen from n2, but a selector tells them apart.
    assert.notEqual(id(N1), id(N3));
    assert.equal(id(N2), ReservedIdentity.HOST, "one group of host addresses: no refinement");
    // Without node peers, remote nodes stay one identity: remote-node.
    const plain = compile(inputsFromObjects(base), { node: "n2" }).state;
    assert.equal(lookupIdentity(plain.ipcache, N1), ReservedIdentity.REMOTE_NODE);
    assert.equal(lookupIdentity(plain.ipcache, N3), ReservedIdentity.REMOTE_NODE);
  });

  test("the node's own interface addresses are that node's for node peers", () => {
    const inputs = inputsFromObjects([...base, dbFromWorkers]);
    const gateway = "10.0.2.254";
    const { state } = compile(inputs, { node: "n2", allowLocalhost: "policy", hostAddresses: [N2, gateway] });
    const ep = state.endpoints.find((e) => e.key === "a/db")!;
    const at = (ip: string) =>
      lookupVerdict(ep.policy, "ingress", lookupIdentity(state.ipcache, ip), 6, 5432);
    assert.equal(at(gateway).verdict, "allow");
    const ref = new ReferenceEvaluator(inputs, {
      allowLocalhost: "policy",
      hostAddresses: new Map([["n2", [N2, gateway]]]),
    });
    assert.equal(ref.evaluate(gateway, "10.0.2.1", 6, 5432).ingress, "allow");
  });

  test("two node selectors in one rule list: each picks its own nodes, one that picks none matches nothing", () => {
    const twice = cnp("twice", {
      subject: { namespaces: {} },
      egress: [
        { action: "Deny", to: [{ nodes: { matchLabels: { role: "infra" } } }] },
        { action: "Deny", to: [{ nodes: { matchExpressions: [{ key: "zone", operator: "Exists" }] } }] },
      ],
    });
    assert.equal(side([twice], "a/db", "egress", N1, 9100), "deny");
    assert.equal(side([twice], "a/db", "egress", N3, 9100), "allow");
  });

  test("a ClusterSecurityPolicy with only node peers is no rule that matches nothing", () => {
    const findings = validatePolicy(dbFromWorkers as never, { pods: [], namespaces: [] });
    assert.deepEqual(findings, []);
  });
});

describe("sluice matrix: host-network pods as their node's address", () => {
  test("rows to and from host-network pods, judged by the other side's policy", () => {
    const rows = computeMatrix(inputsFromObjects([...base, webToInfraOnly, dbFromWorkers]), {
      allowLocalhost: "policy",
    });
    // web (n1) may reach the exporter on the infra node, not the one on n3.
    assert.equal(row(rows, "a/web", "kube-system/exporter-n1"), "allow");
    assert.equal(row(rows, "a/web", "kube-system/exporter-n3"), "deny");
    // db (n2) takes its node peers from the workers: n3's exporter yes, n1's no.
    assert.equal(row(rows, "kube-system/exporter-n3", "a/db"), "allow");
    assert.equal(row(rows, "kube-system/exporter-n1", "a/db"), "deny");
    // Between two host-network pods nothing is enforced: no row.
    assert.equal(row(rows, "kube-system/exporter-n1", "kube-system/exporter-n3"), undefined);
  });

  test("allow-localhost always: a host-network pod reaches the pods of its own node whatever the policy", () => {
    const onN1 = csp("deny-infra-into-web", {
      endpointSelector: { matchLabels: { app: "web" } },
      ingress: [{ action: "Deny", nodes: [{ matchLabels: { role: "infra" } }] }],
    });
    const always = computeMatrix(inputsFromObjects([...base, onN1]));
    assert.equal(row(always, "kube-system/exporter-n1", "a/web"), "allow");
    const policy = computeMatrix(inputsFromObjects([...base, onN1]), { allowLocalhost: "policy" });
    assert.equal(row(policy, "kube-system/exporter-n1", "a/web"), "deny");
    assert.equal(row(policy, "kube-system/exporter-n3", "a/web"), "allow");
  });

  test("without node peers, host-network pods are host and remote-node as entities say", () => {
    const remoteOnly = csp("remote-only", {
      endpointSelector: { matchLabels: { app: "db" } },
      ingress: [{ action: "Deny", entities: ["remote-node"] }],
    });
    const rows = computeMatrix(inputsFromObjects([...base, remoteOnly]));
    assert.equal(row(rows, "kube-system/exporter-n1", "a/db"), "deny");
    assert.equal(row(rows, "kube-system/exporter-n3", "a/db"), "deny");
    assert.equal(row(rows, "a/web", "a/db"), "allow");
  });
});
