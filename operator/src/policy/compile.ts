// The compiler: (namespaces, pods, nodes, policies, identities, node) → MapState. Pure and
// deterministic. Precedence (tiers, Pass, Deny over Allow, isolation) is folded in here so the
// datapath's two longest-prefix lookups (exact peer identity, then wildcard) give the verdict the
// policies mean; the property tests hold this against reference.ts.
import type { LabelSelector, Namespace, NetworkPolicy, Node, Pod } from "../api/k8s.ts";
import type {
  AdminNetworkPolicy,
  BaselineAdminNetworkPolicy,
  ClusterNetworkPolicy,
  ClusterSecurityPolicy,
  SecurityPolicy,
} from "../api/types.generated.ts";
import { type LabelOptions, labelSetKey, type SplitLabels, splitLabels } from "../identity/labels.ts";
import type { Identity } from "../identity/static.ts";
import {
  type Block,
  compileBlocks,
  decodeValue,
  encodeValue,
  type Interval,
  type ProtocolSpace,
} from "./blocks.ts";
import { mergeAudit } from "./audit.ts";
import { stableIds } from "./hash.ts";
import type {
  AllowLocalhost,
  Direction,
  EndpointPolicy,
  EndpointState,
  MapState,
  PolicyEntry,
} from "./mapstate.ts";
import { ReservedIdentity, ReservedRuleId } from "./mapstate.ts";
import {
  type AnyPolicy,
  comparePolicies,
  type NormPolicy,
  type NormRule,
  normalizePolicy,
  type RuleRef,
  type Tier,
} from "./normalize.ts";
import { peerIdentities, peerMatches } from "./peers.ts";
import {
  inRanges,
  type NamedPorts,
  namedPortsKey,
  namedPortsOf,
  type PortRange,
  rangesKey,
  resolvePorts,
  usesNamedPorts,
} from "./ports.ts";
import { matchesSelector } from "./selector.ts";
import {
  buildUniverse,
  isNetworkedPod,
  type PeerIdentity,
  podLabelSet,
  type Universe,
  type UniverseMemo,
} from "./universe.ts";

export interface PolicyInputs {
  namespaces: readonly Namespace[];
  pods: readonly Pod[];
  nodes?: readonly Node[];
  networkPolicies?: readonly NetworkPolicy[];
  securityPolicies?: readonly SecurityPolicy[];
  clusterSecurityPolicies?: readonly ClusterSecurityPolicy[];
  // SIG Network's policy API (policy/upstream.ts): the Admin and Baseline tiers, with the above.
  clusterNetworkPolicies?: readonly ClusterNetworkPolicy[];
  adminNetworkPolicies?: readonly AdminNetworkPolicy[];
  baselineAdminNetworkPolicies?: readonly BaselineAdminNetworkPolicy[];
  identities: readonly Identity[];
}

export interface CompileOptions {
  // The node whose pods are the local endpoints.
  node: string;
  // Most policy entries one endpoint may have (agent flag --endpoint-policy-entries); an endpoint that
  // needs more fails closed (capEndpoint).
  capacity?: number;
  labelOptions?: LabelOptions;
  // The state currently enforced (the incremental compiler starts from it).
  previous?: MapState;
  // Fixed endpoint ids (e.g. read back from pinned maps); others get stable hashed ids.
  endpointIds?: ReadonlyMap<string, number>;
  // "always" (default): the local node (identity HOST) may open connections into every local endpoint
  // on every port and protocol, whatever the policies say (a Deny included), so kubelet probes keep
  // working under default deny. "policy": the node is a peer like any other (allowed where a policy
  // allows the `host` entity). Egress to the node stays policy either way.
  allowLocalhost?: AllowLocalhost;
  // Addresses of the node's own interfaces, HOST like its Node object's (see UniverseInput).
  hostAddresses?: readonly string[];
}

export interface CompileError {
  reason: "InvalidPolicy" | "Overflow";
  // Policy keys ("Kind/namespace/name") the error is about.
  policies: string[];
  endpoint?: string;
  field?: string;
  message: string;
  // Overflow: the entries the endpoint's policy needs and the most it may have.
  needed?: number;
  capacity?: number;
}

