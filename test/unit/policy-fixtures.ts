// Random clusters and policies for the property tests.
import fc from "fast-check";
import type { AllowLocalhost, MapState } from "../../operator/src/policy/mapstate.ts";
import { compile, inputsFromObjects, ReferenceEvaluator } from "../../operator/src/policy/index.ts";
import { podIps } from "../../operator/src/policy/universe.ts";
import { ENFORCEMENT_ANNOTATION } from "../../operator/src/policy/enforcement.ts";
import type { Namespace, NetworkPolicy, Node, Pod } from "../../operator/src/api/k8s.ts";
import type {
  AdminNetworkPolicy,
  BaselineAdminNetworkPolicy,
  ClusterNetworkPolicy,
  ClusterSecurityPolicy,
  SecurityPolicy,
} from "../../operator/src/api/types.generated.ts";

export const NODES = ["n1", "n2"];
// Addresses on the nodes' own interfaces that no Node object lists (CompileOptions.hostAddresses of
// that node's compile): host there, unknown elsewhere. Inside and outside the generated policy CIDRs,
// so host identities get refined too.
export const NODE_ADDRESSES = new Map<string, string[]>([
  ["n1", ["192.168.7.1", "fd00::a"]],
  ["n2", ["10.0.2.250"]],
]);
// Addresses no pod has, probed as peers: outside the cluster, the nodes' (Node objects: 172.18.0.x),
// the nodes' own interfaces.
export const EXTERNAL_IPS = [
  "192.168.1.5",
  "10.1.2.3",
  "8.8.8.8",
  "172.18.0.1",
  "172.18.0.2",
  "fd00::9",
  ...[...NODE_ADDRESSES.values()].flat(),
];
export const allowLocalhostMode = fc.constantFrom("always" as const, "policy" as const);

export function ns(name: string, labels: Record<string, string> = {}): Namespace {
  return { kind: "Namespace", metadata: { name, labels } };
}

export function pod(
  namespace: string,
  name: string,
  labels: Record<string, string>,
  ip: string | string[],
  node = "n1",
  ports: Array<{ name?: string; containerPort: number; protocol?: "TCP" | "UDP" | "SCTP" }> = [],
): Pod {
  const ips = Array.isArray(ip) ? ip : [ip];
  return {
    kind: "Pod",
    metadata: { namespace, name, labels },
    spec: { nodeName: node, containers: [{ name: "c", ports }] },
    status: { podIP: ips[0], podIPs: ips.map((i) => ({ ip: i })) },
  };
}

export function node(name: string, ip: string, labels: Record<string, string> = {}): Node {
  return {
    kind: "Node",
    metadata: { name, labels },
    status: { addresses: [{ type: "InternalIP", address: ip }] },
  };
}

// The generated clusters' nodes, labelled so node selectors pick one, the other, both or none.
export const NODE_OBJECTS = [
  node("n1", "172.18.0.1", { "node-role": "edge", zone: "a" }),
  node("n2", "172.18.0.2", { zone: "b" }),
];
// Node peers: every node, n1 only, n2 only (two spellings), none.
export const nodeSel = fc.constantFrom(
  {},
  { matchLabels: { "node-role": "edge" } },
  { matchLabels: { zone: "b" } },
  { matchExpressions: [{ key: "node-role", operator: "DoesNotExist" as const }] },
  { matchLabels: { zone: "c" } },
);

