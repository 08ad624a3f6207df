// What the agent knows that turns a flow event's numbers into names, as of its last reconcile pass:
// endpoint ids to pods, addresses to pods and nodes, identities to their reserved base and labels, rule
// ids to the policy rule that wrote them (the normalized policies' RuleRefs, normalize.ts ruleId), and
// which policies isolate an endpoint (the namespace-tier policies selecting it that isolate that
// direction, as PolicyCompiler.compileEndpoint decides its default). Built from the agent's compiler
// on demand, at most once per pass, and only while events arrive.
import type { Node, Pod } from "../api/k8s.ts";
import { podKey } from "../api/k8s.ts";
import { NAMESPACE_LABEL } from "../identity/labels.ts";
import { formatIp, parseIp } from "../policy/cidr.ts";
import { type LocalEndpoint, selectsEndpoint } from "../policy/compile.ts";
import type { Direction, MapState } from "../policy/mapstate.ts";
import type { NormPolicy } from "../policy/normalize.ts";
import { ruleNameInSpec, ruleNameOf } from "../policy/rule-names.ts";
import { isNetworkedPod, podIps, type Universe } from "../policy/universe.ts";
import type { FlowRule } from "./flow-record.ts";

// The compiler's read-only surface the view needs (IncrementalCompiler has it).
export interface MonitorSource {
  readonly state: MapState;
  readonly localEndpoints: readonly LocalEndpoint[];
  readonly normalizedPolicies: readonly NormPolicy[];
  readonly universe: Universe;
  object(kind: string, namespace: string | undefined, name: string): object | undefined;
  inputs(): { pods: readonly Pod[]; nodes?: readonly Node[] };
}

export interface ViewEndpoint {
  key: string;
  identity: number;
}

// One spelling per address, whatever the text form (IPv6 zero runs, case).
export function canonicalIp(text: string): string {
  const ip = parseIp(text);
  return ip ? formatIp(ip.family, ip.addr) : text;
}

export class MonitorView {
  readonly node: string;
  readonly #source: MonitorSource;
  readonly #endpoints = new Map<number, ViewEndpoint>();
  readonly #pods = new Map<string, string>();
  readonly #nodes = new Map<string, string>();
  readonly #rules = new Map<number, FlowRule>();
  readonly #isolated = new Map<string, string[]>();
  readonly #audited = new Set<string>();

  constructor(source: MonitorSource, node: string) {
    this.node = node;
    this.#source = source;
    for (const e of source.state.endpoints) this.#endpoints.set(e.id, { key: e.key, identity: e.identity });
    const { pods, nodes } = source.inputs();
    for (const p of pods)
      if (isNetworkedPod(p)) for (const ip of podIps(p)) this.#pods.set(canonicalIp(ip), podKey(p));
    for (const n of nodes ?? [])
      for (const a of n.status?.addresses ?? [])
        this.#nodes.set(canonicalIp(a.address), n.metadata.name ?? "");
    for (const p of source.normalizedPolicies) {
      if (p.audit) this.#audited.add(p.key);
      const spec = (source.object(p.kind, p.namespace, p.name) as { spec?: unknown } | undefined)?.spec;
      for (const r of p.rules)
        if (!this.#rules.has(r.id))
          this.#rules.set(r.id, ruleNameOf(r.ref, r.action, r.id, ruleNameInSpec(spec, r.ref)));
    }
  }

  endpoint(id: number): ViewEndpoint | undefined {
    return this.#endpoints.get(id);
  }

  podAt(address: string): string | undefined {
    return this.#pods.get(canonicalIp(address));
  }

  nodeAt(address: string): string | undefined {
    return this.#nodes.get(canonicalIp(address));
  }

  rule(id: number): FlowRule | undefined {
    return this.#rules.get(id);
  }

  // The reserved or cluster identity `id` is or refines, and the policy CIDRs holding its addresses.
  peerIdentity(id: number): { base: number; prefixes: readonly string[] } | undefined {
    const p = this.#source.universe.identities.get(id);
    return p && { base: p.base, prefixes: [...p.prefixes] };
  }

  // The identity's labels as selectors see them: the pod's, and its namespace.
  labels(id: number): Record<string, string> | undefined {
    const l = this.#source.universe.identities.get(id)?.labels;
    return l && { ...l.podLabels, [NAMESPACE_LABEL]: l.namespace };
  }

  // Every rule of the agent's policies, by rule id (sluice stats lists those no entry carries).
  rules(): ReadonlyMap<number, FlowRule> {
    return this.#rules;
  }

  // Whether the policy (its key) is in Audit mode.
  inAudit(policy: string): boolean {
    return this.#audited.has(policy);
  }

  // The namespace-tier policies that select the endpoint and isolate it in `direction`, by key: the
  // enforced ones, or (withAudit) those and the Audit ones, which isolate it only as audited.
  isolatedBy(endpoint: string, direction: Direction, withAudit = false): string[] {
    const k = `${endpoint}#${direction}#${withAudit}`;
    let out = this.#isolated.get(k);
    if (!out) {
      const ep = this.#source.localEndpoints.find((e) => e.key === endpoint);
      out = ep
        ? this.#source.normalizedPolicies
            .filter(
              (p) =>
                p.tier === "namespace" &&
                (withAudit || !p.audit) &&
                p.isolates[direction] &&
                selectsEndpoint(p, ep.labels),
            )
            .map((p) => p.key)
        : [];
      this.#isolated.set(k, out);
    }
    return out;
  }
}
