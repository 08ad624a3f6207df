// Table tests of the policy semantics users hit. Each case is checked twice: through the compiled
// map state (what the datapath does) and through the reference evaluator, and both must give the
// expected verdict.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Pod } from "../../operator/src/api/k8s.ts";
import {
  compile,
  inputsFromObjects,
  lookupIdentity,
  lookupVerdict,
  ReferenceEvaluator,
} from "../../operator/src/policy/index.ts";
import { protocolNumber } from "../../operator/src/policy/ports.ts";
import { podIps } from "../../operator/src/policy/universe.ts";
import { node, ns, pod } from "./policy-fixtures.ts";

const base = [
  ns("a", { team: "x" }),
  ns("b", { team: "y" }),
  node("n1", "172.18.0.1"),
  node("n2", "172.18.0.2"),
  pod("a", "web", { app: "web" }, ["10.0.1.1", "fd00::1"], "n1", [{ name: "http", containerPort: 80 }]),
  pod("a", "db", { app: "db" }, "10.0.1.2", "n2", [{ name: "http", containerPort: 8080 }]),
  pod("a", "db2", { app: "db" }, "10.0.2.3", "n2", [{ name: "http", containerPort: 8081 }]),
  pod("b", "client", { app: "client" }, ["10.0.2.1", "fd00::2"], "n1"),
];

function verdict(
  objects: unknown[],
  from: string,
  to: string,
  port: number | string,
  protocol = "TCP",
): string {
  const inputs = inputsFromObjects([...base, ...objects]);
  const pods = inputs.pods;
  const find = (x: string) => pods.find((p: Pod) => `${p.metadata.namespace}/${p.metadata.name}` === x);
  const src = find(from);
  const dst = find(to);
  const v6 = typeof port === "string" && port.startsWith("v6:");
  const ipOf = (p: Pod | undefined, x: string) => (p ? podIps(p).find((ip) => ip.includes(":") === v6)! : x);
  const srcIp = ipOf(src, from);
  const dstIp = ipOf(dst, to);
  const portNum = Number(String(port).replace("v6:", ""));
  const proto = protocol === "ICMP" ? 1 : protocolNumber(protocol);
  let compiled = "allow";
  if (src) {
    const st = compile(inputs, { node: src.spec!.nodeName! }).state;
    const ep = st.endpoints.find((e) => e.key === from)!;
    if (
      lookupVerdict(ep.policy, "egress", lookupIdentity(st.ipcache, dstIp), proto, portNum).verdict === "deny"
    )
      compiled = "deny";
  }
  if (dst) {
    const st = compile(inputs, { node: dst.spec!.nodeName! }).state;
    const ep = st.endpoints.find((e) => e.key === to)!;
    if (
      lookupVerdict(ep.policy, "ingress", lookupIdentity(st.ipcache, srcIp), proto, portNum).verdict ===
      "deny"
    )
      compiled = "deny";
  }
  const reference = new ReferenceEvaluator(inputs).evaluate(srcIp, dstIp, proto, portNum).verdict;
  assert.equal(compiled, reference, `compiled and reference disagree on ${from} -> ${to}:${port}`);
  return compiled;
}

const np = (name: string, namespace: string, spec: object) => ({
  kind: "NetworkPolicy",
  metadata: { name, namespace },
  spec,
});
const sp = (name: string, namespace: string, spec: object) => ({
  kind: "SecurityPolicy",
  metadata: { name, namespace },
  spec,
});
const csp = (name: string, spec: object) => ({ kind: "ClusterSecurityPolicy", metadata: { name }, spec });