const sel = fc.oneof(
  fc.constant({}),
  fc.constantFrom("web", "db", "api").map((app) => ({ matchLabels: { app } })),
  fc
    .constantFrom("web", "db")
    .map((app) => ({ matchExpressions: [{ key: "app", operator: "NotIn" as const, values: [app] }] })),
);
const nsSel = fc.oneof(
  fc.constant({}),
  fc.constantFrom("x", "y").map((team) => ({ matchLabels: { team } })),
  fc.constantFrom("a", "b").map((n) => ({ matchLabels: { "kubernetes.io/metadata.name": n } })),
);
const cidrBlock = fc.constantFrom(
  { cidr: "10.0.0.0/16" },
  { cidr: "10.0.1.0/24", except: ["10.0.1.0/26"] },
  { cidr: "0.0.0.0/0", except: ["10.0.0.0/8"] },
  { cidr: "10.0.0.0/8" },
  { cidr: "192.168.0.0/16" },
  { cidr: "10.0.2.7/32" },
  { cidr: "fd00::/8", except: ["fd00::/120"] },
);
const npPort = fc.oneof(
  fc.constant({ port: 80 }),
  fc.constant({ port: 8080 }),
  fc.constant({ port: 80, endPort: 90 }),
  fc.constant({ port: 84, endPort: 8080 }),
  fc.constant({ port: "http" }),
  fc.constant({ port: "dns", protocol: "UDP" as const }),
  fc.constant({ protocol: "UDP" as const }),
  fc.constant({ port: 53, protocol: "UDP" as const }),
  fc.constant({ protocol: "SCTP" as const, port: 80 }),
);
const npPeer = fc.oneof(
  sel.map((podSelector) => ({ podSelector })),
  nsSel.map((namespaceSelector) => ({ namespaceSelector })),
  fc.tuple(sel, nsSel).map(([podSelector, namespaceSelector]) => ({ podSelector, namespaceSelector })),
  cidrBlock.map((ipBlock) => ({ ipBlock })),
);
const npRule = fc.record({
  peers: fc.option(fc.array(npPeer, { maxLength: 2 }), { nil: undefined }),
  ports: fc.option(fc.array(npPort, { maxLength: 2 }), { nil: undefined }),
});

export const networkPolicy = (i: number) =>
  fc
    .record({
      namespace: fc.constantFrom("a", "b"),
      podSelector: sel,
      types: fc.constantFrom(undefined, ["Ingress"], ["Egress"], ["Ingress", "Egress"]),
      ingress: fc.option(fc.array(npRule, { maxLength: 2 }), { nil: undefined }),
      egress: fc.option(fc.array(npRule, { maxLength: 2 }), { nil: undefined }),
    })
    .map(
      (r) =>
        ({
          kind: "NetworkPolicy",
          metadata: { namespace: r.namespace, name: `np${i}` },
          spec: {
            podSelector: r.podSelector,
            ...(r.types ? { policyTypes: [...r.types] } : {}),
            ...(r.ingress ? { ingress: r.ingress.map((x) => ({ from: x.peers, ports: x.ports })) } : {}),
            ...(r.egress ? { egress: r.egress.map((x) => ({ to: x.peers, ports: x.ports })) } : {}),
          },
        }) as NetworkPolicy,
    );

const slPort = fc.oneof(
  npPort,
  fc.constant({ protocol: "ICMP" as const, type: 8 }),
  fc.constant({ protocol: "ICMP" as const, type: 8, code: 0 }),
  fc.constant({ protocol: "ANY" as const, port: 80 }),
  fc.constant({ protocol: "ANY" as const }),
  fc.constant({ protocol: "TCP" as const, port: 1024, endPort: 65535 }),
);
const slRule = (cluster: boolean) =>
  fc.record(
    {
      action: fc.constantFrom(...(cluster ? ["Allow", "Deny", "Pass"] : ["Allow", "Deny"])),
      endpoints: fc.array(
        fc.record({ endpointSelector: sel, namespaceSelector: nsSel }, { requiredKeys: [] }),
        { maxLength: 2 },
      ),
      cidrs: fc.array(cidrBlock, { maxLength: 1 }),
      entities: fc.array(fc.constantFrom("world", "cluster", "host", "remote-node", "all"), { maxLength: 1 }),
      // Node peers: ClusterSecurityPolicy only (the SecurityPolicy schema has none).
      ...(cluster ? { nodes: fc.array(nodeSel, { maxLength: 2 }) } : {}),
      ports: fc.array(slPort, { maxLength: 2 }),
    },
    { requiredKeys: [] },
  );

