// SIG Network's policy API (ClusterNetworkPolicy v1alpha2, AdminNetworkPolicy and
// BaselineAdminNetworkPolicy v1alpha1) through the compiler: scenarios written from the API reference's
// documented semantics (tiers, priorities, Pass, every peer and port form), each checked through the
// compiled map state (the datapath's lookup) and the reference evaluator, which must agree; then what
// Sluice cannot enforce (rejected loudly, failing closed) and the incremental compiler's node peers.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Node, Pod } from "../../operator/src/api/k8s.ts";
import {
  compile,
  compileCluster,
  IncrementalCompiler,
  inputsFromObjects,
  lookupIdentity,
  lookupVerdict,
  ReferenceEvaluator,
} from "../../operator/src/policy/index.ts";
import { protocolNumber } from "../../operator/src/policy/ports.ts";
import { podIps } from "../../operator/src/policy/universe.ts";
import { ns, pod } from "./policy-fixtures.ts";

function labelledNode(name: string, ip: string, labels: Record<string, string>): Node {
  return {
    kind: "Node",
    metadata: { name, labels },
    status: { addresses: [{ type: "InternalIP", address: ip }] },
  };
}

const base = [
  ns("a", { team: "x" }),
  ns("b", { team: "y" }),
  ns("mon", { team: "ops" }),
  labelledNode("n1", "172.18.0.1", { role: "worker" }),
  labelledNode("n2", "172.18.0.2", { role: "infra" }),
  pod("a", "web", { app: "web" }, "10.0.1.1", "n1", [{ name: "http", containerPort: 80 }]),
  pod("a", "db", { app: "db" }, "10.0.1.2", "n2", [
    { name: "http", containerPort: 8080 },
    { name: "sctp-feed", containerPort: 9999, protocol: "SCTP" },
  ]),
  pod("b", "client", { app: "client" }, "10.0.2.1", "n1"),
  pod("mon", "prom", { app: "prom" }, "10.0.3.1", "n2"),
];

// The verdict of one connection (from and to: "ns/pod" or an address), compiled and reference.
function verdict(objects: unknown[], from: string, to: string, port: number, protocol = "TCP"): string {
  const inputs = inputsFromObjects([...base, ...objects]);
  const find = (x: string) =>
    inputs.pods.find((p: Pod) => `${p.metadata.namespace}/${p.metadata.name}` === x);
  const src = find(from);
  const dst = find(to);
  const srcIp = src ? podIps(src)[0] : from;
  const dstIp = dst ? podIps(dst)[0] : to;
  const proto = protocolNumber(protocol);
  let compiled = "allow";
  for (const [p, key, direction, peer] of [
    [src, from, "egress", dstIp],
    [dst, to, "ingress", srcIp],
  ] as const) {
    if (!p) continue;
    const st = compile(inputs, { node: p.spec!.nodeName! }).state;
    const ep = st.endpoints.find((e) => e.key === key)!;
    if (lookupVerdict(ep.policy, direction, lookupIdentity(st.ipcache, peer), proto, port).verdict === "deny")
      compiled = "deny";
  }
  const reference = new ReferenceEvaluator(inputs).evaluate(srcIp, dstIp, proto, port).verdict;
  assert.equal(
    compiled,
    reference,
    `compiled and reference disagree on ${from} -> ${to}:${port}/${protocol}`,
  );
  return compiled;
}

const cnp = (name: string, tier: "Admin" | "Baseline", priority: number, spec: object) => ({
  apiVersion: "policy.networking.k8s.io/v1alpha2",
  kind: "ClusterNetworkPolicy",
  metadata: { name },
  spec: { tier, priority, ...spec },
});
const anp = (name: string, priority: number, spec: object) => ({
  apiVersion: "policy.networking.k8s.io/v1alpha1",
  kind: "AdminNetworkPolicy",
  metadata: { name },
  spec: { priority, ...spec },
});
const banp = (spec: object, name = "default") => ({
  apiVersion: "policy.networking.k8s.io/v1alpha1",
  kind: "BaselineAdminNetworkPolicy",
  metadata: { name },
  spec,
});
const np = (name: string, namespace: string, spec: object) => ({
  kind: "NetworkPolicy",
  metadata: { name, namespace },
  spec,
});
const csp = (name: string, spec: object) => ({ kind: "ClusterSecurityPolicy", metadata: { name }, spec });

