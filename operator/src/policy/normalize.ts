// The policy kinds (NetworkPolicy, SecurityPolicy, ClusterSecurityPolicy, and SIG Network's
// ClusterNetworkPolicy, AdminNetworkPolicy and BaselineAdminNetworkPolicy, in upstream.ts) reduced to
// one rule model. Both the compiler and the reference evaluator start from here; they differ in how
// they match peers (identities vs. concrete pods and addresses).
import type { LabelSelector, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort } from "../api/k8s.ts";
import type { ClusterSecurityPolicy, SecurityPolicy } from "../api/types.generated.ts";
import { type Prefix, formatPrefix, parsePrefix } from "./cidr.ts";
import { auditMode } from "./enforcement.ts";
import { fnv1a32 } from "./hash.ts";
import { type Direction, ReservedRuleId } from "./mapstate.ts";
import {
  normalizeAdminNetworkPolicy,
  normalizeBaselineAdminNetworkPolicy,
  normalizeClusterNetworkPolicy,
  type UpstreamPolicy,
} from "./upstream.ts";

export type Tier = "admin" | "namespace" | "baseline";
export type Action = "allow" | "deny" | "pass";
export type ProtocolName = "TCP" | "UDP" | "SCTP" | "ICMP" | "ICMPv6" | "ANY";
export type Entity = "world" | "cluster" | "host" | "remote-node" | "all";
export type PolicyKind =
  | "NetworkPolicy"
  | "SecurityPolicy"
  | "ClusterSecurityPolicy"
  | "ClusterNetworkPolicy"
  | "AdminNetworkPolicy"
  | "BaselineAdminNetworkPolicy";
export type AnyPolicy = NetworkPolicy | SecurityPolicy | ClusterSecurityPolicy | UpstreamPolicy;

/** Every policy kind, in the order the compiler's inputs list them. */
export const POLICY_KINDS: readonly PolicyKind[] = [
  "NetworkPolicy",
  "SecurityPolicy",
  "ClusterSecurityPolicy",
  "ClusterNetworkPolicy",
  "AdminNetworkPolicy",
  "BaselineAdminNetworkPolicy",
];

export function isPolicyKind(kind: string): kind is PolicyKind {
  return (POLICY_KINDS as readonly string[]).includes(kind);
}

export interface PortSpec {
  protocol: ProtocolName;
  port?: number | string;
  endPort?: number;
  type?: number;
  code?: number;
  // Where the port is in the policy, when not `ports[j].port` of its rule (the upstream kinds).
  field?: string;
}

export type NamespaceMatch = { kind: "name"; name: string } | { kind: "selector"; selector: LabelSelector };

export interface EndpointPeer {
  // undefined: every pod of the matched namespaces.
  pod?: LabelSelector;
  // undefined: every namespace.
  namespace?: NamespaceMatch;
}

export interface CidrPeer {
  cidr: Prefix;
  except: Prefix[];
  // formatPrefix() of cidr and except, the keys identities carry.
  cidrKey: string;
  exceptKeys: string[];
}

// Nodes by label (the upstream kinds' and ClusterSecurityPolicy's `nodes` peer): every address of each
// selected node, whatever identity it has where the packet is judged: host on the node itself (its
// Node object's addresses and its own interfaces), remote-node elsewhere (its Node object's addresses).
// The peer universe refines host and remote-node by the node selectors that pick each node, so a
// selector that picks node A and not node B tells their addresses apart (universe.ts).
export interface NodePeer {
  selector: LabelSelector;
  // selectorKey() of the selector: what identities carry (PeerIdentity.nodeSelectors).
  key: string;
}

export interface PeerSpec {
  // Matches every peer (no peer given, or entity "all").
  any: boolean;
  endpoints: EndpointPeer[];
  cidrs: CidrPeer[];
  entities: Entity[];
  nodes: NodePeer[];
}

