// `sluice explain`'s answer: for one packet (source address, destination address, protocol, port), the
// verdict and the chain of policies and rules that produced it — egress at the source pod, then
// ingress at the destination pod — each on its own node, with the peer as that node's ipcache sees it.
// The chain walks the compiler's normalized policies in the compiler's evaluation order with the
// compiler's peer matching (identities of the node's universe, named ports resolved as compile.ts
// does), so the rule it names is the ruleId the map entry carries. Each side also looks the packet up
// in the endpoint's compiled map state (lookup.ts, the datapath's decision); the two must agree, and
// where they cannot (an endpoint over its map capacity fails closed) the side says why.
import { type Pod, podKey } from "../api/k8s.ts";
import type { LabelOptions } from "../identity/labels.ts";
import { parseIp } from "./cidr.ts";
import {
  capEndpoint,
  collectPolicies,
  type CompileError,
  DEFAULT_CAPACITY,
  type LocalEndpoint,
  localEndpoints,
  type PolicyInputs,
  policyObjects,
  PolicyCompiler,
  selectsEndpoint,
  universeFor,
} from "./compile.ts";
import { lookupIdentity, lookupVerdict } from "./lookup.ts";
import {
  type AllowLocalhost,
  type AuditOutcome,
  type Direction,
  type EndpointPolicy,
  ReservedIdentity,
  ReservedRuleId,
  type Verdict,
} from "./mapstate.ts";
import { type NormPolicy, type NormRule, policyKey, type Tier } from "./normalize.ts";
import { peerMatches } from "./peers.ts";
import { inRanges, type NamedPorts, resolvePorts } from "./ports.ts";
import { type RuleName, ruleNameInSpec, ruleNameOf } from "./rule-names.ts";
import { isNetworkedPod, type PeerIdentity, podIps, type Universe } from "./universe.ts";

export interface ExplainOptions {
  labelOptions?: LabelOptions;
  // As CompileOptions.allowLocalhost (default "always").
  allowLocalhost?: AllowLocalhost;
  // Per node name: its own interfaces' addresses (CompileOptions.hostAddresses of that node).
  hostAddresses?: ReadonlyMap<string, readonly string[]>;
  // As CompileOptions.capacity.
  capacity?: number;
}

/**
 * One policy of the chain: `rule` is the rule of it that matched the packet (for a namespace policy,
 * its first Deny, else its first Allow). outcome: what the policy did — a tier's action, `no-match`,
 * `isolates` (a namespace policy that matched nothing but makes the pod default-deny), `overridden`
 * (an Allow a namespace Deny beat), `not-reached` (an earlier step decided, or a Pass skipped it).
 */
export interface ExplainStep {
  tier: Tier;
  policy: string;
  priority?: number;
  outcome: "allow" | "deny" | "pass" | "no-match" | "isolates" | "overridden" | "not-reached";
  decides: boolean;
  rule?: RuleName;
  // An Audit policy (spec.enforcement: Audit): outcome and decides say what it would do if it were
  // enforced (in the chain with the other Audit policies enforced too); it decides nothing now.
  audit?: true;
}

export interface Decision {
  verdict: Verdict;
  // The map entry's rule id: a rule's, ReservedRuleId.DEFAULT or ReservedRuleId.LOCALHOST.
  ruleId: number;
  // rule: `rule` decided. default: the endpoint default (deny when isolated, by `isolatedBy`).
  // allow-localhost: the node reaches its own pods whatever the policies say.
  by: "rule" | "default" | "allow-localhost";
  rule?: RuleName;
  // The Baseline Pass that handed the packet to the default, when one did.
  passedBy?: RuleName;
}

/** The other end of the packet, as the explained side's node sees it. */
export interface PeerView {
  address: string;
  identity: number;
  // "pod ns/name", "host" (the node itself), "remote-node", "world", "init", "unmanaged".
  kind: "pod" | "host" | "remote-node" | "world" | "init" | "unmanaged";
  pod?: string;
  node?: string;
  // Policy CIDRs containing the address (what CIDR rules can match it by).
  cidrs: string[];
}

