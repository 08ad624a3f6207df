// SIG Network's policy API (policy.networking.k8s.io) reduced to the rule model of normalize.ts:
// ClusterNetworkPolicy v1alpha2, and AdminNetworkPolicy and BaselineAdminNetworkPolicy v1alpha1 (the
// last v1alpha1 API, network-policy-api v0.1.x). They land in the tiers ClusterSecurityPolicy uses, so
// compile.ts, reference.ts and lookup.ts need nothing of their own:
//   - ClusterNetworkPolicy tier Admin and AdminNetworkPolicy: the Admin tier, ordered with
//     ClusterSecurityPolicy tier Admin by comparePolicies (priority, then kind, then name);
//   - ClusterNetworkPolicy tier Baseline: the Baseline tier, ordered the same way;
//   - BaselineAdminNetworkPolicy (no priority: the cluster's one default): after every other
//     Baseline-tier policy (BANP_PRIORITY).
// Accept (v1alpha2) is Allow. Pass in the Admin tier skips the rest of the tier; in the Baseline tier
// the next tier is the default, which allows.
//
// What Sluice cannot enforce is never dropped silently. The policy gets an error naming the field (so
// `sluice validate` fails and the operator reports it Accepted=False), and the rule fails closed as the
// API says a peer it cannot read must: an Accept/Allow rule's unreadable peer matches nothing, a
// Deny/Pass rule with one denies every peer on every port. domainNames peers are such a peer. Node peers
// are node selectors (normalize.ts NodePeer): the peer universe tells each node's addresses apart by
// the selectors that pick it, so the rule holds per node, host-network pods included.
import type { LabelSelector } from "../api/k8s.ts";
import type {
  AdminNetworkPolicy,
  BaselineAdminNetworkPolicy,
  ClusterNetworkPolicy,
} from "../api/types.generated.ts";
import { auditMode } from "./enforcement.ts";
import type { Direction } from "./mapstate.ts";
import {
  type Action,
  type CidrPeer,
  cidrPeer,
  emptyPeers,
  type NormPolicy,
  type NormRule,
  nodePeer,
  type PeerSpec,
  type PolicyKind,
  type PortSpec,
  policyKey,
  type RuleRef,
  ruleId,
  type Tier,
} from "./normalize.ts";

export type UpstreamPolicy = ClusterNetworkPolicy | AdminNetworkPolicy | BaselineAdminNetworkPolicy;

/** The BaselineAdminNetworkPolicy's place in the Baseline tier: after every priority (0–1000) of the others. */
export const BANP_PRIORITY = 1001;

type Errors = NormPolicy["errors"];

interface RawSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}

interface RawNamespacedPod {
  namespaceSelector?: RawSelector;
  podSelector?: RawSelector;
}

// The union of every version's peer: which fields a kind has is its CRD's business; a field the
// schema does not have never gets here from the API server, and from a file it is an error like any.
interface RawPeer {
  namespaces?: RawSelector;
  pods?: RawNamespacedPod;
  nodes?: RawSelector;
  networks?: string[];
  domainNames?: string[];
}

interface RawPortNumber {
  protocol?: string;
  port?: number;
}
interface RawPortRange {
  protocol?: string;
  start?: number;
  end?: number;
}
interface RawDestinationPort {
  number?: number;
  range?: { start?: number; end?: number };
}

interface RawRule {
  action?: string;
  peers: RawPeer[] | undefined;
  // v1alpha1 ports or v1alpha2 protocols, already reduced to port specs (undefined: every port).
  ports: PortSpec[] | undefined;
  // Some port could not be read (it was left out, and has an error).
  portsFailed: boolean;
}

const OPERATORS = new Set(["In", "NotIn", "Exists", "DoesNotExist"]);
// An `In` with no values: a selector that matches no label set.
const SELECTS_NOTHING: LabelSelector = {
  matchExpressions: [{ key: "sluice.dev/none", operator: "In", values: [] }],
};

/** The selector as a LabelSelector, or the reason Kubernetes' label selector parsing would refuse it. */
function labelSelector(s: RawSelector | undefined): LabelSelector | string {
  for (const [i, e] of (s?.matchExpressions ?? []).entries()) {
    const n = e.values?.length ?? 0;
    if (!OPERATORS.has(e.operator))
      return `matchExpressions[${i}].operator: ${JSON.stringify(e.operator)} is not In, NotIn, Exists or DoesNotExist`;
    if ((e.operator === "In" || e.operator === "NotIn") && n === 0)
      return `matchExpressions[${i}].values: must be non-empty for ${e.operator}`;
    if ((e.operator === "Exists" || e.operator === "DoesNotExist") && n > 0)
      return `matchExpressions[${i}].values: must be empty for ${e.operator}`;
  }
  return (s ?? {}) as LabelSelector;
}