export const securityPolicy = (i: number) =>
  fc
    .record({
      namespace: fc.constantFrom("a", "b"),
      sel,
      ingress: fc.option(fc.array(slRule(false), { maxLength: 2 }), { nil: undefined }),
      egress: fc.option(fc.array(slRule(false), { maxLength: 2 }), { nil: undefined }),
    })
    .map(
      (r) =>
        ({
          kind: "SecurityPolicy",
          metadata: { namespace: r.namespace, name: `sp${i}` },
          spec: { endpointSelector: r.sel, ingress: r.ingress, egress: r.egress },
        }) as SecurityPolicy,
    );

export const clusterPolicy = (i: number) =>
  fc
    .record({
      tier: fc.constantFrom("Admin", "Baseline"),
      priority: fc.integer({ min: 0, max: 3 }),
      sel,
      nsSel: fc.option(nsSel, { nil: undefined }),
      ingress: fc.option(fc.array(slRule(true), { maxLength: 2 }), { nil: undefined }),
      egress: fc.option(fc.array(slRule(true), { maxLength: 2 }), { nil: undefined }),
    })
    .map((r) => {
      const fix = (rules: typeof r.ingress) =>
        rules?.map((x) => (r.tier === "Baseline" && x.action === "Pass" ? { ...x, action: "Deny" } : x));
      return {
        kind: "ClusterSecurityPolicy",
        metadata: { name: `csp${i}` },
        spec: {
          tier: r.tier,
          priority: r.priority,
          endpointSelector: r.sel,
          ...(r.nsSel ? { namespaceSelector: r.nsSel } : {}),
          ingress: fix(r.ingress),
          egress: fix(r.egress),
        },
      } as ClusterSecurityPolicy;
    });

// SIG Network's policy API (policy.networking.k8s.io; semantics in operator/src/policy/upstream.ts).
// Only objects the API server admits (crds/upstream/*.yaml): subjects and peers with exactly one field,
// 1–2 peers and ports per rule (within the 25/100-item limits), priorities 0–3 (ties with each other
// and with ClusterSecurityPolicy, ordered by kind then name), ranges with start < end, networks as a set
// of valid CIDRs, and no named port in an egress rule with a networks or nodes peer (a CEL rule).
const upstreamNetworks = fc.uniqueArray(
  fc.constantFrom(
    "10.0.0.0/16",
    "10.0.1.0/24",
    "10.0.1.0/26",
    "0.0.0.0/0",
    "10.0.0.0/8",
    "192.168.0.0/16",
    "10.0.2.7/32",
    "172.18.0.0/24",
    "fd00::/8",
    "fd00::/120",
    "::/0",
  ),
  { minLength: 1, maxLength: 2 },
);
// v1alpha2 NamespacedPod: podSelector required, namespaceSelector optional (unset: every namespace).
// v1alpha1 requires both.
const upstreamPods = (v1alpha1: boolean) =>
  v1alpha1
    ? fc.record({ namespaceSelector: nsSel, podSelector: sel })
    : fc
        .record({ namespaceSelector: fc.option(nsSel, { nil: undefined, freq: 3 }), podSelector: sel })
        .map(({ namespaceSelector, podSelector }) =>
          namespaceSelector === undefined ? { podSelector } : { namespaceSelector, podSelector },
        );
const upstreamSubject = (v1alpha1: boolean) =>
  fc.oneof(
    nsSel.map((namespaces) => ({ namespaces })),
    upstreamPods(v1alpha1).map((pods) => ({ pods })),
  );
type UpstreamPeer = {
  namespaces?: object;
  pods?: object;
  networks?: string[];
  nodes?: object;
};
const upstreamPeer = (egress: boolean, v1alpha1: boolean): fc.Arbitrary<UpstreamPeer> =>
  egress
    ? fc.oneof(
        { arbitrary: nsSel.map((namespaces) => ({ namespaces })), weight: 2 },
        { arbitrary: upstreamPods(v1alpha1).map((pods) => ({ pods })), weight: 2 },
        { arbitrary: upstreamNetworks.map((networks) => ({ networks })), weight: 2 },
        { arbitrary: nodeSel.map((nodes) => ({ nodes })), weight: 1 },
      )
    : fc.oneof(
        nsSel.map((namespaces) => ({ namespaces })),
        upstreamPods(v1alpha1).map((pods) => ({ pods })),
      );
