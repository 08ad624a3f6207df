import assert from "node:assert/strict";
import { test } from "node:test";
import {
  diffMatrices,
  formatMatrixTable,
  type MatrixRow,
  PortsError,
  parsePorts,
} from "../../../operator/src/api/matrix-rows.ts";
import { allNetns, netnsName, planLab } from "../../../operator/src/lab/netns-plan.ts";
import { TopologyError, topologyFromObjects } from "../../../operator/src/lab/topology.ts";

const pod = (ns: string, name: string, node: string, ips: string[], ports: object[] = []) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, namespace: ns, labels: { app: name } },
  spec: { nodeName: node, containers: [{ name: "c", ports }] },
  status: { podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) },
});

test("topology: pods, nodes, dual-stack addresses and ports, from a List", () => {
  const t = topologyFromObjects([
    { kind: "Namespace", metadata: { name: "a" } },
    {
      kind: "List",
      items: [
        pod(
          "a",
          "y",
          "n2",
          ["10.0.0.2", "FD00::2"],
          [{ containerPort: 80 }, { containerPort: 53, protocol: "UDP" }],
        ),
        pod("a", "x", "n1", ["fd00::1", "10.0.0.1"]),
      ],
    },
    { kind: "NetworkPolicy", metadata: { name: "p" } },
  ]);
  assert.deepEqual(t.nodes, ["n1", "n2"]);
  assert.deepEqual(
    t.pods.map((p) => [p.key, p.node, p.ipv4, p.ipv6, p.primaryIp]),
    [
      ["a/x", "n1", "10.0.0.1", "fd00::1", "fd00::1"],
      ["a/y", "n2", "10.0.0.2", "fd00::2", "10.0.0.2"],
    ],
  );
  assert.deepEqual(t.pods[1].ports, [
    { port: 80, protocol: "TCP" },
    { port: 53, protocol: "UDP" },
  ]);
});

test("topology: errors name the object and field", () => {
  const cases: Array<[object[], RegExp]> = [
    [[pod("a", "x", "", ["10.0.0.1"])], /Pod\/a\/x: spec.nodeName: missing/],
    [[pod("a", "x", "n", [])], /Pod\/a\/x: status.podIP: missing/],
    [[pod("a", "x", "n", ["10.0.0.300"])], /not an IP address/],
    [
      [pod("a", "x", "n", ["10.0.0.1"]), pod("b", "y", "n", ["10.0.0.1"])],
      /10.0.0.1 is also the address of Pod\/a\/x/,
    ],
    [
      [pod("a", "x", "n", ["10.0.0.1"], [{ containerPort: 70000 }])],
      /containers\[0\].ports\[0\].containerPort/,
    ],
    [[pod("a", "x", "n", ["10.0.0.1"], [{ containerPort: 1, protocol: "ICMP" }])], /protocol: must be/],
    [[{ kind: "Namespace", metadata: { name: "a" } }], /no Pod objects/],
  ];
  for (const [objs, re] of cases)
    assert.throws(
      () => topologyFromObjects(objs),
      (e: Error) => e instanceof TopologyError && re.test(e.message),
    );
});

test("ports: parse and reject", () => {
  assert.deepEqual(parsePorts("80/TCP, 81/tcp,80/UDP,80,53/sctp"), [
    { port: 80, protocol: "TCP" },
    { port: 81, protocol: "TCP" },
    { port: 80, protocol: "UDP" },
    { port: 53, protocol: "SCTP" },
  ]);
  for (const bad of ["", "0/TCP", "65536", "80/ICMP", "x/TCP", "80/TCP/1"])
    assert.throws(() => parsePorts(bad), PortsError);
});

test("plan: unique short names, interface names <= 15 chars, node subnet avoids pod addresses", () => {
  const long = "a".repeat(63);
  const t = topologyFromObjects([
    pod(long, long, "node-with-a-rather-long-name-indeed", ["172.31.255.7", "fd5c:1ce:0:ffff::7"]),
    pod("b", "y", "n2", ["10.1.0.2"]),
  ]);
  const plan = planLab(t, "beef");
  const names = allNetns(plan);
  assert.equal(new Set(names).size, names.length);
  for (const n of names) {
    assert.match(n, /^slbeef-/);
    assert.ok(n.length <= 48, n);
    assert.match(n, /^[A-Za-z0-9_.-]+$/);
  }
  for (const p of plan.pods) assert.ok(p.hostIf.length <= 15);
  // 172.31.255.0/24 holds a pod: the next candidate subnet is used.
  assert.ok(!plan.nodes[0].address4.startsWith("172.31.255."));
  assert.ok(!plan.nodes[0].address6.startsWith("fd5c:1ce:0:ffff:"));
  assert.notEqual(netnsName("beef", "p", `${long}.x`), netnsName("beef", "p", `${long}.y`));
  // Every command runs inside a lab namespace (none in the root namespace).
  for (const ns of [...plan.links.keys(), ...plan.config.keys()]) assert.ok(names.includes(ns));
  // Cross-node routes go via the other node's fabric address.
  const n2 = plan.nodes.find((n) => n.name === "n2")!;
  const other = plan.nodes.find((n) => n !== n2)!;
  assert.ok(plan.config.get(other.netns)!.includes(`route add 10.1.0.2/32 via ${n2.address4} dev fab0`));
});