const cases: Array<{
  name: string;
  objects: unknown[];
  probes: Array<[string, string, number | string, string, string?]>;
}> = [
  { name: "no policy: everything allowed", objects: [], probes: [["b/client", "a/web", 80, "allow"]] },
  {
    name: "ingress: [] denies all, ingress: [{}] allows all",
    objects: [
      np("deny", "a", { podSelector: { matchLabels: { app: "web" } }, ingress: [] }),
      np("all", "a", { podSelector: { matchLabels: { app: "db" } }, ingress: [{}] }),
    ],
    probes: [
      ["b/client", "a/web", 80, "deny"],
      ["b/client", "a/db", 8080, "allow"],
      ["a/web", "b/client", 80, "allow"],
    ],
  },
  {
    name: "absent ingress with policyTypes [Ingress] isolates; egress: [] alone does not isolate egress",
    objects: [np("p", "a", { podSelector: {}, egress: [] })],
    probes: [
      ["b/client", "a/web", 80, "deny"],
      ["a/web", "b/client", 80, "allow"],
    ],
  },
  {
    name: "implied Egress when egress rules exist",
    objects: [
      np("p", "a", {
        podSelector: { matchLabels: { app: "web" } },
        egress: [{ to: [{ podSelector: { matchLabels: { app: "db" } } }] }],
      }),
    ],
    probes: [
      ["a/web", "a/db", 8080, "allow"],
      ["a/web", "b/client", 80, "deny"],
      ["b/client", "a/web", 80, "deny"],
    ],
  },
  {
    name: "namespaceSelector + podSelector in one peer is an AND",
    objects: [
      np("p", "a", {
        podSelector: { matchLabels: { app: "web" } },
        ingress: [
          {
            from: [
              {
                namespaceSelector: { matchLabels: { team: "y" } },
                podSelector: { matchLabels: { app: "client" } },
              },
            ],
          },
        ],
      }),
    ],
    probes: [
      ["b/client", "a/web", 80, "allow"],
      ["a/db", "a/web", 80, "deny"],
    ],
  },
  {
    name: "named port resolved per destination pod on egress (same identity, different numbers)",
    objects: [
      np("p", "b", { podSelector: {}, policyTypes: ["Egress"], egress: [{ ports: [{ port: "http" }] }] }),
    ],
    probes: [
      ["b/client", "a/db", 8080, "allow"],
      ["b/client", "a/db", 8081, "deny"],
      ["b/client", "a/db2", 8081, "allow"],
      ["b/client", "a/db2", 8080, "deny"],
    ],
  },
  {
    name: "ipBlock matches pod IPs, except carves out",
    objects: [
      np("p", "a", {
        podSelector: { matchLabels: { app: "web" } },
        ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/16", except: ["10.0.1.0/24"] } }] }],
      }),
    ],
    probes: [
      ["b/client", "a/web", 80, "allow"],
      ["a/db", "a/web", 80, "deny"],
      ["10.0.9.9", "a/web", 80, "allow"],
      ["8.8.8.8", "a/web", 80, "deny"],
    ],
  },
  {
    name: "IPv6 ipBlock",
    objects: [
      np("p", "a", {
        podSelector: { matchLabels: { app: "web" } },
        ingress: [{ from: [{ ipBlock: { cidr: "fd00::/64" } }] }],
      }),
    ],
    probes: [
      ["b/client", "a/web", "v6:80", "allow"],
      ["b/client", "a/web", 80, "deny"],
    ],
  },
  {
    name: "overlapping port ranges: deny range inside allow range",
    objects: [
      sp("p", "a", {
        endpointSelector: { matchLabels: { app: "web" } },
        ingress: [
          { ports: [{ port: 1000, endPort: 2000, protocol: "TCP" }] },
          { action: "Deny", ports: [{ port: 1500, endPort: 1510, protocol: "TCP" }] },
        ],
      }),
    ],
    probes: [
      ["b/client", "a/web", 1000, "allow"],
      ["b/client", "a/web", 1499, "allow"],
      ["b/client", "a/web", 1505, "deny"],
      ["b/client", "a/web", 1511, "allow"],
      ["b/client", "a/web", 2001, "deny"],
      ["b/client", "a/web", 1505, "deny", "UDP"],
    ],
  },
  {
    name: "Admin deny beats namespace allow; Admin allow beats namespace deny",
    objects: [
      np("allow-all", "a", { podSelector: {}, ingress: [{}] }),
      sp("deny-81", "a", {
        endpointSelector: {},
        ingress: [{ action: "Deny", ports: [{ port: 81, protocol: "TCP" }] }],
      }),
      csp("admin", {
        tier: "Admin",
        priority: 1,
        endpointSelector: { matchLabels: { app: "web" } },
        ingress: [
          { action: "Deny", ports: [{ port: 80, protocol: "TCP" }] },
          { action: "Allow", ports: [{ port: 81, protocol: "TCP" }] },
        ],
      }),
    ],
    probes: [
      ["b/client", "a/web", 80, "deny"],
      ["b/client", "a/web", 81, "allow"],
      ["b/client", "a/db", 81, "deny"],
      ["b/client", "a/db", 80, "allow"],
    ],
  },
  {
    name: "Pass skips the rest of the Admin tier; lower priority goes first",
    objects: [
      csp("pass", {
        tier: "Admin",
        priority: 1,
        endpointSelector: {},
        ingress: [{ action: "Pass", endpoints: [{ namespaceSelector: { matchLabels: { team: "y" } } }] }],
      }),
      csp("deny", { tier: "Admin", priority: 2, endpointSelector: {}, ingress: [{ action: "Deny" }] }),
    ],
    probes: [
      ["b/client", "a/web", 80, "allow"],
      ["a/db", "a/web", 80, "deny"],
    ],
  },
  {
    name: "Baseline applies only where no namespace policy isolates",
    objects: [
      csp("base", { tier: "Baseline", priority: 1, endpointSelector: {}, ingress: [{ action: "Deny" }] }),
      np("web", "a", { podSelector: { matchLabels: { app: "web" } }, ingress: [{ ports: [{ port: 80 }] }] }),
    ],
    probes: [
      ["b/client", "a/web", 80, "allow"],
      ["b/client", "a/web", 81, "deny"],
      ["b/client", "a/db", 8080, "deny"],
      ["a/web", "b/client", 80, "deny"],
    ],
  },
  {
    name: "Baseline allow does not open an isolated pod",
    objects: [
      csp("base", { tier: "Baseline", priority: 1, endpointSelector: {}, ingress: [{ action: "Allow" }] }),
      np("iso", "a", { podSelector: {}, ingress: [] }),
    ],
    probes: [["b/client", "a/web", 80, "deny"]],
  },
  {
    name: "entities: world vs cluster vs host",
    objects: [
      sp("p", "a", {
        endpointSelector: { matchLabels: { app: "web" } },
        ingress: [{ entities: ["world"] }, { entities: ["host"], ports: [{ port: 10250, protocol: "TCP" }] }],
      }),
    ],
    probes: [
      ["8.8.8.8", "a/web", 80, "allow"],
      ["b/client", "a/web", 80, "deny"],
      ["172.18.0.1", "a/web", 10250, "allow"],
      ["172.18.0.2", "a/web", 10250, "deny"],
    ],
  },
  {
    name: "ICMP type/code",
    objects: [
      sp("p", "a", {
        endpointSelector: { matchLabels: { app: "web" } },
        ingress: [{ ports: [{ protocol: "ICMP", type: 8 }] }],
      }),
    ],
    probes: [
      ["b/client", "a/web", 8 << 8, "allow", "ICMP"],
      ["b/client", "a/web", 0, "deny", "ICMP"],
      ["b/client", "a/web", 80, "deny"],
    ],
  },
  {
    name: "empty endpointSelector selects the namespace only; labels under the exclusion list are ignored",
    objects: [
      sp("p", "b", { endpointSelector: {}, ingress: [] }),
      np("q", "a", { podSelector: { matchLabels: { "pod-template-hash": "abc" } }, ingress: [] }),
    ],
    probes: [
      ["a/web", "b/client", 80, "deny"],
      ["b/client", "a/web", 80, "allow"],
    ],
  },
];

for (const c of cases)
  test(c.name, () => {
    for (const [from, to, port, want, proto] of c.probes)
      assert.equal(
        verdict(c.objects, from, to, port, proto),
        want,
        `${from} -> ${to}:${port}/${proto ?? "TCP"}`,
      );
  });