// Ports as both versions spell them, tagged so the CEL rule can drop named ones.
type UpstreamPort = { named: boolean; v1alpha1: object; v1alpha2: object };
const number = (protocol: "TCP" | "UDP" | "SCTP", port: number, omitTcp = false): UpstreamPort => ({
  named: false,
  // protocol defaults to TCP: the API server fills it in when it is left out.
  v1alpha1: { portNumber: omitTcp ? { port } : { protocol, port } },
  v1alpha2: { [protocol.toLowerCase()]: { destinationPort: { number: port } } },
});
const span = (protocol: "TCP" | "UDP" | "SCTP", start: number, end: number): UpstreamPort => ({
  named: false,
  v1alpha1: { portRange: { protocol, start, end } },
  v1alpha2: { [protocol.toLowerCase()]: { destinationPort: { range: { start, end } } } },
});
const named = (name: string): UpstreamPort => ({
  named: true,
  v1alpha1: { namedPort: name },
  v1alpha2: { destinationNamedPort: name },
});
const upstreamPort = fc.constantFrom(
  number("TCP", 80),
  number("TCP", 80, true),
  number("TCP", 8080),
  span("TCP", 80, 90),
  span("TCP", 84, 8080),
  span("TCP", 1024, 65535),
  number("UDP", 53),
  span("UDP", 53, 80),
  number("SCTP", 80),
  span("SCTP", 79, 81),
  named("http"),
  named("dns"),
);
const upstreamRule = (egress: boolean, v1alpha1: boolean, actions: readonly string[]) =>
  fc
    .record({
      action: fc.constantFrom(...actions),
      peers: fc.array(upstreamPeer(egress, v1alpha1), { minLength: 1, maxLength: 2 }),
      ports: fc.option(fc.array(upstreamPort, { minLength: 1, maxLength: 2 }), { nil: undefined }),
    })
    .map((r) => {
      const noNamed = r.peers.some((p) => p.networks !== undefined || p.nodes !== undefined);
      const kept = noNamed ? r.ports?.filter((x) => !x.named) : r.ports;
      // An emptied list is left out (the schema wants at least one entry): every port.
      const ports = kept?.length ? kept.map((x) => (v1alpha1 ? x.v1alpha1 : x.v1alpha2)) : undefined;
      return {
        action: r.action,
        [egress ? "to" : "from"]: r.peers,
        ...(ports ? (v1alpha1 ? { ports } : { protocols: ports }) : {}),
      };
    });
const upstreamRules = (egress: boolean, v1alpha1: boolean, actions: readonly string[]) =>
  fc.option(fc.array(upstreamRule(egress, v1alpha1, actions), { maxLength: 2 }), { nil: undefined });

export const clusterNetworkPolicy = (i: number) =>
  fc
    .record({
      tier: fc.constantFrom("Admin" as const, "Baseline" as const),
      priority: fc.integer({ min: 0, max: 3 }),
      subject: upstreamSubject(false),
      ingress: upstreamRules(false, false, ["Accept", "Deny", "Pass"]),
      egress: upstreamRules(true, false, ["Accept", "Deny", "Pass"]),
    })
    .map(
      (r) =>
        ({
          kind: "ClusterNetworkPolicy",
          metadata: { name: `cnp${i}` },
          spec: {
            tier: r.tier,
            priority: r.priority,
            subject: r.subject,
            ...(r.ingress ? { ingress: r.ingress } : {}),
            ...(r.egress ? { egress: r.egress } : {}),
          },
        }) as ClusterNetworkPolicy,
    );