export interface CompileResult {
  state: MapState;
  rules: Map<number, RuleRef>;
  errors: CompileError[];
}

export const DEFAULT_CAPACITY = 65536;

export interface LocalEndpoint {
  key: string;
  pod: Pod;
  labels: SplitLabels;
  labelKey: string;
  identity: number;
  namedPorts: NamedPorts;
}

interface ActiveRule {
  rule: NormRule;
  tier: Tier;
  named: boolean;
  ranges: PortRange[];
}

// Every policy object of the inputs, kind by kind.
export function policyObjects(inputs: PolicyInputs): AnyPolicy[] {
  return [
    ...(inputs.networkPolicies ?? []),
    ...(inputs.securityPolicies ?? []),
    ...(inputs.clusterSecurityPolicies ?? []),
    ...(inputs.clusterNetworkPolicies ?? []),
    ...(inputs.adminNetworkPolicies ?? []),
    ...(inputs.baselineAdminNetworkPolicies ?? []),
  ];
}

export function collectPolicies(inputs: PolicyInputs): NormPolicy[] {
  return policyObjects(inputs).map(normalizePolicy).sort(comparePolicies);
}

export function policyPrefixes(policies: Iterable<NormPolicy>): Set<string> {
  const out = new Set<string>();
  for (const p of policies)
    for (const r of p.rules)
      for (const c of r.peers.cidrs) {
        out.add(c.cidrKey);
        for (const e of c.exceptKeys) out.add(e);
      }
  return out;
}

// The node selectors of the policies' node peers, by key: the universe refines node addresses by them.
export function policyNodeSelectors(policies: Iterable<NormPolicy>): Map<string, LabelSelector> {
  const out = new Map<string, LabelSelector>();
  for (const p of policies)
    for (const r of p.rules) for (const n of r.peers.nodes) out.set(n.key, n.selector);
  return out;
}