export interface SideExplanation {
  direction: Direction;
  endpoint: string;
  node: string;
  identity: number;
  peer: PeerView;
  isolated: boolean;
  // The namespace policies that make the endpoint default-deny in this direction.
  isolatedBy: string[];
  steps: ExplainStep[];
  decision: Decision;
  // What the endpoint's compiled map entries decide for this packet (the datapath's lookup), with what
  // they report as the Audit policies' verdict where it differs.
  datapath: { verdict: Verdict; ruleId: number; audit?: AuditOutcome };
  // Only where the Audit policies selecting the endpoint would change the verdict: what they would
  // decide, and the namespace policies that would isolate the endpoint then.
  audit?: Decision & { isolatedBy: string[] };
  // The compiled state decides as the chain says; false only with `problem` (or a compiler bug).
  agrees: boolean;
  problem?: string;
}

export interface ExplainEnd {
  address: string;
  pod?: string;
  node?: string;
}

export interface Explanation {
  from: ExplainEnd;
  to: ExplainEnd;
  protocol: number;
  // The port, or for ICMP/ICMPv6 type << 8 | code, as map keys hold it.
  port: number;
  // What the datapath does: deny when either side's map lookup denies.
  verdict: Verdict;
  egress?: SideExplanation;
  ingress?: SideExplanation;
  // Only where the Audit policies would change the verdict: the verdict with them enforced.
  audit?: { verdict: Verdict };
  // Why a side is missing: the end is not a pod, or not scheduled on a node.
  notes: string[];
}

interface NodeView {
  universe: Universe;
  compiler: PolicyCompiler;
  endpoints: Map<string, LocalEndpoint>;
  compiled: Map<
    string,
    { policy: EndpointPolicy; enforced: EndpointPolicy; withAudit: EndpointPolicy; errors: CompileError[] }
  >;
}

// Pod ownership of an address: the first pod in input order claims it, as the universe does.
function canonical(ip: string): string | undefined {
  const a = parseIp(ip);
  return a ? `${a.family}:${a.addr}` : undefined;
}

export class Explainer {
  readonly policies: NormPolicy[];
  private readonly inputs: PolicyInputs;
  private readonly options: ExplainOptions;
  private readonly nodes = new Map<string, NodeView>();
  private readonly podByIp = new Map<string, Pod>();
  private readonly nodeByIp = new Map<string, string>();
  private readonly specs: Map<string, unknown>;

  constructor(inputs: PolicyInputs, options: ExplainOptions = {}) {
    this.inputs = inputs;
    this.options = options;
    this.policies = collectPolicies(inputs);
    for (const pod of inputs.pods) {
      if (!isNetworkedPod(pod)) continue;
      for (const ip of podIps(pod)) {
        const k = canonical(ip);
        if (k && !this.podByIp.has(k)) this.podByIp.set(k, pod);
      }
    }
    for (const n of inputs.nodes ?? [])
      for (const a of n.status?.addresses ?? []) {
        const k = canonical(a.address);
        if (k && !this.nodeByIp.has(k)) this.nodeByIp.set(k, n.metadata.name ?? "");
      }
    this.specs = specsOf(inputs);
  }

  /** The pod owning an address, if any (networked pods only). */
  podAt(ip: string): Pod | undefined {
    const k = canonical(ip);
    return k === undefined ? undefined : this.podByIp.get(k);
  }

  explain(srcIp: string, dstIp: string, protocol: number, port: number): Explanation {
    const src = this.podAt(srcIp);
    const dst = this.podAt(dstIp);
    const notes: string[] = [];
    const end = (ip: string, pod: Pod | undefined): ExplainEnd => {
      const k = canonical(ip);
      const node = pod ? pod.spec?.nodeName : k === undefined ? undefined : this.nodeByIp.get(k);
      return {
        address: ip,
        ...(pod ? { pod: podKey(pod) } : {}),
        ...(node ? { node } : {}),
      };
    };
    const out: Explanation = {
      from: end(srcIp, src),
      to: end(dstIp, dst),
      protocol,
      port,
      verdict: "allow",
      notes,
    };
    const side = (pod: Pod | undefined, direction: Direction, peerIp: string, what: string) => {
      if (!pod) {
        notes.push(`${what} ${direction === "egress" ? srcIp : dstIp} is not a pod: no ${direction} policy`);
        return undefined;
      }
      const node = pod.spec?.nodeName;
      if (!node) {
        notes.push(`${what} ${podKey(pod)} is on no node: no ${direction} policy is enforced`);
        return undefined;
      }
      return this.explainSide(node, podKey(pod), direction, peerIp, protocol, port);
    };
    out.egress = side(src, "egress", dstIp, "the source");
    out.ingress = side(dst, "ingress", srcIp, "the destination");
    if (out.egress?.datapath.verdict === "deny" || out.ingress?.datapath.verdict === "deny")
      out.verdict = "deny";
    const would = (s?: SideExplanation) => s?.datapath.audit?.verdict ?? s?.datapath.verdict;
    const audit = would(out.egress) === "deny" || would(out.ingress) === "deny" ? "deny" : "allow";
    if (audit !== out.verdict) out.audit = { verdict: audit };
    return out;
  }