function selectorOrError(
  s: RawSelector | undefined,
  field: string,
  errors: Errors,
): LabelSelector | undefined {
  const sel = labelSelector(s);
  if (typeof sel !== "string") return sel;
  errors.push({
    field: `${field}.${sel.slice(0, sel.indexOf(":"))}`,
    message: sel.slice(sel.indexOf(":") + 2),
  });
  return undefined;
}

// One peer into `into`; false when the peer cannot be enforced (the caller fails the rule closed).
function peer(p: RawPeer, field: string, into: PeerSpec, errors: Errors): boolean {
  const given = Object.keys(p ?? {}).filter((k) => (p as Record<string, unknown>)[k] !== undefined);
  if (given.length !== 1) {
    errors.push({
      field,
      message:
        given.length === 0
          ? "a peer needs exactly one field: none is set (a field this version of Sluice does not know?)"
          : `a peer needs exactly one field, not ${given.join(" and ")}`,
    });
    return false;
  }
  if (p.namespaces) {
    const ns = selectorOrError(p.namespaces, `${field}.namespaces`, errors);
    if (!ns) return false;
    into.endpoints.push({ namespace: { kind: "selector", selector: ns } });
    return true;
  }
  if (p.pods) {
    const ns = selectorOrError(p.pods.namespaceSelector, `${field}.pods.namespaceSelector`, errors);
    const pod = selectorOrError(p.pods.podSelector, `${field}.pods.podSelector`, errors);
    if (!ns || !pod) return false;
    into.endpoints.push({ namespace: { kind: "selector", selector: ns }, pod });
    return true;
  }
  if (p.networks) {
    let ok = true;
    for (const [i, c] of p.networks.entries()) {
      const before = errors.length;
      const q: CidrPeer | undefined = cidrPeer(c, undefined, `${field}.networks[${i}]`, errors);
      if (q) into.cidrs.push(q);
      ok &&= errors.length === before;
    }
    return ok;
  }
  if (p.nodes) {
    const sel = selectorOrError(p.nodes, `${field}.nodes`, errors);
    if (!sel) return false;
    into.nodes.push(nodePeer(sel));
    return true;
  }
  errors.push({
    field: `${field}.${given[0]}`,
    message:
      given[0] === "domainNames"
        ? "domainNames peers are not supported by Sluice (it has no DNS-aware datapath)"
        : "not a peer field Sluice knows",
  });
  return false;
}

const PORT_PROTOCOLS = new Set(["TCP", "UDP", "SCTP"]);

function portProtocol(
  p: string | undefined,
  field: string,
  errors: Errors,
): PortSpec["protocol"] | undefined {
  const proto = p ?? "TCP";
  if (PORT_PROTOCOLS.has(proto)) return proto as PortSpec["protocol"];
  errors.push({ field, message: `${JSON.stringify(proto)} is not TCP, UDP or SCTP` });
  return undefined;
}

function range(
  protocol: PortSpec["protocol"],
  start: number | undefined,
  end: number | undefined,
  field: string,
  errors: Errors,
): PortSpec | undefined {
  if (start === undefined || end === undefined || start > end) {
    errors.push({
      field,
      message: "a port range needs start and end, start not above end: it matches nothing",
    });
    return undefined;
  }
  return { protocol, port: start, endPort: end, field };
}

type V1Alpha1Port = NonNullable<NonNullable<AdminNetworkPolicy["spec"]["ingress"]>[number]["ports"]>[number];

// v1alpha1 `ports`: portNumber, portRange or namedPort. An entry Sluice cannot read matches nothing.
function v1alpha1Ports(
  ports: V1Alpha1Port[] | undefined,
  field: string,
  errors: Errors,
): PortSpec[] | undefined {
  if (ports === undefined) return undefined;
  const out: PortSpec[] = [];
  for (const [j, p] of ports.entries()) {
    const f = `${field}.ports[${j}]`;
    const set = Object.keys(p).filter((k) => (p as Record<string, unknown>)[k] !== undefined);
    if (set.length !== 1) {
      errors.push({ field: f, message: "a port needs exactly one of portNumber, portRange and namedPort" });
      continue;
    }
    if (p.portNumber) {
      const n = p.portNumber as RawPortNumber;
      const protocol = portProtocol(n.protocol, `${f}.portNumber.protocol`, errors);
      if (protocol && n.port !== undefined)
        out.push({ protocol, port: n.port, field: `${f}.portNumber.port` });
    } else if (p.portRange) {
      const r = p.portRange as RawPortRange;
      const protocol = portProtocol(r.protocol, `${f}.portRange.protocol`, errors);
      const spec = protocol && range(protocol, r.start, r.end, `${f}.portRange`, errors);
      if (spec) out.push(spec);
    } else if (typeof p.namedPort === "string")
      out.push({ protocol: "ANY", port: p.namedPort, field: `${f}.namedPort` });
  }
  return out;
}