export function localEndpoints(
  inputs: PolicyInputs,
  u: Universe,
  node: string,
  opts?: LabelOptions,
): LocalEndpoint[] {
  const nsByName = new Map(inputs.namespaces.map((n) => [n.metadata.name ?? "", n]));
  const out: LocalEndpoint[] = [];
  for (const pod of inputs.pods) {
    if (pod.spec?.nodeName !== node || !isNetworkedPod(pod)) continue;
    const set = podLabelSet(pod, nsByName, opts);
    const labelKey = labelSetKey(set);
    out.push({
      key: `${pod.metadata.namespace ?? "default"}/${pod.metadata.name ?? ""}`,
      pod,
      labels: splitLabels(set),
      labelKey,
      // Not allocated yet: enforce by labels anyway, report as init.
      identity: u.identityByKey.get(labelKey) ?? ReservedIdentity.INIT,
      namedPorts: namedPortsOf(pod),
    });
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

export function selectsEndpoint(p: NormPolicy, labels: SplitLabels): boolean {
  const ns = p.subjectNamespace;
  if (ns) {
    if (
      ns.kind === "name"
        ? ns.name !== labels.namespace
        : !matchesSelector(ns.selector, labels.namespaceLabels)
    )
      return false;
  }
  return matchesSelector(p.subjectPods, labels.podLabels);
}

// The decision procedure of the tiers for the rules matching one packet, in evaluation order.
function decide(
  rules: readonly ActiveRule[],
  rangesOf: (r: ActiveRule) => readonly PortRange[],
  proto: number,
  port: number,
  isolated: boolean,
): number {
  let passed = false;
  let allow = -1;
  for (const r of rules) {
    if (!inRanges(rangesOf(r), proto, port)) continue;
    if (r.tier === "admin") {
      if (passed) continue;
      if (r.rule.action === "pass") {
        passed = true;
        continue;
      }
      return encodeValue(r.rule.action === "deny", r.rule.id);
    }
    if (r.tier === "namespace") {
      if (r.rule.action === "deny") return encodeValue(true, r.rule.id);
      if (allow < 0) allow = encodeValue(false, r.rule.id);
      continue;
    }
    if (allow >= 0) return allow;
    if (isolated) return encodeValue(true, 0);
    // A Baseline Pass hands the packet to the default, which allows.
    if (r.rule.action === "pass") return encodeValue(false, 0);
    return encodeValue(r.rule.action === "deny", r.rule.id);
  }
  if (allow >= 0) return allow;
  return encodeValue(isolated, 0);
}

// Protocol numbers no rule of the list names specifically take this path: only rules for every
// protocol apply to them.
const OTHER_PROTOCOL = -1;

function blocksFor(
  rules: readonly ActiveRule[],
  rangesOf: (r: ActiveRule) => readonly PortRange[],
  fallback: (proto: number, port: number) => number,
  isolated: boolean,
): Block[] {
  const protos = new Set<number>();
  for (const r of rules) for (const x of rangesOf(r)) if (x.proto !== 0) protos.add(x.proto);
  const spaces: ProtocolSpace[] = [];
  for (const proto of [...protos].sort((a, b) => a - b)) {
    const cuts = new Set<number>([0]);
    for (const r of rules)
      for (const x of rangesOf(r))
        if (x.proto === 0 || x.proto === proto) {
          cuts.add(x.lo);
          if (x.hi < 0xffff) cuts.add(x.hi + 1);
        }
    const sorted = [...cuts].sort((a, b) => a - b);
    const intervals: Interval[] = sorted.map((lo, i) => {
      const value = decide(rules, rangesOf, proto, lo, isolated);
      return {
        lo,
        hi: i + 1 < sorted.length ? sorted[i + 1] - 1 : 0xffff,
        value,
        fallOk: value === fallback(proto, lo),
      };
    });
    spaces.push({ proto, intervals });
  }
  const otherValue = decide(rules, rangesOf, OTHER_PROTOCOL, 0, isolated);
  return compileBlocks(spaces, { value: otherValue, fallOk: otherValue === fallback(OTHER_PROTOCOL, 0) });
}

function toEntries(
  blocks: readonly Block[],
  direction: Direction,
  identity: number,
  out: PolicyEntry[],
): void {
  for (const b of blocks) {
    const v = decodeValue(b.value);
    out.push({
      direction,
      identity,
      protocol: b.proto,
      port: b.proto === 0 ? 0 : b.port,
      portPrefixLen: b.proto === 0 ? 0 : b.len,
      verdict: v.deny ? "deny" : "allow",
      ruleId: v.ruleId,
    });
  }
}

export interface EndpointCompilation {
  policy: EndpointPolicy;
  // What the endpoint enforces instead when its policy does not fit (PolicyCompiler.failClosed).
  closed: EndpointPolicy;
  // Keys of the policies with rules for this endpoint, most entries first.
  involved: string[];
  // Only where Audit policies select the endpoint: the policy without them (E1), which `policy`
  // enforces exactly (audit.ts).
  enforced?: EndpointPolicy;
  // With it: the policy with the Audit policies enforced too (E2), which the merge reports as audit
  // outcomes only where its verdict differs; explain walks it for the allow-localhost condition.
  withAudit?: EndpointPolicy;
}

export class PolicyCompiler {
  readonly universe: Universe;
  readonly allowLocalhost: AllowLocalhost;
  private readonly peerCache = new WeakMap<NormRule, Set<number>>();
  // Every identity of the local node: HOST and its refinements (node addresses policy CIDRs split).
  private readonly hostIdentities: number[];
  // The policy of an endpoint whose own does not fit (compile-time or in the node's policy map): both
  // directions deny by default and the only entries are allow-localhost's (with "always": the node
  // opens connections into the pod, so kubelet probes keep it alive; with "policy": none). Nothing
  // else: no DNS, no other pod, no world; replies of what the node opened pass by conntrack, and flows
  // tracked before are checked again (the policy revision changes) and cut. Shared by every endpoint.
  readonly failClosed: EndpointPolicy;

  constructor(universe: Universe, options: Pick<CompileOptions, "allowLocalhost"> = {}) {
    this.universe = universe;
    this.allowLocalhost = options.allowLocalhost ?? "always";
    this.hostIdentities = [...universe.identities.values()]
      .filter((p) => p.base === ReservedIdentity.HOST)
      .map((p) => p.id)
      .sort((a, b) => a - b);
    const entries: PolicyEntry[] = [];
    if (this.allowLocalhost === "always") allowLocalhostIngress(entries, true, this.hostIdentities);
    this.failClosed = { defaultDeny: { ingress: true, egress: true }, entries };
  }

  peersOf(rule: NormRule): Set<number> {
    let s = this.peerCache.get(rule);
    if (!s) {
      s = peerIdentities(rule.peers, this.universe);
      this.peerCache.set(rule, s);
    }
    return s;
  }

  compileEndpoint(ep: LocalEndpoint, policies: readonly NormPolicy[]): EndpointCompilation {
    const applicable = policies.filter((p) => selectsEndpoint(p, ep.labels));
    const involved = (entries: readonly PolicyEntry[]) => {
      const perPolicy = new Map<number, string>();
      for (const p of applicable) for (const r of p.rules) perPolicy.set(r.id, p.key);
      const counts = new Map<string, number>();
      for (const e of entries)
        for (const id of e.audit ? [e.ruleId, e.audit.ruleId] : [e.ruleId]) {
          const k = perPolicy.get(id);
          if (k) counts.set(k, (counts.get(k) ?? 0) + 1);
        }
      return [...new Set(applicable.map((p) => p.key))].sort(
        (a, b) => (counts.get(b) ?? 0) - (counts.get(a) ?? 0),
      );
    };
    // No Audit policy selects the endpoint: what it compiled to before audit mode existed.
    if (!applicable.some((p) => p.audit)) {
      const policy = this.compileApplicable(ep, applicable);
      return { policy, closed: this.failClosed, involved: involved(policy.entries) };
    }
    // E1 enforced, E2 with the Audit policies enforced too; merged (audit.ts).
    const enforced = this.compileApplicable(
      ep,
      applicable.filter((p) => !p.audit),
    );
    const withAudit = this.compileApplicable(ep, applicable);
    const policy = mergeAudit(enforced, withAudit);
    policy.entries.sort(compareEntries);
    return { policy, closed: this.failClosed, involved: involved(policy.entries), enforced, withAudit };
  }

  // The endpoint's policy from the given policies (those that select it), all enforced.
  private compileApplicable(ep: LocalEndpoint, applicable: readonly NormPolicy[]): EndpointPolicy {
    const entries: PolicyEntry[] = [];
    const defaultDeny = { ingress: false, egress: false };
    for (const direction of ["ingress", "egress"] as const) {
      const isolated = applicable.some((p) => p.tier === "namespace" && p.isolates[direction]);
      defaultDeny[direction] = isolated;
      const active: ActiveRule[] = [];
      for (const p of applicable)
        for (const rule of p.rules) {
          if (rule.direction !== direction) continue;
          const named = direction === "egress" && usesNamedPorts(rule.ports);
          // Ingress named ports resolve against this endpoint; egress ones against each peer.
          const ranges = resolvePorts(rule.ports, direction === "ingress" ? ep.namedPorts : undefined);
          active.push({ rule, tier: p.tier, named, ranges });
        }
      if (active.length === 0) continue;
      this.compileDirection(direction, active, isolated, entries);
    }
    if (this.allowLocalhost === "always")
      allowLocalhostIngress(entries, defaultDeny.ingress, this.hostIdentities);
    entries.sort(compareEntries);
    return { defaultDeny, entries };
  }

  private compileDirection(
    direction: Direction,
    active: ActiveRule[],
    isolated: boolean,
    out: PolicyEntry[],
  ): void {
    const u = this.universe;
    const base = (r: ActiveRule) => r.ranges;
    const wildcard = active.filter((r) => r.rule.peers.any);
    const defaultValue = encodeValue(isolated, 0);
    const anyBlocks = blocksFor(wildcard, base, () => defaultValue, isolated);
    toEntries(anyBlocks, direction, 0, out);
    const anyValue = (proto: number, port: number) => decide(wildcard, base, proto, port, isolated);

    // Per peer identity: the rules that match it beyond the wildcard ones, and named-port
    // resolutions that differ from the wildcard's.
    const extra = new Map<number, Set<number>>();
    const add = (id: number, i: number) => {
      let s = extra.get(id);
      if (!s) {
        s = new Set();
        extra.set(id, s);
      }
      s.add(i);
    };
    active.forEach((r, i) => {
      if (!r.rule.peers.any) for (const id of this.peersOf(r.rule)) add(id, i);
      if (r.named)
        for (const id of u.withNamedPorts) if (r.rule.peers.any || this.peersOf(r.rule).has(id)) add(id, i);
    });
    const groups = new Map<string, { rules: ActiveRule[]; ids: number[] }>();
    for (const [id, idx] of extra) {
      const named = u.identities.get(id)?.namedPorts;
      const rules: ActiveRule[] = [];
      const sig: string[] = [];
      active.forEach((r, i) => {
        if (!r.rule.peers.any && !idx.has(i)) return;
        if (r.named) {
          const ranges = resolvePorts(r.rule.ports, named);
          rules.push({ ...r, ranges });
          sig.push(`${i}:${rangesKey(ranges)}`);
        } else {
          rules.push(r);
          sig.push(String(i));
        }
      });
      const key = sig.join(" ");
      const g = groups.get(key);
      if (g) g.ids.push(id);
      else groups.set(key, { rules, ids: [id] });
    }
    for (const g of groups.values()) {
      const blocks = blocksFor(g.rules, base, anyValue, isolated);
      for (const id of g.ids) toEntries(blocks, direction, id, out);
    }
  }
}

// Whether compileDirection can give identity p entries for this rule: a rule whose peers match p
// beyond the wildcard, or an egress rule with named ports (wildcard or not: they resolve per peer)
// when p has named ports. A wildcard rule alone gives p nothing of its own (it is in identity 0's
// entries). An endpoint with no rule reaching a peer that changed compiles to the entries it had
// (incremental.ts); this must stay a superset of what compileDirection adds to `extra`.
export function ruleReaches(rule: NormRule, p: PeerIdentity): boolean {
  if (!rule.peers.any) return peerMatches(rule.peers, p);
  return rule.direction === "egress" && usesNamedPorts(rule.ports) && (p.namedPorts?.size ?? 0) > 0;
}

// Allow-localhost "always": every identity of the local node gets one ingress entry allowing every
// protocol and port, in place of whatever the policies compiled for it. The peer's own group is looked
// up first and this entry matches everything, so it decides before any policy entry (a Deny of the
// host entity or an Admin-tier Deny included) and before the endpoint default. Only where something
// could deny the node: an endpoint without ingress entries that is not isolated allows it anyway.
function allowLocalhostIngress(entries: PolicyEntry[], isolated: boolean, hosts: readonly number[]): void {
  if (!isolated && !entries.some((e) => e.direction === "ingress")) return;
  const host = new Set(hosts);
  let kept = 0;
  for (const e of entries) if (!(e.direction === "ingress" && host.has(e.identity))) entries[kept++] = e;
  entries.length = kept;
  for (const identity of hosts)
    entries.push({
      direction: "ingress",
      identity,
      protocol: 0,
      port: 0,
      portPrefixLen: 0,
      verdict: "allow",
      ruleId: ReservedRuleId.LOCALHOST,
    });
}

export function compareEntries(a: PolicyEntry, b: PolicyEntry): number {
  return (
    (a.direction < b.direction ? -1 : a.direction > b.direction ? 1 : 0) ||
    a.identity - b.identity ||
    a.protocol - b.protocol ||
    a.portPrefixLen - b.portPrefixLen ||
    a.port - b.port
  );
}

export function endpointIdsFor(
  keys: readonly string[],
  fixed?: ReadonlyMap<string, number>,
): Map<string, number> {
  const ids = stableIds(
    keys.filter((k) => !fixed?.has(k)),
    1,
    1 << 20,
  );
  for (const k of keys) if (fixed?.has(k)) ids.set(k, fixed.get(k)!);
  return ids;
}

export function policyErrors(policies: readonly NormPolicy[]): CompileError[] {
  const out: CompileError[] = [];
  for (const p of policies)
    for (const e of p.errors)
      out.push({ reason: "InvalidPolicy", policies: [p.key], field: e.field, message: e.message });
  return out;
}

// Applies the per-endpoint capacity: an endpoint over it fails closed (c.closed) and the error names
// the policies involved and the numbers. Never its previous policy: that is neither what the policies
// say now nor closed (an endpoint kept open by a stale policy is what cilium#45788 describes).
export function capEndpoint(
  key: string,
  c: EndpointCompilation,
  capacity: number,
  errors: CompileError[],
): EndpointPolicy {
  const needed = c.policy.entries.length;
  if (needed <= capacity) return c.policy;
  errors.push({
    reason: "Overflow",
    policies: c.involved,
    endpoint: key,
    needed,
    capacity,
    message: `endpoint ${key} needs ${needed} policy entries, more than the ${capacity} one endpoint may have; it fails closed`,
  });
  return c.closed;
}

export interface CompileParts {
  result: CompileResult;
  policies: NormPolicy[];
  compiler: PolicyCompiler;
  endpoints: LocalEndpoint[];
}

export function compile(inputs: PolicyInputs, options: CompileOptions): CompileResult {
  return compileParts(inputs, options).result;
}

// The peer universe the inputs and policies give for the node (the policies' CIDRs become prefixes).
export function universeFor(
  inputs: PolicyInputs,
  policies: Iterable<NormPolicy>,
  options: Pick<CompileOptions, "node" | "labelOptions" | "hostAddresses">,
  memo?: UniverseMemo,
): Universe {
  return buildUniverse({
    namespaces: inputs.namespaces,
    pods: inputs.pods,
    nodes: inputs.nodes,
    identities: inputs.identities,
    policyPrefixes: policyPrefixes(policies),
    policyNodeSelectors: policyNodeSelectors(policies),
    node: options.node,
    hostAddresses: options.hostAddresses,
    labelOptions: options.labelOptions,
    memo,
  });
}

export function compileParts(
  inputs: PolicyInputs,
  options: CompileOptions,
  memo?: UniverseMemo,
): CompileParts {
  const policies = collectPolicies(inputs);
  const universe = universeFor(inputs, policies, options, memo);
  const compiler = new PolicyCompiler(universe, options);
  const errors = policyErrors(policies);
  const eps = localEndpoints(inputs, universe, options.node, options.labelOptions);
  const ids = endpointIdsFor(
    eps.map((e) => e.key),
    options.endpointIds,
  );
  const cache = new Map<string, EndpointCompilation>();
  const endpoints: EndpointState[] = eps.map((ep) => {
    const cacheKey = `${ep.labelKey}|${namedPortsKey(ep.namedPorts)}`;
    let c = cache.get(cacheKey);
    if (!c) {
      c = compiler.compileEndpoint(ep, policies);
      cache.set(cacheKey, c);
    }
    const policy = capEndpoint(ep.key, c, options.capacity ?? DEFAULT_CAPACITY, errors);
    return { key: ep.key, id: ids.get(ep.key)!, identity: ep.identity, policy };
  });
  const rules = new Map<number, RuleRef>();
  for (const p of policies) for (const r of p.rules) rules.set(r.id, r.ref);
  return {
    result: {
      state: { ipcache: universe.ipcache, endpoints, failClosed: compiler.failClosed },
      rules,
      errors,
    },
    policies,
    compiler,
    endpoints: eps,
  };
}