const web = { pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: "web" } } } };
const nsB = { namespaces: { matchLabels: { team: "y" } } };
const everyone = { namespaces: {} };
// A NetworkPolicy on web that allows ingress from namespace b only.
const npWebFromB = np("web-from-b", "a", {
  podSelector: { matchLabels: { app: "web" } },
  ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "y" } } }] }],
});

describe("tiers", () => {
  test("an Admin Deny beats a NetworkPolicy allow", () => {
    assert.equal(verdict([npWebFromB], "b/client", "a/web", 80), "allow");
    const deny = cnp("deny-b", "Admin", 10, { subject: web, ingress: [{ action: "Deny", from: [nsB] }] });
    assert.equal(verdict([npWebFromB, deny], "b/client", "a/web", 80), "deny");
  });

  test("an Admin Accept beats NetworkPolicy isolation", () => {
    const accept = cnp("mon", "Admin", 10, {
      subject: web,
      ingress: [{ action: "Accept", from: [{ namespaces: { matchLabels: { team: "ops" } } }] }],
    });
    assert.equal(verdict([npWebFromB], "mon/prom", "a/web", 80), "deny");
    assert.equal(verdict([npWebFromB, accept], "mon/prom", "a/web", 80), "allow");
  });

  test("Admin Pass hands the connection to NetworkPolicy, skipping the rest of the Admin tier", () => {
    const pass = cnp("pass-b", "Admin", 1, { subject: web, ingress: [{ action: "Pass", from: [nsB] }] });
    const denyAll = cnp("deny-all", "Admin", 2, {
      subject: web,
      ingress: [{ action: "Deny", from: [everyone] }],
    });
    assert.equal(verdict([denyAll], "b/client", "a/web", 80), "deny");
    // Passed, no NetworkPolicy selects web: the default allows.
    assert.equal(verdict([pass, denyAll], "b/client", "a/web", 80), "allow");
    // Passed, a NetworkPolicy selects web: it decides (allows b, isolates the rest).
    assert.equal(verdict([pass, denyAll, npWebFromB], "b/client", "a/web", 80), "allow");
    const npOther = np("web-from-ops", "a", {
      podSelector: { matchLabels: { app: "web" } },
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "ops" } } }] }],
    });
    assert.equal(verdict([pass, denyAll, npOther], "b/client", "a/web", 80), "deny");
    // Not passed (prom is not in b): the Deny still applies, NetworkPolicy's allow notwithstanding.
    assert.equal(verdict([pass, denyAll, npOther], "mon/prom", "a/web", 80), "deny");
  });

  test("a Baseline Deny applies only where no NetworkPolicy decides", () => {
    const baseline = cnp("base", "Baseline", 10, {
      subject: web,
      ingress: [{ action: "Deny", from: [everyone] }],
    });
    assert.equal(verdict([baseline], "b/client", "a/web", 80), "deny");
    // A NetworkPolicy allows: it decides before the Baseline tier.
    assert.equal(verdict([baseline, npWebFromB], "b/client", "a/web", 80), "allow");
    // A NetworkPolicy on another pod changes nothing for web.
    const npDb = np("db", "a", { podSelector: { matchLabels: { app: "db" } }, ingress: [{}] });
    assert.equal(verdict([baseline, npDb], "b/client", "a/web", 80), "deny");
  });

  test("the Baseline tier comes after namespace isolation: a Baseline Accept cannot open an isolated pod", () => {
    const accept = cnp("base-accept", "Baseline", 10, {
      subject: web,
      ingress: [{ action: "Accept", from: [everyone] }],
    });
    assert.equal(verdict([npWebFromB, accept], "mon/prom", "a/web", 80), "deny");
    assert.equal(verdict([accept], "mon/prom", "a/web", 80), "allow");
  });

  test("a Baseline Pass leaves the connection to the default (allow)", () => {
    const pass = cnp("base-pass", "Baseline", 1, {
      subject: web,
      ingress: [{ action: "Pass", from: [nsB] }],
    });
    const deny = cnp("base-deny", "Baseline", 2, {
      subject: web,
      ingress: [{ action: "Deny", from: [everyone] }],
    });
    assert.equal(verdict([pass, deny], "b/client", "a/web", 80), "allow");
    assert.equal(verdict([pass, deny], "mon/prom", "a/web", 80), "deny");
  });

  test("egress: an Admin Deny at the source stops what the destination allows", () => {
    const deny = cnp("no-web", "Admin", 5, {
      subject: { namespaces: { matchLabels: { team: "y" } } },
      egress: [{ action: "Deny", to: [web] }],
    });
    assert.equal(verdict([deny], "b/client", "a/web", 80), "deny");
    assert.equal(verdict([deny], "b/client", "a/db", 8080), "allow");
  });
});

