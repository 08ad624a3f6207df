// The compiler as a long-lived object: one change in, one MapDelta out. A policy change that adds
// or removes no CIDR recompiles only the endpoints the old or new version selects, against the
// unchanged universe; any other change (pod, namespace, node, identity, a policy's CIDRs)
// rebuilds the universe and diffs every endpoint. Either way old state + delta == compile(inputs).
import type { Namespace, NetworkPolicy, Node, Pod } from "../api/k8s.ts";
import type { ClusterSecurityPolicy, SecurityIdentity, SecurityPolicy } from "../api/types.generated.ts";
import type { Identity } from "../identity/static.ts";
import {
  type CompileError,
  type CompileOptions,
  capEndpoint,
  compileParts,
  DEFAULT_CAPACITY,
  type EndpointCompilation,
  type LocalEndpoint,
  type PolicyCompiler,
  type PolicyInputs,
  policyErrors,
  selectsEndpoint,
} from "./compile.ts";
import { diffEndpoint, diffStates, type MapDelta } from "./diff.ts";
import type { EndpointState, MapState } from "./mapstate.ts";
import { comparePolicies, type NormPolicy, normalizePolicy, policyKey } from "./normalize.ts";
import { namedPortsKey } from "./ports.ts";

type Obj = Namespace | Pod | Node | NetworkPolicy | SecurityPolicy | ClusterSecurityPolicy | SecurityIdentity;

export type Change = { type: "upsert"; object: Obj } | { type: "delete"; object: Obj };

function keyOf(o: Obj): string {
  return o.metadata.namespace
    ? `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`
    : `${o.kind}/${o.metadata.name}`;
}

function prefixesOf(p: NormPolicy | undefined): string {
  if (!p) return "";
  const s = new Set<string>();
  for (const r of p.rules)
    for (const c of r.peers.cidrs) for (const k of [c.cidrKey, ...c.exceptKeys]) s.add(k);
  return [...s].sort().join(",");
}

export interface ApplyResult {
  delta: MapDelta;
  errors: CompileError[];
  // Endpoints recompiled (for metrics: how much one change cost).
  recompiled: number;
}

export class IncrementalCompiler {
  private readonly objects = new Map<string, Obj>();
  private readonly options: CompileOptions;
  private policies: NormPolicy[] = [];
  private compiler!: PolicyCompiler;
  private endpoints: LocalEndpoint[] = [];
  private current: MapState = { ipcache: [], endpoints: [] };

  constructor(inputs: PolicyInputs, options: CompileOptions) {
    this.options = options;
    for (const o of [
      ...inputs.namespaces,
      ...inputs.pods,
      ...(inputs.nodes ?? []),
      ...(inputs.networkPolicies ?? []),
      ...(inputs.securityPolicies ?? []),
      ...(inputs.clusterSecurityPolicies ?? []),
    ])
      this.objects.set(keyOf(o), o);
    for (const i of inputs.identities) this.identities.set(i.id, i);
    this.rebuild();
  }

  private readonly identities = new Map<number, Identity>();

  get state(): MapState {
    return this.current;
  }

  inputs(): PolicyInputs {
    const of = <K extends Obj["kind"]>(kind: K) =>
      [...this.objects.values()].filter((o): o is Extract<Obj, { kind: K }> => o.kind === kind);
    return {
      namespaces: of("Namespace"),
      pods: of("Pod"),
      nodes: of("Node"),
      networkPolicies: of("NetworkPolicy"),
      securityPolicies: of("SecurityPolicy"),
      clusterSecurityPolicies: of("ClusterSecurityPolicy"),
      identities: [...this.identities.values()].sort((a, b) => a.id - b.id),
    };
  }

  private rebuild(): CompileError[] {
    const parts = compileParts(this.inputs(), { ...this.options, previous: this.current });
    this.policies = parts.policies;
    this.compiler = parts.compiler;
    this.endpoints = parts.endpoints;
    this.current = parts.result.state;
    return parts.result.errors;
  }

  apply(change: Change): ApplyResult {
    const o = change.object;
    const key = keyOf(o);
    if (o.kind === "SecurityIdentity") {
      const id = Number(o.metadata.name);
      if (change.type === "upsert") this.identities.set(id, { id, labels: o.spec.labels ?? {} });
      else this.identities.delete(id);
      return this.full();
    }
    const before = this.objects.get(key);
    if (change.type === "upsert") this.objects.set(key, o);
    else this.objects.delete(key);
    if (o.kind === "NetworkPolicy" || o.kind === "SecurityPolicy" || o.kind === "ClusterSecurityPolicy") {
      const oldNorm = before
        ? this.policies.find((p) => p.key === policyKey(o.kind, o.metadata.namespace, o.metadata.name ?? ""))
        : undefined;
      const newNorm = change.type === "upsert" ? normalizePolicy(o) : undefined;
      if (prefixesOf(oldNorm) === prefixesOf(newNorm)) return this.policyChange(oldNorm, newNorm);
    }
    return this.full();
  }

  private full(): ApplyResult {
    const before = this.current;
    const errors = this.rebuild();
    return { delta: diffStates(before, this.current), errors, recompiled: this.endpoints.length };
  }

  private policyChange(oldNorm: NormPolicy | undefined, newNorm: NormPolicy | undefined): ApplyResult {
    if (oldNorm) this.policies.splice(this.policies.indexOf(oldNorm), 1);
    if (newNorm) {
      let lo = 0;
      let hi = this.policies.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (comparePolicies(this.policies[mid], newNorm) < 0) lo = mid + 1;
        else hi = mid;
      }
      this.policies.splice(lo, 0, newNorm);
    }
    const errors = policyErrors(newNorm ? [newNorm] : []);
    const byKey = new Map(this.current.endpoints.map((e, i) => [e.key, i]));
    const cache = new Map<string, EndpointCompilation>();
    const delta: MapDelta = { ipcacheUpsert: [], ipcacheRemove: [], endpoints: [], removedEndpoints: [] };
    const endpoints = [...this.current.endpoints];
    let recompiled = 0;
    for (const ep of this.endpoints) {
      const touched =
        (oldNorm && selectsEndpoint(oldNorm, ep.labels)) || (newNorm && selectsEndpoint(newNorm, ep.labels));
      if (!touched) continue;
      recompiled++;
      const cacheKey = `${ep.labelKey}|${namedPortsKey(ep.namedPorts)}`;
      let c = cache.get(cacheKey);
      if (!c) {
        c = this.compiler.compileEndpoint(ep, this.policies);
        cache.set(cacheKey, c);
      }
      const i = byKey.get(ep.key)!;
      const prev = endpoints[i];
      const policy = capEndpoint(ep.key, c, this.options.capacity ?? DEFAULT_CAPACITY, prev.policy, errors);
      const next: EndpointState = { ...prev, policy };
      const d = diffEndpoint(prev, next);
      if (d) delta.endpoints.push(d);
      endpoints[i] = next;
    }
    this.current = { ipcache: this.current.ipcache, endpoints };
    return { delta, errors, recompiled };
  }
}