/** A label selector as a canonical string: equal for selectors that are written alike (key order aside). */
export function selectorKey(s: LabelSelector): string {
  const labels = Object.entries(s.matchLabels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const exprs = (s.matchExpressions ?? [])
    .map((e) => JSON.stringify([e.key, e.operator, [...(e.values ?? [])].sort()]))
    .sort();
  return JSON.stringify([labels, exprs]);
}

export function nodePeer(selector: LabelSelector): NodePeer {
  return { selector, key: selectorKey(selector) };
}

export function emptyPeers(): PeerSpec {
  return { any: false, endpoints: [], cidrs: [], entities: [], nodes: [] };
}

export interface RuleRef {
  kind: PolicyKind;
  namespace?: string;
  name: string;
  direction: Direction;
  index: number;
}

export interface NormRule {
  id: number;
  ref: RuleRef;
  direction: Direction;
  action: Action;
  peers: PeerSpec;
  // undefined: every port of every protocol.
  ports?: PortSpec[];
}

export interface NormPolicy {
  key: string;
  kind: PolicyKind;
  namespace?: string;
  name: string;
  tier: Tier;
  priority: number;
  // Which pods the policy applies to: namespace by name (namespace level) or selector (cluster).
  subjectNamespace?: NamespaceMatch;
  subjectPods: LabelSelector;
  // Namespace level only: the selected pods are default-deny in these directions.
  isolates: { ingress: boolean; egress: boolean };
  rules: NormRule[];
  // Audit mode (enforcement.ts): the policy changes no packet's fate; the compiler only reports where it
  // would (compile.ts, audit.ts).
  audit: boolean;
  errors: Array<{ field: string; message: string }>;
}

export function policyKey(kind: PolicyKind, namespace: string | undefined, name: string): string {
  return namespace === undefined ? `${kind}/${name}` : `${kind}/${namespace}/${name}`;
}

export function ruleId(ref: RuleRef): number {
  // 0 means "the endpoint default" in map entries, and ReservedRuleId.LOCALHOST the allow-localhost
  // entry: a hash that lands on one of them becomes 1.
  const h = fnv1a32(`${policyKey(ref.kind, ref.namespace, ref.name)}#${ref.direction}#${ref.index}`);
  return h === ReservedRuleId.DEFAULT || h === ReservedRuleId.LOCALHOST ? 1 : h;
}

export function cidrPeer(
  cidr: string,
  except: readonly string[] | undefined,
  field: string,
  errors: NormPolicy["errors"],
): CidrPeer | undefined {
  const p = parsePrefix(cidr);
  if (!p) {
    errors.push({ field, message: `invalid CIDR ${JSON.stringify(cidr)}` });
    return undefined;
  }
  const ex: Prefix[] = [];
  for (const [i, e] of (except ?? []).entries()) {
    const q = parsePrefix(e);
    if (!q) errors.push({ field: `${field}.except[${i}]`, message: `invalid CIDR ${JSON.stringify(e)}` });
    else ex.push(q);
  }
  return { cidr: p, except: ex, cidrKey: formatPrefix(p), exceptKeys: ex.map(formatPrefix) };
}

function npPort(p: NetworkPolicyPort): PortSpec {
  return { protocol: p.protocol ?? "TCP", port: p.port, endPort: p.endPort };
}

function npPeers(
  peers: NetworkPolicyPeer[] | undefined,
  ns: string,
  field: string,
  errors: NormPolicy["errors"],
) {
  const out = emptyPeers();
  // An empty or missing from/to list matches every peer.
  if (!peers || peers.length === 0) return { ...out, any: true };
  for (const [i, p] of peers.entries()) {
    if (p.ipBlock) {
      const c = cidrPeer(p.ipBlock.cidr, p.ipBlock.except, `${field}[${i}].ipBlock`, errors);
      if (c) out.cidrs.push(c);
    } else if (p.podSelector || p.namespaceSelector) {
      out.endpoints.push({
        pod: p.podSelector,
        namespace: p.namespaceSelector
          ? { kind: "selector", selector: p.namespaceSelector }
          : { kind: "name", name: ns },
      });
    } else {
      errors.push({
        field: `${field}[${i}]`,
        message: "a peer needs podSelector, namespaceSelector or ipBlock",
      });
    }
  }
  return out;
}

export function normalizeNetworkPolicy(np: NetworkPolicy): NormPolicy {
  const ns = np.metadata.namespace ?? "default";
  const name = np.metadata.name ?? "";
  const errors: NormPolicy["errors"] = [];
  const spec = np.spec ?? { podSelector: {} };
  // The API server defaults policyTypes to Ingress, plus Egress when egress rules exist.
  const types = spec.policyTypes ?? [
    "Ingress",
    ...((spec.egress?.length ?? 0) > 0 ? ["Egress" as const] : []),
  ];
  const ingress = types.includes("Ingress");
  const egress = types.includes("Egress");
  const rules: NormRule[] = [];
  const add = (
    direction: Direction,
    index: number,
    peers: PeerSpec,
    ports: NetworkPolicyPort[] | undefined,
  ) => {
    const ref: RuleRef = { kind: "NetworkPolicy", namespace: ns, name, direction, index };
    rules.push({
      id: ruleId(ref),
      ref,
      direction,
      action: "allow",
      peers,
      ports: ports && ports.length > 0 ? ports.map(npPort) : undefined,
    });
  };
  if (ingress)
    for (const [i, r] of (spec.ingress ?? []).entries())
      add("ingress", i, npPeers(r.from, ns, `spec.ingress[${i}].from`, errors), r.ports);
  if (egress)
    for (const [i, r] of (spec.egress ?? []).entries())
      add("egress", i, npPeers(r.to, ns, `spec.egress[${i}].to`, errors), r.ports);
  return {
    key: policyKey("NetworkPolicy", ns, name),
    kind: "NetworkPolicy",
    namespace: ns,
    name,
    tier: "namespace",
    priority: 0,
    subjectNamespace: { kind: "name", name: ns },
    subjectPods: spec.podSelector ?? {},
    isolates: { ingress, egress },
    rules,
    audit: auditMode(np, errors),
    errors,
  };
}

// A SecurityPolicy rule, or a ClusterSecurityPolicy one (which may also have node peers).
type SluiceRule = NonNullable<SecurityPolicy["spec"]["ingress"]>[number] & {
  nodes?: NonNullable<ClusterSecurityPolicy["spec"]["ingress"]>[number]["nodes"];
};

function sluiceRule(
  kind: PolicyKind,
  ns: string | undefined,
  name: string,
  direction: Direction,
  index: number,
  r: SluiceRule,
  errors: NormPolicy["errors"],
): NormRule {
  const field = `spec.${direction}[${index}]`;
  const peers = emptyPeers();
  for (const e of r.endpoints ?? []) {
    const namespace: NamespaceMatch | undefined = e.namespaceSelector
      ? { kind: "selector", selector: e.namespaceSelector }
      : ns === undefined
        ? undefined
        : { kind: "name", name: ns };
    peers.endpoints.push({ pod: e.endpointSelector, namespace });
  }
  for (const [i, c] of (r.cidrs ?? []).entries()) {
    const p = cidrPeer(c.cidr, c.except, `${field}.cidrs[${i}]`, errors);
    if (p) peers.cidrs.push(p);
  }
  for (const e of r.entities ?? []) {
    if (e === "all") peers.any = true;
    else peers.entities.push(e);
  }
  // Node peers are ClusterSecurityPolicy's: a SecurityPolicy's schema has none (the API server prunes it).
  const nodes = kind === "ClusterSecurityPolicy" ? (r.nodes ?? []) : [];
  for (const n of nodes) peers.nodes.push(nodePeer(n));
  const anyGiven =
    (r.endpoints?.length ?? 0) + (r.cidrs?.length ?? 0) + (r.entities?.length ?? 0) + nodes.length > 0;
  if (!anyGiven) peers.any = true;
  const ref: RuleRef = { kind, namespace: ns, name, direction, index };
  const action = r.action === "Deny" ? "deny" : r.action === "Pass" ? "pass" : "allow";
  if (action === "pass" && kind !== "ClusterSecurityPolicy")
    errors.push({ field: `${field}.action`, message: "Pass is only valid in a ClusterSecurityPolicy" });
  return {
    id: ruleId(ref),
    ref,
    direction,
    // A misplaced Pass is rejected by the schema; if one gets here, it allows nothing.
    action: action === "pass" && kind !== "ClusterSecurityPolicy" ? "deny" : action,
    peers,
    ports:
      r.ports && r.ports.length > 0
        ? r.ports.map((p) => ({
            protocol: p.protocol ?? "ANY",
            port: p.port,
            endPort: p.endPort,
            type: p.type,
            code: p.code,
          }))
        : undefined,
  };
}

export function normalizeSecurityPolicy(sp: SecurityPolicy): NormPolicy {
  const ns = sp.metadata.namespace ?? "default";
  const name = sp.metadata.name ?? "";
  const errors: NormPolicy["errors"] = [];
  const spec = sp.spec;
  const rules = [
    ...(spec.ingress ?? []).map((r, i) => sluiceRule("SecurityPolicy", ns, name, "ingress", i, r, errors)),
    ...(spec.egress ?? []).map((r, i) => sluiceRule("SecurityPolicy", ns, name, "egress", i, r, errors)),
  ];
  return {
    key: policyKey("SecurityPolicy", ns, name),
    kind: "SecurityPolicy",
    namespace: ns,
    name,
    tier: "namespace",
    priority: 0,
    subjectNamespace: { kind: "name", name: ns },
    subjectPods: spec.endpointSelector ?? {},
    isolates: { ingress: spec.ingress !== undefined, egress: spec.egress !== undefined },
    rules,
    audit: auditMode(sp, errors),
    errors,
  };
}

export function normalizeClusterSecurityPolicy(csp: ClusterSecurityPolicy): NormPolicy {
  const name = csp.metadata.name ?? "";
  const errors: NormPolicy["errors"] = [];
  const spec = csp.spec;
  const rules = [
    ...(spec.ingress ?? []).map((r, i) =>
      sluiceRule("ClusterSecurityPolicy", undefined, name, "ingress", i, r, errors),
    ),
    ...(spec.egress ?? []).map((r, i) =>
      sluiceRule("ClusterSecurityPolicy", undefined, name, "egress", i, r, errors),
    ),
  ];
  const tier = spec.tier === "Baseline" ? "baseline" : "admin";
  if (tier === "baseline")
    for (const r of rules)
      if (r.action === "pass") {
        errors.push({
          field: `spec.${r.direction}[${r.ref.index}].action`,
          message: "Pass is only valid in the Admin tier",
        });
        r.action = "deny";
      }
  return {
    key: policyKey("ClusterSecurityPolicy", undefined, name),
    kind: "ClusterSecurityPolicy",
    name,
    tier,
    priority: spec.priority ?? 0,
    subjectNamespace: spec.namespaceSelector
      ? { kind: "selector", selector: spec.namespaceSelector }
      : undefined,
    subjectPods: spec.endpointSelector ?? {},
    isolates: { ingress: false, egress: false },
    rules,
    audit: auditMode(csp, errors),
    errors,
  };
}

export function normalizePolicy(p: AnyPolicy): NormPolicy {
  switch (p.kind) {
    case "NetworkPolicy":
      return normalizeNetworkPolicy(p);
    case "SecurityPolicy":
      return normalizeSecurityPolicy(p);
    case "ClusterNetworkPolicy":
      return normalizeClusterNetworkPolicy(p);
    case "AdminNetworkPolicy":
      return normalizeAdminNetworkPolicy(p);
    case "BaselineAdminNetworkPolicy":
      return normalizeBaselineAdminNetworkPolicy(p);
    default:
      return normalizeClusterSecurityPolicy(p);
  }
}

const TIER_RANK: Record<Tier, number> = { admin: 0, namespace: 1, baseline: 2 };

// The evaluation order of policies: Admin tier by priority, namespace level, Baseline by priority;
// ties by key, which starts with the kind, so the order is total and deterministic. Equal priorities
// in one tier therefore go by kind (AdminNetworkPolicy, BaselineAdminNetworkPolicy,
// ClusterNetworkPolicy, ClusterSecurityPolicy), then by name: the upstream API leaves ties to the
// implementation. A BaselineAdminNetworkPolicy has no priority and comes after every other Baseline
// policy (upstream.ts BANP_PRIORITY).
export function comparePolicies(a: NormPolicy, b: NormPolicy): number {
  return (
    TIER_RANK[a.tier] - TIER_RANK[b.tier] ||
    a.priority - b.priority ||
    (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)
  );
}