test("matrix: diff and table", () => {
  const a: MatrixRow[] = [
    { from: "a/x", to: "a/y", port: 80, protocol: "TCP", verdict: "allow" },
    { from: "a/x", to: "a/y", port: 53, protocol: "UDP", verdict: "deny" },
  ];
  const b: MatrixRow[] = [{ ...a[0], verdict: "deny" }];
  assert.deepEqual(diffMatrices(a, b), [
    "a/x -> a/y 80/TCP: allow vs deny",
    "a/x -> a/y 53/UDP: only in the first (deny)",
  ]);
  assert.deepEqual(diffMatrices(a, a), []);
  assert.equal(formatMatrixTable(a), "FROM  TO   80/TCP  53/UDP\na/x   a/y  allow   deny");
});

const hostPod = (ns: string, name: string, node: string, ips: string[], ports: object[] = []) => {
  const p = pod(ns, name, node, ips, ports);
  return { ...p, spec: { ...p.spec, hostNetwork: true } };
};
const nodeObject = (name: string, ips: string[]) => ({
  apiVersion: "v1",
  kind: "Node",
  metadata: { name },
  status: { addresses: ips.map((address) => ({ type: "InternalIP", address })) },
});

test("topology: host-network pods carry their node's address (their podIPs, else the Node's)", () => {
  const t = topologyFromObjects([
    nodeObject("n1", ["172.29.0.11"]),
    pod("a", "x", "n1", ["10.0.0.1"], [{ containerPort: 80 }]),
    hostPod("m", "exp1", "n1", [], [{ containerPort: 9100 }]),
    hostPod("m", "exp2", "n2", ["172.29.0.12"], [{ containerPort: 9100 }]),
  ]);
  assert.deepEqual(
    t.pods.map((p) => [p.key, p.node, p.hostNetwork, p.ipv4, p.primaryIp]),
    [
      ["a/x", "n1", false, "10.0.0.1", "10.0.0.1"],
      ["m/exp1", "n1", true, "172.29.0.11", "172.29.0.11"],
      ["m/exp2", "n2", true, "172.29.0.12", "172.29.0.12"],
    ],
  );
  // node n2 has no Node object: its host-network pod's address is the node's.
  assert.deepEqual(Object.fromEntries(t.nodeAddresses), {
    n1: { ipv4: "172.29.0.11", ipv6: undefined },
    n2: { ipv4: "172.29.0.12", ipv6: undefined },
  });
});

test("topology: host-network errors name the object and field", () => {
  const cases: Array<[object[], RegExp]> = [
    [[hostPod("m", "e", "n1", [])], /Pod\/m\/e: spec.hostNetwork: the lab needs node n1's address/],
    [
      [nodeObject("n1", ["172.29.0.11"]), hostPod("m", "e", "n1", ["172.29.0.99"])],
      /Pod\/m\/e: status.podIPs: .*172.29.0.99 is not node n1's \(172.29.0.11\)/,
    ],
    [
      [
        hostPod("m", "e", "n1", ["172.29.0.11"], [{ containerPort: 9100 }]),
        hostPod("m", "f", "n1", ["172.29.0.11"], [{ containerPort: 9100 }]),
      ],
      /Pod\/m\/f: port 9100\/TCP: Pod\/m\/e listens on it too/,
    ],
    [
      [nodeObject("n1", ["10.0.0.1"]), pod("a", "x", "n1", ["10.0.0.1"])],
      /Node\/n1: 10.0.0.1 is also the address of Pod\/a\/x/,
    ],
    [[nodeObject("n1", ["not-an-ip"]), pod("a", "x", "n1", ["10.0.0.1"])], /Node\/n1: status.addresses/],
  ];
  for (const [objs, re] of cases)
    assert.throws(
      () => topologyFromObjects(objs),
      (e: Error) => e instanceof TopologyError && re.test(e.message),
    );
});

test("plan: given node addresses are the nodes' fabric addresses; host-network pods get no namespace", () => {
  const t = topologyFromObjects([
    nodeObject("n1", ["172.29.0.11"]),
    pod("a", "x", "n1", ["10.0.0.1"]),
    pod("a", "y", "n2", ["10.0.0.2"]),
    hostPod("m", "e", "n1", [], [{ containerPort: 9100 }]),
  ]);
  const plan = planLab(t, "beef");
  const [n1, n2] = plan.nodes;
  assert.equal(n1.address4, "172.29.0.11");
  assert.ok(n2.address4.startsWith("172.31.255."));
  // Outside the picked subnet: a host address, and a route to it from the other node.
  assert.ok(plan.config.get(n1.netns)!.includes("addr add 172.29.0.11/32 dev fab0"));
  assert.ok(plan.config.get(n1.netns)!.includes(`route add ${n2.address4}/32 dev fab0`));
  assert.ok(plan.config.get(n2.netns)!.includes("route add 172.29.0.11/32 dev fab0"));
  assert.ok(plan.config.get(n2.netns)!.includes("route add 10.0.0.1/32 via 172.29.0.11 dev fab0"));
  const e = plan.pods.find((p) => p.pod.key === "m/e")!;
  assert.equal(e.netns, n1.netns);
  assert.ok(!allNetns(plan).includes(netnsName("beef", "p", "m.e")));
  assert.equal(new Set(allNetns(plan)).size, allNetns(plan).length);
  assert.ok(![...plan.links.values()].flat().some((l) => l.includes(e.hostIf)));
});