type V1Alpha2Protocol = NonNullable<
  NonNullable<ClusterNetworkPolicy["spec"]["ingress"]>[number]["protocols"]
>[number];

// v1alpha2 `protocols`: tcp/udp/sctp with a destinationPort number or range, or destinationNamedPort.
function v1alpha2Protocols(
  protocols: V1Alpha2Protocol[] | undefined,
  field: string,
  errors: Errors,
): PortSpec[] | undefined {
  if (protocols === undefined) return undefined;
  const out: PortSpec[] = [];
  for (const [j, p] of protocols.entries()) {
    const f = `${field}.protocols[${j}]`;
    const set = Object.keys(p).filter((k) => (p as Record<string, unknown>)[k] !== undefined);
    if (set.length !== 1) {
      errors.push({
        field: f,
        message: "a protocol needs exactly one of tcp, udp, sctp and destinationNamedPort",
      });
      continue;
    }
    if (typeof p.destinationNamedPort === "string") {
      out.push({ protocol: "ANY", port: p.destinationNamedPort, field: `${f}.destinationNamedPort` });
      continue;
    }
    const key = set[0] as "tcp" | "udp" | "sctp";
    const protocol = key.toUpperCase() as PortSpec["protocol"];
    const dest = (p[key] as { destinationPort?: RawDestinationPort } | undefined)?.destinationPort;
    const df = `${f}.${key}.destinationPort`;
    // No destinationPort (the schema requires one): every port of the protocol.
    if (dest === undefined) out.push({ protocol, field: `${f}.${key}` });
    else if (dest.number !== undefined && dest.range === undefined)
      out.push({ protocol, port: dest.number, field: `${df}.number` });
    else if (dest.range !== undefined && dest.number === undefined) {
      const spec = range(protocol, dest.range.start, dest.range.end, `${df}.range`, errors);
      if (spec) out.push(spec);
    } else errors.push({ field: df, message: "a destinationPort needs exactly one of number and range" });
  }
  return out;
}

const ACTIONS: Record<string, Action> = { Accept: "allow", Allow: "allow", Deny: "deny", Pass: "pass" };

function rules(
  kind: PolicyKind,
  name: string,
  direction: Direction,
  raw: RawRule[],
  errors: Errors,
  passAllowed: boolean,
): NormRule[] {
  return raw.map((r, index) => {
    const field = `spec.${direction}[${index}]`;
    const ref: RuleRef = { kind, name, direction, index };
    let action = ACTIONS[r.action ?? ""];
    let failed = r.portsFailed;
    if (!action || (action === "pass" && !passAllowed)) {
      errors.push({
        field: `${field}.action`,
        message: `${JSON.stringify(r.action)} is not an action of ${kind}`,
      });
      action = "deny";
      failed = true;
    }
    const peers = emptyPeers();
    const list = r.peers ?? [];
    if (list.length === 0) {
      errors.push({
        field: `${field}.${direction === "ingress" ? "from" : "to"}`,
        message: "needs at least one peer",
      });
      failed = true;
    }
    for (const [i, p] of list.entries())
      if (!peer(p, `${field}.${direction === "ingress" ? "from" : "to"}[${i}]`, peers, errors)) failed = true;
    // Fail closed: an allow keeps only the peers it could read; a deny or pass denies everything.
    if (failed && action !== "allow")
      return {
        id: ruleId(ref),
        ref,
        direction,
        action: "deny",
        peers: { ...peers, any: true },
        ports: undefined,
      };
    return { id: ruleId(ref), ref, direction, action, peers, ports: r.ports };
  });
}

interface RawSubject {
  namespaces?: RawSelector;
  pods?: RawNamespacedPod;
}

function subject(
  s: RawSubject | undefined,
  errors: Errors,
): Pick<NormPolicy, "subjectNamespace" | "subjectPods"> {
  const set = Object.keys(s ?? {}).filter((k) => (s as Record<string, unknown>)[k] !== undefined);
  if (set.length !== 1 || (!s?.namespaces && !s?.pods)) {
    errors.push({
      field: "spec.subject",
      message: "needs exactly one of namespaces and pods: the policy selects no pod",
    });
    return { subjectPods: SELECTS_NOTHING };
  }
  if (s.namespaces) {
    const ns = selectorOrError(s.namespaces, "spec.subject.namespaces", errors);
    return ns
      ? { subjectNamespace: { kind: "selector", selector: ns }, subjectPods: {} }
      : { subjectPods: SELECTS_NOTHING };
  }
  const ns = selectorOrError(s.pods?.namespaceSelector, "spec.subject.pods.namespaceSelector", errors);
  const pods = selectorOrError(s.pods?.podSelector, "spec.subject.pods.podSelector", errors);
  return ns && pods
    ? { subjectNamespace: { kind: "selector", selector: ns }, subjectPods: pods }
    : { subjectPods: SELECTS_NOTHING };
}