export const adminNetworkPolicy = (i: number) =>
  fc
    .record({
      priority: fc.integer({ min: 0, max: 3 }),
      subject: upstreamSubject(true),
      ingress: upstreamRules(false, true, ["Allow", "Deny", "Pass"]),
      egress: upstreamRules(true, true, ["Allow", "Deny", "Pass"]),
    })
    .map(
      (r) =>
        ({
          kind: "AdminNetworkPolicy",
          metadata: { name: `anp${i}` },
          spec: {
            priority: r.priority,
            subject: r.subject,
            ...(r.ingress ? { ingress: r.ingress } : {}),
            ...(r.egress ? { egress: r.egress } : {}),
          },
        }) as AdminNetworkPolicy,
    );

// The API server admits one, named default; it has no priority and no Pass.
export const baselineAdminNetworkPolicy = fc
  .record({
    subject: upstreamSubject(true),
    ingress: upstreamRules(false, true, ["Allow", "Deny"]),
    egress: upstreamRules(true, true, ["Allow", "Deny"]),
  })
  .map(
    (r) =>
      ({
        kind: "BaselineAdminNetworkPolicy",
        metadata: { name: "default" },
        spec: {
          subject: r.subject,
          ...(r.ingress ? { ingress: r.ingress } : {}),
          ...(r.egress ? { egress: r.egress } : {}),
        },
      }) as BaselineAdminNetworkPolicy,
  );

const podArb = fc.record({
  ns: fc.constantFrom("a", "b"),
  app: fc.constantFrom("web", "db", "api"),
  node: fc.constantFrom(...NODES),
  ip: fc.constantFrom("10.0.1.", "10.0.2.", "10.9.0."),
  http: fc.constantFrom(80, 8080, 81),
  v6: fc.boolean(),
});

export const cluster = fc
  .record({
    teams: fc.record({ a: fc.constantFrom("x", "y"), b: fc.constantFrom("x", "y") }),
    pods: fc.array(podArb, { minLength: 2, maxLength: 6 }),
    nps: fc.integer({ min: 0, max: 3 }),
    sps: fc.integer({ min: 0, max: 2 }),
    csps: fc.integer({ min: 0, max: 3 }),
    // The upstream kinds: in about half the clusters none at all, so the others keep their coverage.
    upstream: fc.boolean(),
    cnps: fc.integer({ min: 0, max: 2 }),
    anps: fc.integer({ min: 0, max: 2 }),
    banp: fc.boolean(),
    // Audit mode (policy/enforcement.ts): in about half the clusters, each policy by its bit of the mask.
    audit: fc.boolean(),
    auditMask: fc.integer({ min: 0, max: 0xffff }),
  })
  .chain((c) =>
    fc
      .record({
        namespaces: fc.constant([ns("a", { team: c.teams.a }), ns("b", { team: c.teams.b })]),
        pods: fc.constant(
          c.pods.map((p, i) =>
            pod(
              p.ns,
              `p${i}`,
              { app: p.app },
              p.v6 ? [`${p.ip}${i + 1}`, `fd00::${i + 1}`] : `${p.ip}${i + 1}`,
              p.node,
              [
                { name: "http", containerPort: p.http },
                { name: "dns", containerPort: 53, protocol: "UDP" },
              ],
            ),
          ),
        ),
        nodes: fc.constant(NODE_OBJECTS),
        networkPolicies: fc.tuple(...Array.from({ length: c.nps }, (_, i) => networkPolicy(i))),
        securityPolicies: fc.tuple(...Array.from({ length: c.sps }, (_, i) => securityPolicy(i))),
        clusterSecurityPolicies: fc.tuple(...Array.from({ length: c.csps }, (_, i) => clusterPolicy(i))),
        clusterNetworkPolicies: fc.tuple(
          ...Array.from({ length: c.upstream ? c.cnps : 0 }, (_, i) => clusterNetworkPolicy(i)),
        ),
        adminNetworkPolicies: fc.tuple(
          ...Array.from({ length: c.upstream ? c.anps : 0 }, (_, i) => adminNetworkPolicy(i)),
        ),
        baselineAdminNetworkPolicies: fc.tuple(
          ...Array.from({ length: c.upstream && c.banp ? 1 : 0 }, () => baselineAdminNetworkPolicy),
        ),
      })
      .map((x) => (c.audit ? withAuditMask(x, c.auditMask) : x)),
  );