describe("priorities and ties", () => {
  const accept = (name: string, p: number) =>
    cnp(name, "Admin", p, { subject: web, ingress: [{ action: "Accept", from: [nsB] }] });
  const deny = (name: string, p: number) =>
    cnp(name, "Admin", p, { subject: web, ingress: [{ action: "Deny", from: [nsB] }] });

  test("lower priority first", () => {
    assert.equal(verdict([accept("a", 5), deny("b", 10)], "b/client", "a/web", 80), "allow");
    assert.equal(verdict([accept("a", 10), deny("b", 5)], "b/client", "a/web", 80), "deny");
  });

  test("within one policy, the first matching rule decides", () => {
    const rules = (first: string, second: string) =>
      cnp("ordered", "Admin", 1, {
        subject: web,
        ingress: [
          { action: first, from: [nsB] },
          { action: second, from: [everyone] },
        ],
      });
    assert.equal(verdict([rules("Accept", "Deny")], "b/client", "a/web", 80), "allow");
    assert.equal(verdict([rules("Deny", "Accept")], "b/client", "a/web", 80), "deny");
    assert.equal(verdict([rules("Deny", "Accept")], "mon/prom", "a/web", 80), "allow");
  });

  test("equal priorities: by kind (AdminNetworkPolicy, ClusterNetworkPolicy, ClusterSecurityPolicy), then name", () => {
    const anpDeny = anp("zz", 7, { subject: web, ingress: [{ action: "Deny", from: [nsB] }] });
    const cnpAccept = accept("aa", 7);
    const cspAllow = csp("aa", {
      tier: "Admin",
      priority: 7,
      endpointSelector: { matchLabels: { app: "web" } },
      ingress: [{ action: "Allow", endpoints: [{ namespaceSelector: { matchLabels: { team: "y" } } }] }],
    });
    const cspDeny = csp("aa", {
      tier: "Admin",
      priority: 7,
      endpointSelector: { matchLabels: { app: "web" } },
      ingress: [{ action: "Deny", endpoints: [{ namespaceSelector: { matchLabels: { team: "y" } } }] }],
    });
    assert.equal(verdict([cnpAccept, anpDeny], "b/client", "a/web", 80), "deny");
    assert.equal(verdict([cnpAccept, cspDeny], "b/client", "a/web", 80), "allow");
    assert.equal(verdict([deny("aa", 7), cspAllow], "b/client", "a/web", 80), "deny");
    // Same kind, same priority: by name.
    assert.equal(verdict([accept("a1", 7), deny("a2", 7)], "b/client", "a/web", 80), "allow");
    assert.equal(verdict([accept("a2", 7), deny("a1", 7)], "b/client", "a/web", 80), "deny");
  });

  test("the BaselineAdminNetworkPolicy comes after every Baseline ClusterNetworkPolicy, whatever its priority", () => {
    const b = banp({ subject: { namespaces: {} }, ingress: [{ action: "Deny", from: [everyone] }] });
    const cnpAccept = cnp("late", "Baseline", 1000, {
      subject: web,
      ingress: [{ action: "Accept", from: [nsB] }],
    });
    assert.equal(verdict([b], "b/client", "a/web", 80), "deny");
    assert.equal(verdict([b, cnpAccept], "b/client", "a/web", 80), "allow");
    assert.equal(verdict([b, cnpAccept], "mon/prom", "a/web", 80), "deny");
  });
});