  private nodeView(node: string): NodeView {
    let v = this.nodes.get(node);
    if (!v) {
      const o = this.options;
      const universe = universeFor(this.inputs, this.policies, {
        node,
        labelOptions: o.labelOptions,
        hostAddresses: o.hostAddresses?.get(node),
      });
      const compiler = new PolicyCompiler(universe, { allowLocalhost: o.allowLocalhost });
      const eps = localEndpoints(this.inputs, universe, node, o.labelOptions);
      v = { universe, compiler, endpoints: new Map(eps.map((e) => [e.key, e])), compiled: new Map() };
      this.nodes.set(node, v);
    }
    return v;
  }

  // The endpoint's map state as the node's agent writes it (capEndpoint: an endpoint over its capacity
  // fails closed).
  private compiledPolicy(v: NodeView, ep: LocalEndpoint) {
    let c = v.compiled.get(ep.key);
    if (!c) {
      const errors: CompileError[] = [];
      const compilation = v.compiler.compileEndpoint(ep, this.policies);
      const cap = this.options.capacity ?? DEFAULT_CAPACITY;
      const policy = capEndpoint(ep.key, compilation, cap, errors);
      // What the endpoint enforces without its Audit policies: the merged state enforces exactly that.
      const enforced = policy === compilation.policy ? (compilation.enforced ?? policy) : policy;
      const withAudit = policy === compilation.policy ? (compilation.withAudit ?? policy) : policy;
      c = { policy, enforced, withAudit, errors };
      v.compiled.set(ep.key, c);
    }
    return c;
  }