type PolicyLike = {
  kind: string;
  metadata: { name?: string; annotations?: Record<string, string> };
  spec?: object;
};

// One policy in audit mode, as its kind spells it: spec.enforcement for Sluice's kinds, the annotation
// for the others.
export function audited<T extends PolicyLike>(p: T): T {
  if (p.kind === "SecurityPolicy" || p.kind === "ClusterSecurityPolicy")
    return { ...p, spec: { ...p.spec, enforcement: "Audit" } };
  return { ...p, metadata: { ...p.metadata, annotations: { [ENFORCEMENT_ANNOTATION]: "Audit" } } };
}

// The cluster with the policies whose bit of mask is set (in the order of the kinds) in audit mode.
function withAuditMask<C extends Record<string, unknown>>(c: C, mask: number): C {
  let bit = 0;
  const out: Record<string, unknown> = { ...c };
  for (const kind of [
    "networkPolicies",
    "securityPolicies",
    "clusterSecurityPolicies",
    "clusterNetworkPolicies",
    "adminNetworkPolicies",
    "baselineAdminNetworkPolicies",
  ])
    out[kind] = (c[kind] as PolicyLike[]).map((p) => (mask & (1 << (bit++ % 16)) ? audited(p) : p));
  return out as C;
}

export const PROBES: Array<[number, number]> = [
  [6, 80],
  [6, 85],
  [6, 90],
  [6, 91],
  [6, 8080],
  [6, 81],
  [6, 1024],
  [17, 53],
  [17, 80],
  [132, 80],
  [1, 8 << 8],
  [1, (8 << 8) | 1],
  [1, 0],
  [47, 0],
];

// The generated cluster as the classifyObjects() shape.
export function asObjects(c: {
  namespaces: readonly Namespace[];
  pods: readonly Pod[];
  nodes: readonly Node[];
  networkPolicies: readonly NetworkPolicy[];
  securityPolicies: readonly SecurityPolicy[];
  clusterSecurityPolicies: readonly ClusterSecurityPolicy[];
  clusterNetworkPolicies?: readonly ClusterNetworkPolicy[];
  adminNetworkPolicies?: readonly AdminNetworkPolicy[];
  baselineAdminNetworkPolicies?: readonly BaselineAdminNetworkPolicy[];
}) {
  return {
    namespaces: [...c.namespaces],
    pods: [...c.pods],
    nodes: [...c.nodes],
    networkPolicies: [...c.networkPolicies],
    securityPolicies: [...c.securityPolicies],
    clusterSecurityPolicies: [...c.clusterSecurityPolicies],
    clusterNetworkPolicies: [...(c.clusterNetworkPolicies ?? [])],
    adminNetworkPolicies: [...(c.adminNetworkPolicies ?? [])],
    baselineAdminNetworkPolicies: [...(c.baselineAdminNetworkPolicies ?? [])],
    securityIdentities: [],
    other: [],
  };
}

// A generated cluster ready to probe: its inputs, every node's compiled state, the reference, where
// each pod address is, and the addresses to probe (every pod's, then EXTERNAL_IPS).
export function compiledCluster(c: Parameters<typeof asObjects>[0], allowLocalhost: AllowLocalhost) {
  const inputs = inputsFromObjects(asObjects(c));
  const ref = new ReferenceEvaluator(inputs, { allowLocalhost, hostAddresses: NODE_ADDRESSES });
  const states = new Map<string, MapState>(
    NODES.map((n) => [
      n,
      compile(inputs, { node: n, allowLocalhost, hostAddresses: NODE_ADDRESSES.get(n) }).state,
    ]),
  );
  const podAt = new Map<string, { key: string; node: string }>();
  for (const p of c.pods)
    for (const ip of podIps(p))
      podAt.set(ip, { key: `${p.metadata.namespace}/${p.metadata.name}`, node: p.spec!.nodeName! });
  return { inputs, ref, states, podAt, ips: [...podAt.keys(), ...EXTERNAL_IPS] };
}