describe("AdminNetworkPolicy and BaselineAdminNetworkPolicy (v1alpha1)", () => {
  test("ANP Allow/Deny/Pass behave as the Admin tier's Accept/Deny/Pass", () => {
    const rules = (action: string) =>
      anp("p", 3, {
        subject: {
          pods: {
            namespaceSelector: { matchLabels: { team: "x" } },
            podSelector: { matchLabels: { app: "web" } },
          },
        },
        ingress: [
          { action, from: [nsB] },
          { action: "Deny", from: [everyone] },
        ],
      });
    assert.equal(verdict([rules("Allow"), npWebFromB], "b/client", "a/web", 80), "allow");
    assert.equal(verdict([rules("Deny"), npWebFromB], "b/client", "a/web", 80), "deny");
    // Pass: NetworkPolicy decides.
    assert.equal(verdict([rules("Pass"), npWebFromB], "b/client", "a/web", 80), "allow");
    assert.equal(verdict([rules("Pass")], "mon/prom", "a/web", 80), "deny");
  });

  test("BANP Allow/Deny: only where no NetworkPolicy decides", () => {
    const b = banp({
      subject: { namespaces: { matchLabels: { team: "x" } } },
      ingress: [
        { action: "Allow", from: [{ namespaces: { matchLabels: { team: "x" } } }] },
        { action: "Deny", from: [everyone] },
      ],
    });
    assert.equal(verdict([b], "b/client", "a/web", 80), "deny");
    assert.equal(verdict([b], "a/db", "a/web", 80), "allow");
    assert.equal(verdict([b, npWebFromB], "b/client", "a/web", 80), "allow");
    // Outside the subject: untouched.
    assert.equal(verdict([b], "a/web", "b/client", 80), "allow");
  });
});

describe("peers", () => {
  const denyEgress = (to: object[], protocols?: object[]) =>
    cnp("deny", "Admin", 1, {
      subject: { namespaces: { matchLabels: { team: "x" } } },
      egress: [{ action: "Deny", to, ...(protocols ? { protocols } : {}) }],
    });

  test("namespaces and pods (namespace AND pod selectors)", () => {
    assert.equal(verdict([denyEgress([nsB])], "a/web", "b/client", 80), "deny");
    assert.equal(verdict([denyEgress([nsB])], "a/web", "mon/prom", 80), "allow");
    const dbInA = {
      pods: {
        namespaceSelector: { matchLabels: { team: "x" } },
        podSelector: { matchLabels: { app: "db" } },
      },
    };
    assert.equal(verdict([denyEgress([dbInA])], "a/web", "a/db", 8080), "deny");
    assert.equal(verdict([denyEgress([dbInA])], "a/web", "b/client", 8080), "allow");
    // pods without namespaceSelector (v1alpha2: optional) means every namespace.
    const anyClient = { pods: { podSelector: { matchLabels: { app: "client" } } } };
    assert.equal(verdict([denyEgress([anyClient])], "a/web", "b/client", 80), "deny");
  });

  test("networks: CIDRs, outside the cluster and inside it", () => {
    const nets = denyEgress([{ networks: ["8.8.8.0/24", "10.0.2.0/24"] }]);
    assert.equal(verdict([nets], "a/web", "8.8.8.8", 53, "UDP"), "deny");
    assert.equal(verdict([nets], "a/web", "1.1.1.1", 53, "UDP"), "allow");
    assert.equal(verdict([nets], "a/web", "b/client", 80), "deny");
    assert.equal(verdict([nets], "a/web", "mon/prom", 80), "allow");
  });

  test("nodes: the selected Node objects' addresses", () => {
    const infra = denyEgress([{ nodes: { matchLabels: { role: "infra" } } }]);
    assert.equal(verdict([infra], "a/web", "172.18.0.2", 10250), "deny");
    assert.equal(verdict([infra], "a/web", "172.18.0.1", 10250), "allow");
    // Pods on that node are not the node.
    assert.equal(verdict([infra], "a/web", "a/db", 8080), "allow");
    const all = denyEgress([{ nodes: {} }]);
    assert.equal(verdict([all], "a/web", "172.18.0.1", 10250), "deny");
  });

  test("several peers in one rule: any of them", () => {
    const two = denyEgress([nsB, { networks: ["8.8.8.8/32"] }]);
    assert.equal(verdict([two], "a/web", "b/client", 80), "deny");
    assert.equal(verdict([two], "a/web", "8.8.8.8", 80), "deny");
    assert.equal(verdict([two], "a/web", "mon/prom", 80), "allow");
  });
});