  private explainSide(
    node: string,
    key: string,
    direction: Direction,
    peerIp: string,
    protocol: number,
    port: number,
  ): SideExplanation {
    const v = this.nodeView(node);
    const ep = v.endpoints.get(key);
    if (!ep) throw new Error(`pod ${key} is not an endpoint of node ${node}`);
    const peerId = lookupIdentity(v.universe.ipcache, peerIp);
    const peer = v.universe.identities.get(peerId) ?? {
      id: peerId,
      base: ReservedIdentity.WORLD,
      prefixes: new Set<string>(),
    };
    const applicable = this.policies.filter((p) => selectsEndpoint(p, ep.labels));
    const enforcedPolicies = applicable.filter((p) => !p.audit);
    const isolators = (list: readonly NormPolicy[]) =>
      list.filter((p) => p.tier === "namespace" && p.isolates[direction]).map((p) => p.key);
    const isolatedBy = isolators(enforcedPolicies);
    const compiled = this.compiledPolicy(v, ep);
    const hit = lookupVerdict(compiled.policy, direction, peerId, protocol, port);
    const datapath = {
      verdict: hit.verdict,
      ruleId: hit.entry?.ruleId ?? ReservedRuleId.DEFAULT,
      ...(hit.audit ? { audit: hit.audit } : {}),
    };

    // Named ports: ingress rules resolve them against this endpoint, egress rules against the peer.
    const named: NamedPorts | undefined = direction === "ingress" ? ep.namedPorts : peer.namedPorts;
    const matches = (r: NormRule) =>
      r.direction === direction &&
      (r.peers.any || peerMatches(r.peers, peer)) &&
      inRanges(resolvePorts(r.ports, named), protocol, port);

    // compile.ts allowLocalhostIngress: only where something could deny the node.
    const localhostFor = (isolated: boolean, policy: EndpointPolicy) =>
      direction === "ingress" &&
      (this.options.allowLocalhost ?? "always") === "always" &&
      peer.base === ReservedIdentity.HOST &&
      (isolated || policy.entries.some((e) => e.direction === "ingress"));
    const chain = (list: readonly NormPolicy[], isolated: boolean, policy: EndpointPolicy) =>
      localhostFor(isolated, policy)
        ? {
            steps: [],
            decision: {
              verdict: "allow" as const,
              ruleId: ReservedRuleId.LOCALHOST,
              by: "allow-localhost" as const,
            },
          }
        : this.walk(list, direction, matches, isolated);
    const { steps, decision } = chain(enforcedPolicies, isolatedBy.length > 0, compiled.enforced);
    const side: SideExplanation = {
      direction,
      endpoint: key,
      node,
      identity: ep.identity,
      peer: this.peerView(peerIp, peer, node),
      isolated: isolatedBy.length > 0,
      isolatedBy,
      steps,
      decision,
      datapath,
      agrees: datapath.verdict === decision.verdict && datapath.ruleId === decision.ruleId,
    };
    if (applicable.some((p) => p.audit)) {
      // The chain again with the Audit policies enforced: their steps join the enforced chain in order.
      const auditIsolatedBy = isolators(applicable);
      // The allow-localhost condition as the compiler saw it with the Audit policies enforced (E2): the
      // merged state drops E2's localhost entries where the enforced state has the same verdict.
      const a = chain(applicable, auditIsolatedBy.length > 0, compiled.withAudit);
      const own = new Map(steps.map((st) => [st.policy, st]));
      const audited = new Set(applicable.filter((p) => p.audit).map((p) => p.key));
      if (a.decision.by !== "allow-localhost")
        side.steps = a.steps.flatMap((st) =>
          audited.has(st.policy)
            ? [{ ...st, audit: true as const }]
            : own.has(st.policy)
              ? [own.get(st.policy)!]
              : [],
        );
      if (a.decision.verdict !== decision.verdict)
        side.audit = { ...a.decision, isolatedBy: auditIsolatedBy };
      const want = side.audit ? { verdict: side.audit.verdict, ruleId: side.audit.ruleId } : undefined;
      side.agrees &&= datapath.audit?.verdict === want?.verdict && datapath.audit?.ruleId === want?.ruleId;
    }
    const overflow = compiled.errors.find((e) => e.reason === "Overflow");
    if (overflow) side.problem = overflow.message;
    else if (!side.agrees)
      side.problem = `the compiled map decides ${outcomeText(datapath, datapath.audit)}, the policies ${outcomeText(decision, side.audit)}: a compiler bug, please report it`;
    return side;
  }