function build(
  p: UpstreamPolicy,
  kind: PolicyKind,
  name: string,
  tier: Tier,
  priority: number,
  spec: { subject?: RawSubject },
  ingress: RawRule[],
  egress: RawRule[],
  errors: Errors,
): NormPolicy {
  const passAllowed = kind !== "BaselineAdminNetworkPolicy";
  return {
    key: policyKey(kind, undefined, name),
    kind,
    name,
    tier,
    priority,
    ...subject(spec.subject, errors),
    // Cluster-wide policies never isolate: what they do not decide falls through to the next tier.
    isolates: { ingress: false, egress: false },
    rules: [
      ...rules(kind, name, "ingress", ingress, errors, passAllowed),
      ...rules(kind, name, "egress", egress, errors, passAllowed),
    ],
    audit: auditMode(p, errors),
    errors,
  };
}

// The rules of one direction with their ports read; a port Sluice cannot read fails the rule closed.
function rawRules<R extends { action?: string }>(
  list: readonly R[] | undefined,
  direction: Direction,
  peersOf: (r: R) => RawPeer[] | undefined,
  portsOf: (r: R, field: string, errors: Errors) => PortSpec[] | undefined,
  errors: Errors,
): RawRule[] {
  return (list ?? []).map((r, i) => {
    const before = errors.length;
    const ports = portsOf(r, `spec.${direction}[${i}]`, errors);
    return { action: r.action, peers: peersOf(r), ports, portsFailed: errors.length > before };
  });
}

type CnpRule = NonNullable<ClusterNetworkPolicy["spec"]["ingress"]>[number];
type AnpRule = NonNullable<AdminNetworkPolicy["spec"]["ingress"]>[number];

const cnpPorts = (r: { protocols?: V1Alpha2Protocol[] }, f: string, e: Errors) =>
  v1alpha2Protocols(r.protocols, f, e);
const anpPorts = (r: { ports?: V1Alpha1Port[] }, f: string, e: Errors) => v1alpha1Ports(r.ports, f, e);
const from = (r: { from?: unknown }) => r.from as RawPeer[] | undefined;
const to = (r: { to?: unknown }) => r.to as RawPeer[] | undefined;

export function normalizeClusterNetworkPolicy(p: ClusterNetworkPolicy): NormPolicy {
  const name = p.metadata.name ?? "";
  const errors: Errors = [];
  const spec = p.spec ?? ({} as ClusterNetworkPolicy["spec"]);
  const ingress = rawRules<CnpRule>(spec.ingress, "ingress", from, cnpPorts, errors);
  const egress = rawRules(spec.egress, "egress", to, cnpPorts, errors);
  let tier: Tier = "admin";
  if (spec.tier === "Baseline") tier = "baseline";
  else if (spec.tier !== "Admin")
    errors.push({
      field: "spec.tier",
      message: `${JSON.stringify(spec.tier)} is not Admin or Baseline: taken as Admin`,
    });
  return build(p, "ClusterNetworkPolicy", name, tier, spec.priority ?? 0, spec, ingress, egress, errors);
}

export function normalizeAdminNetworkPolicy(p: AdminNetworkPolicy): NormPolicy {
  const name = p.metadata.name ?? "";
  const errors: Errors = [];
  const spec = p.spec ?? ({} as AdminNetworkPolicy["spec"]);
  const ingress = rawRules<AnpRule>(spec.ingress, "ingress", from, anpPorts, errors);
  const egress = rawRules(spec.egress, "egress", to, anpPorts, errors);
  return build(p, "AdminNetworkPolicy", name, "admin", spec.priority ?? 0, spec, ingress, egress, errors);
}

export function normalizeBaselineAdminNetworkPolicy(p: BaselineAdminNetworkPolicy): NormPolicy {
  const name = p.metadata.name ?? "";
  const errors: Errors = [];
  const spec = p.spec ?? ({} as BaselineAdminNetworkPolicy["spec"]);
  const ingress = rawRules(spec.ingress, "ingress", from, anpPorts, errors);
  const egress = rawRules(spec.egress, "egress", to, anpPorts, errors);
  // The API server admits only `default`; from a file, another name is an error but still enforced as
  // written (the error makes validate fail and the status say so).
  if (name !== "default")
    errors.push({
      field: "metadata.name",
      message: 'a BaselineAdminNetworkPolicy must be named "default" (the cluster has one)',
    });
  return build(
    p,
    "BaselineAdminNetworkPolicy",
    name,
    "baseline",
    BANP_PRIORITY,
    spec,
    ingress,
    egress,
    errors,
  );
}