describe("ports and protocols", () => {
  const denyIn = (protocols: object[]) =>
    cnp("ports", "Admin", 1, {
      subject: { namespaces: {} },
      ingress: [{ action: "Deny", from: [everyone], protocols }],
    });
  const anpDenyIn = (ports: object[]) =>
    anp("ports", 1, { subject: { namespaces: {} }, ingress: [{ action: "Deny", from: [everyone], ports }] });

  test("v1alpha2 tcp/udp/sctp destinationPort number and range", () => {
    const p = denyIn([
      { tcp: { destinationPort: { number: 80 } } },
      { udp: { destinationPort: { range: { start: 5000, end: 5010 } } } },
      { sctp: { destinationPort: { number: 9999 } } },
    ]);
    assert.equal(verdict([p], "b/client", "a/web", 80, "TCP"), "deny");
    assert.equal(verdict([p], "b/client", "a/web", 80, "UDP"), "allow");
    assert.equal(verdict([p], "b/client", "a/web", 81, "TCP"), "allow");
    assert.equal(verdict([p], "b/client", "a/web", 5000, "UDP"), "deny");
    assert.equal(verdict([p], "b/client", "a/web", 5010, "UDP"), "deny");
    assert.equal(verdict([p], "b/client", "a/web", 5011, "UDP"), "allow");
    assert.equal(verdict([p], "b/client", "a/web", 5005, "TCP"), "allow");
    assert.equal(verdict([p], "b/client", "a/db", 9999, "SCTP"), "deny");
    assert.equal(verdict([p], "b/client", "a/db", 9999, "TCP"), "allow");
  });

  test("v1alpha2 destinationNamedPort: the destination pod's container port of that name", () => {
    const p = denyIn([{ destinationNamedPort: "http" }]);
    assert.equal(verdict([p], "b/client", "a/web", 80), "deny");
    assert.equal(verdict([p], "b/client", "a/web", 8080), "allow");
    assert.equal(verdict([p], "b/client", "a/db", 8080), "deny");
    assert.equal(verdict([p], "b/client", "a/db", 80), "allow");
    // Named ports in egress resolve against each destination.
    const out = cnp("out", "Admin", 1, {
      subject: { namespaces: { matchLabels: { team: "y" } } },
      egress: [{ action: "Deny", to: [everyone], protocols: [{ destinationNamedPort: "sctp-feed" }] }],
    });
    assert.equal(verdict([out], "b/client", "a/db", 9999, "SCTP"), "deny");
    assert.equal(verdict([out], "b/client", "a/db", 9999, "TCP"), "allow");
  });

  test("v1alpha1 portNumber (protocol defaults to TCP), portRange, namedPort", () => {
    const p = anpDenyIn([
      { portNumber: { port: 80 } },
      { portNumber: { protocol: "UDP", port: 53 } },
      { portRange: { protocol: "SCTP", start: 9000, end: 9999 } },
      { namedPort: "http" },
    ]);
    assert.equal(verdict([p], "b/client", "a/web", 80, "TCP"), "deny");
    assert.equal(verdict([p], "b/client", "a/web", 80, "UDP"), "allow");
    assert.equal(verdict([p], "b/client", "a/web", 53, "UDP"), "deny");
    assert.equal(verdict([p], "b/client", "a/db", 9500, "SCTP"), "deny");
    assert.equal(verdict([p], "b/client", "a/db", 9500, "TCP"), "allow");
    assert.equal(verdict([p], "b/client", "a/db", 8080, "TCP"), "deny");
    assert.equal(verdict([p], "b/client", "a/web", 8080, "TCP"), "allow");
  });

  test("no protocols: every protocol and port", () => {
    const p = cnp("all", "Admin", 1, {
      subject: { namespaces: {} },
      ingress: [{ action: "Deny", from: [nsB] }],
    });
    for (const [port, proto] of [
      [1, "TCP"],
      [65535, "UDP"],
      [9999, "SCTP"],
    ] as const)
      assert.equal(verdict([p], "b/client", "a/db", port, proto), "deny");
  });
});