  // The tiers, as compile.ts decide() folds them: Admin (first match decides, Pass skips the rest of
  // the tier), namespace (any Deny, else any Allow, else isolation denies), Baseline (first match;
  // Pass leaves it to the default), default.
  private walk(
    applicable: readonly NormPolicy[],
    direction: Direction,
    matches: (r: NormRule) => boolean,
    isolated: boolean,
  ): { steps: ExplainStep[]; decision: Decision } {
    const steps: ExplainStep[] = [];
    let decision: Decision | undefined;
    let passed = false;
    const step = (p: NormPolicy, s: Omit<ExplainStep, "tier" | "policy" | "priority">) =>
      steps.push({
        tier: p.tier,
        policy: p.key,
        ...(p.tier === "namespace" ? {} : { priority: p.priority }),
        ...s,
      });
    const relevant = (p: NormPolicy) =>
      p.rules.some((r) => r.direction === direction) || (p.tier === "namespace" && p.isolates[direction]);

    for (const p of applicable.filter((x) => x.tier === "admin" && relevant(x))) {
      if (decision || passed) {
        step(p, { outcome: "not-reached", decides: false });
        continue;
      }
      const r = p.rules.find(matches);
      if (!r) step(p, { outcome: "no-match", decides: false });
      else if (r.action === "pass") {
        passed = true;
        step(p, { outcome: "pass", decides: false, rule: this.name(r) });
      } else {
        decision = this.byRule(r);
        step(p, { outcome: r.action, decides: true, rule: this.name(r) });
      }
    }

    const ns = applicable.filter((x) => x.tier === "namespace" && relevant(x));
    const nsHits = ns.map((p) => {
      const hits = p.rules.filter(matches);
      return { p, rule: hits.find((r) => r.action === "deny") ?? hits[0] };
    });
    const deny = decision ? undefined : nsHits.find((h) => h.rule?.action === "deny");
    const allow = decision || deny ? undefined : nsHits.find((h) => h.rule);
    for (const { p, rule } of nsHits) {
      if (decision) step(p, { outcome: "not-reached", decides: false });
      else if (!rule) step(p, { outcome: p.isolates[direction] ? "isolates" : "no-match", decides: false });
      else {
        const decides = (deny ?? allow)?.p === p;
        const outcome = rule.action === "deny" ? "deny" : deny ? "overridden" : "allow";
        step(p, { outcome, decides, rule: this.name(rule) });
      }
    }
    decision ??= deny?.rule ? this.byRule(deny.rule) : allow?.rule ? this.byRule(allow.rule) : undefined;
    if (!decision && isolated) decision = { verdict: "deny", ruleId: ReservedRuleId.DEFAULT, by: "default" };

    for (const p of applicable.filter((x) => x.tier === "baseline" && relevant(x))) {
      if (decision) {
        step(p, { outcome: "not-reached", decides: false });
        continue;
      }
      const r = p.rules.find(matches);
      if (!r) step(p, { outcome: "no-match", decides: false });
      else if (r.action === "pass") {
        decision = {
          verdict: "allow",
          ruleId: ReservedRuleId.DEFAULT,
          by: "default",
          passedBy: this.name(r),
        };
        step(p, { outcome: "pass", decides: false, rule: this.name(r) });
      } else {
        decision = this.byRule(r);
        step(p, { outcome: r.action, decides: true, rule: this.name(r) });
      }
    }
    decision ??= {
      verdict: isolated ? "deny" : "allow",
      ruleId: ReservedRuleId.DEFAULT,
      by: "default",
    };
    return { steps, decision };
  }

  private byRule(r: NormRule): Decision {
    return { verdict: r.action === "deny" ? "deny" : "allow", ruleId: r.id, by: "rule", rule: this.name(r) };
  }

  private name(r: NormRule): RuleName {
    const spec = this.specs.get(policyKey(r.ref.kind, r.ref.namespace, r.ref.name));
    return ruleNameOf(r.ref, r.action, r.id, ruleNameInSpec(spec, r.ref));
  }

  private peerView(address: string, p: PeerIdentity, node: string): PeerView {
    const pod = this.podAt(address);
    const k = canonical(address);
    const cidrs = [...p.prefixes].sort();
    const base: PeerView = { address, identity: p.id, kind: "world", cidrs };
    switch (p.base) {
      case ReservedIdentity.HOST:
        return { ...base, kind: "host", node };
      case ReservedIdentity.REMOTE_NODE: {
        const other = k === undefined ? undefined : this.nodeByIp.get(k);
        return { ...base, kind: "remote-node", ...(other ? { node: other } : {}) };
      }
      case ReservedIdentity.INIT:
        return { ...base, kind: "init" };
      case ReservedIdentity.UNMANAGED:
        return { ...base, kind: "unmanaged" };
      case ReservedIdentity.WORLD:
        return base;
      default:
        return { ...base, kind: "pod", ...(pod ? { pod: podKey(pod) } : {}) };
    }
  }
}

function outcomeText(d: { verdict: Verdict; ruleId: number }, audit?: { verdict: Verdict; ruleId: number }) {
  const text = `${d.verdict} (rule id ${d.ruleId})`;
  return audit ? `${text}, audit ${audit.verdict} (rule id ${audit.ruleId})` : text;
}

// Each policy object's spec by policy key: where the rules' names are.
function specsOf(inputs: PolicyInputs): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const p of policyObjects(inputs)) {
    const namespaced = p.kind === "NetworkPolicy" || p.kind === "SecurityPolicy";
    const ns = namespaced ? (p.metadata.namespace ?? "default") : undefined;
    out.set(policyKey(p.kind, ns, p.metadata.name ?? ""), p.spec);
  }
  return out;
}