test("one set: a ClusterNetworkPolicy, a NetworkPolicy and a ClusterSecurityPolicy", () => {
  const objects = [
    // Admin: monitoring always reaches 9090; b's traffic is passed to the namespace policies.
    cnp("guard", "Admin", 10, {
      subject: { namespaces: { matchLabels: { team: "x" } } },
      ingress: [
        {
          action: "Accept",
          from: [{ namespaces: { matchLabels: { team: "ops" } } }],
          protocols: [{ tcp: { destinationPort: { number: 9090 } } }],
        },
        { action: "Pass", from: [nsB] },
      ],
    }),
    // Admin, later: nobody reaches a's pods on 22, which comes after the Pass for b.
    csp("no-ssh", {
      tier: "Admin",
      priority: 20,
      endpointSelector: {},
      namespaceSelector: { matchLabels: { team: "x" } },
      ingress: [{ action: "Deny", ports: [{ port: 22, protocol: "TCP" }] }],
    }),
    // Namespace: web allows b.
    npWebFromB,
    // Baseline: the rest of a is closed.
    csp("closed", {
      tier: "Baseline",
      priority: 1,
      endpointSelector: {},
      namespaceSelector: { matchLabels: { team: "x" } },
      ingress: [{ action: "Deny", entities: ["all"] }],
    }),
  ];
  assert.equal(verdict(objects, "mon/prom", "a/web", 9090), "allow"); // Admin Accept beats web's isolation
  assert.equal(verdict(objects, "mon/prom", "a/web", 80), "deny"); // web's NetworkPolicy isolates
  assert.equal(verdict(objects, "mon/prom", "a/web", 22), "deny"); // the ClusterSecurityPolicy
  assert.equal(verdict(objects, "b/client", "a/web", 22), "allow"); // passed before the ssh Deny; NP allows b
  assert.equal(verdict(objects, "b/client", "a/web", 80), "allow");
  assert.equal(verdict(objects, "b/client", "a/db", 8080), "deny"); // passed; no NP on db; Baseline closes
  assert.equal(verdict(objects, "mon/prom", "a/db", 9090), "allow");
  assert.equal(verdict(objects, "mon/prom", "a/db", 8080), "deny");
});

describe("what Sluice cannot enforce: rejected loudly, failing closed", () => {
  const errorsOf = (objects: unknown[]) =>
    compileCluster([...base, ...objects], { node: "n1" }).errors.map(
      (e) => `${e.policies.join(",")} ${e.field}: ${e.message}`,
    );

  test("a domainNames peer: an Accept rule's peer matches nothing", () => {
    const p = cnp("fqdn", "Admin", 1, {
      subject: { namespaces: { matchLabels: { team: "x" } } },
      egress: [
        { action: "Accept", to: [{ domainNames: ["example.com"] }, { networks: ["8.8.8.8/32"] }] },
        { action: "Deny", to: [{ networks: ["0.0.0.0/0"] }] },
      ],
    });
    assert.deepEqual(errorsOf([p]), [
      "ClusterNetworkPolicy/fqdn spec.egress[0].to[0].domainNames: domainNames peers are not supported by Sluice (it has no DNS-aware datapath)",
    ]);
    assert.equal(verdict([p], "a/web", "8.8.8.8", 443), "allow");
    assert.equal(verdict([p], "a/web", "93.184.216.34", 443), "deny");
  });

  test("a Deny or Pass rule with a peer it cannot read denies everything", () => {
    const p = cnp("bad", "Admin", 1, {
      subject: web,
      ingress: [
        {
          action: "Pass",
          from: [{ namespaces: { matchExpressions: [{ key: "team", operator: "Equals", values: ["y"] }] } }],
        },
      ],
    });
    assert.deepEqual(errorsOf([p]), [
      'ClusterNetworkPolicy/bad spec.ingress[0].from[0].namespaces.matchExpressions[0].operator: "Equals" is not In, NotIn, Exists or DoesNotExist',
    ]);
    assert.equal(verdict([p, npWebFromB], "b/client", "a/web", 80), "deny");
    assert.equal(verdict([p], "mon/prom", "a/web", 1234, "UDP"), "deny");
  });

  test("an empty peer (a field this version does not know) and an unknown protocol are errors", () => {
    const p = anp("unknown", 1, {
      subject: { namespaces: {} },
      ingress: [{ action: "Deny", from: [{}] }],
      egress: [{ action: "Allow", to: [everyone], ports: [{ portNumber: { protocol: "QUIC", port: 443 } }] }],
    });
    const errors = errorsOf([p]);
    assert.equal(errors.length, 2, errors.join("\n"));
    assert.match(
      errors.join("\n"),
      /spec\.ingress\[0\]\.from\[0\]: a peer needs exactly one field: none is set/,
    );
    assert.match(
      errors.join("\n"),
      /spec\.egress\[0\]\.ports\[0\]\.portNumber\.protocol: "QUIC" is not TCP, UDP or SCTP/,
    );
    assert.equal(verdict([p], "b/client", "a/web", 80), "deny");
  });

  test("a BaselineAdminNetworkPolicy not named default is an error", () => {
    assert.match(
      errorsOf([banp({ subject: { namespaces: {} } }, "mine")]).join("\n"),
      /BaselineAdminNetworkPolicy\/mine metadata\.name: a BaselineAdminNetworkPolicy must be named "default"/,
    );
    assert.deepEqual(errorsOf([banp({ subject: { namespaces: {} } })]), []);
  });
});

describe("the incremental compiler", () => {
  const infraDeny = cnp("infra", "Admin", 1, {
    subject: { namespaces: { matchLabels: { team: "x" } } },
    egress: [{ action: "Deny", to: [{ nodes: { matchLabels: { role: "infra" } } }] }],
  });
  const relabel = (n: Node, role: string): Node => ({ ...n, metadata: { ...n.metadata, labels: { role } } });

  test("a Node relabelled: node peers follow, in apply() and in record()/recompile()", () => {
    const inputs = inputsFromObjects([...base, infraDeny]);
    const n1 = inputs.nodes!.find((n) => n.metadata.name === "n1")!;
    const after = inputsFromObjects([...base.filter((o) => o !== base[3]), relabel(n1, "infra"), infraDeny]);
    const want = compile(after, { node: "n1" }).state;
    assert.notDeepEqual(compile(inputs, { node: "n1" }).state, want, "the relabel must change something");

    const applied = new IncrementalCompiler(inputs, { node: "n1" });
    applied.apply({ type: "upsert", object: relabel(n1, "infra") });
    assert.deepEqual(applied.state, want);

    const keyed = new IncrementalCompiler(inputs, { node: "n1" });
    keyed.record({ type: "upsert", object: relabel(n1, "infra") });
    keyed.recompile([]);
    assert.deepEqual(keyed.state, want);
  });

  test("upstream policies added, changed and removed: the same state as a full compile", () => {
    const inputs = inputsFromObjects(base);
    const c = new IncrementalCompiler(inputs, { node: "n1" });
    const steps: Array<[unknown[], { type: "upsert" | "delete"; object: never }]> = [];
    const p1 = cnp("p1", "Admin", 1, { subject: web, ingress: [{ action: "Deny", from: [nsB] }] });
    const p1b = cnp("p1", "Baseline", 1, { subject: web, ingress: [{ action: "Deny", from: [nsB] }] });
    const a1 = anp("a1", 2, {
      subject: { namespaces: {} },
      egress: [{ action: "Deny", to: [{ networks: ["8.8.8.0/24"] }] }],
    });
    const b1 = banp({ subject: { namespaces: {} }, ingress: [{ action: "Deny", from: [everyone] }] });
    steps.push([[p1], { type: "upsert", object: p1 as never }]);
    steps.push([[p1, a1], { type: "upsert", object: a1 as never }]);
    steps.push([[p1b, a1], { type: "upsert", object: p1b as never }]);
    steps.push([[p1b, a1, b1], { type: "upsert", object: b1 as never }]);
    steps.push([[p1b, b1], { type: "delete", object: a1 as never }]);
    for (const [objects, change] of steps) {
      c.apply(change);
      assert.deepEqual(c.state, compile(inputsFromObjects([...base, ...objects]), { node: "n1" }).state);
    }
  });
});
