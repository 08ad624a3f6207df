// The compiler as a long-lived object: one change in, one MapDelta out. A policy change that adds
// or removes no CIDR recompiles only the endpoints the old or new version selects, against the
// unchanged universe; any other change (pod, namespace, node, identity, a policy's CIDRs)
// rebuilds the universe and diffs every endpoint. Either way old state + delta == compile(inputs).
//
// The agent's keyed mode: record() takes changes without compiling, recompile(keys) then compiles
// the named endpoints. It adds on its own what a caller cannot know cheaply: endpoints that are new,
// gone, relabelled or renumbered, and when peer identities changed, the endpoints one of them
// reaches (compile.ts ruleReaches: an identity's entries depend only on it and the rules; every
// endpoint when the node's own identities changed). Its universe builds reuse what earlier ones
// derived (universe.ts UniverseMemo). What it leaves to the caller: naming the endpoints a policy
// change touches (those the old or the new version selects; see agent/reconcile-keys.ts).
//
// Node peers (normalize.ts NodePeer) refine node addresses in the universe like policy CIDRs do: a
// policy change that adds or removes a node selector rebuilds it, and a Node change (labels,
// addresses) rebuilds it like any Node change.
import type { Namespace, NetworkPolicy, Node, Pod } from "../api/k8s.ts";
import type {
  AdminNetworkPolicy,
  BaselineAdminNetworkPolicy,
  ClusterNetworkPolicy,
  ClusterSecurityPolicy,
  SecurityIdentity,
  SecurityPolicy,
} from "../api/types.generated.ts";
import { labelSetKey, type SplitLabels } from "../identity/labels.ts";
import type { Identity } from "../identity/static.ts";
import {
  type CompileError,
  type CompileOptions,
  capEndpoint,
  compileParts,
  DEFAULT_CAPACITY,
  type EndpointCompilation,
  endpointIdsFor,
  type LocalEndpoint,
  localEndpoints,
  PolicyCompiler,
  type PolicyInputs,
  policyErrors,
  ruleReaches,
  selectsEndpoint,
  universeFor,
} from "./compile.ts";
import { diffEndpoint, diffIpcache, diffStates, type MapDelta } from "./diff.ts";
import { type EndpointState, type MapState, ReservedIdentity } from "./mapstate.ts";
import {
  type AnyPolicy,
  comparePolicies,
  isPolicyKind,
  type NormPolicy,
  normalizePolicy,
  policyKey,
} from "./normalize.ts";
import { namedPortsKey } from "./ports.ts";
import { type PeerIdentity, type Universe, UniverseMemo } from "./universe.ts";

/** Every kind of object the compiler takes: what the agent watches. */
export type CompilerObject =
  | Namespace
  | Pod
  | Node
  | NetworkPolicy
  | SecurityPolicy
  | ClusterSecurityPolicy
  | ClusterNetworkPolicy
  | AdminNetworkPolicy
  | BaselineAdminNetworkPolicy
  | SecurityIdentity;

export type Change = { type: "upsert"; object: CompilerObject } | { type: "delete"; object: CompilerObject };

// Joined, one flat string: a template literal's cons strings cost more than the key (cidr.ts formatPrefix).
export function objectKey(kind: string, namespace: string | undefined, name: string): string {
  return namespace ? [kind, namespace, name].join("/") : [kind, name].join("/");
}

// What of a policy the universe depends on: its CIDRs and its node selectors.
function prefixesOf(p: NormPolicy | undefined): string {
  if (!p) return "";
  const s = new Set<string>();
  for (const r of p.rules) {
    for (const c of r.peers.cidrs) for (const k of [c.cidrKey, ...c.exceptKeys]) s.add(k);
    for (const n of r.peers.nodes) s.add(`node ${n.key}`);
  }
  return [...s].sort().join(",");
}

export interface ApplyResult {
  delta: MapDelta;
  errors: CompileError[];
  // Endpoints recompiled (for metrics: how much one change cost).
  recompiled: number;
}

export interface RecompileResult {
  delta: MapDelta;
  // Keys of the endpoints compiled in this pass.
  recompiled: string[];
  // Whether recorded changes made it rebuild the peer universe, and whether the table of peer
  // identities changed with it (then the endpoints a changed peer reaches were recompiled).
  universeRebuilt: boolean;
  peersChanged: boolean;
}

// The peer identities that differ between two universes: in one only, or with anything a rule can
// match them by changed. Only these can change a compiled endpoint's entries (ruleReaches).
export function changedPeers(before: Universe, after: Universe): Set<number> {
  const out = new Set<number>();
  for (const [id, p] of after.identities) {
    const q = before.identities.get(id);
    if (!q || !samePeer(q, p)) out.add(id);
  }
  for (const id of before.identities.keys()) if (!after.identities.has(id)) out.add(id);
  return out;
}

function samePeer(a: PeerIdentity, b: PeerIdentity): boolean {
  return (
    a.base === b.base &&
    sameLabels(a.labels, b.labels) &&
    sameSet(a.prefixes, b.prefixes) &&
    namedPortsKey(a.namedPorts) === namedPortsKey(b.namedPorts) &&
    sameSet(a.nodeSelectors ?? EMPTY, b.nodeSelectors ?? EMPTY)
  );
}

const EMPTY: ReadonlySet<string> = new Set();

// The universe memo hands an unchanged identity the same split labels: compared by reference first.
function sameLabels(a: SplitLabels | undefined, b: SplitLabels | undefined): boolean {
  if (a === b) return true;
  if (!a || !b) return false;
  return (
    a.namespace === b.namespace &&
    labelSetKey(a.podLabels) === labelSetKey(b.podLabels) &&
    labelSetKey(a.namespaceLabels) === labelSetKey(b.namespaceLabels)
  );
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

// More changed peers than this in one pass: every endpoint is recompiled rather than checked rule by
// rule against each of them (a policy CIDR added refines thousands at once).
const CHANGED_PEERS_CHECKED = 256;

function sameLocalEndpoint(a: LocalEndpoint, b: LocalEndpoint): boolean {
  return (
    a.labelKey === b.labelKey &&
    a.identity === b.identity &&
    namedPortsKey(a.namedPorts) === namedPortsKey(b.namedPorts)
  );
}

export class IncrementalCompiler {
  // By kind, then objectKey(): each pass that rebuilds the universe lists the pods, namespaces and
  // nodes apart.
  private readonly objects = new Map<string, Map<string, CompilerObject>>();
  private readonly options: CompileOptions;
  private policies: NormPolicy[] = [];
  private compiler!: PolicyCompiler;
  private endpoints: LocalEndpoint[] = [];
  private current: MapState = { ipcache: [], endpoints: [] };
  private universeDirty = false;
  // What universe builds derived, for the next ones (full rebuilds included).
  private readonly memo: UniverseMemo;
  // Overflow errors by endpoint key, for endpoints compiled one at a time.
  private readonly overflow = new Map<string, CompileError>();

  // options.previous: the state enforced now.
  constructor(inputs: PolicyInputs, options: CompileOptions) {
    this.options = options;
    this.memo = new UniverseMemo(options.labelOptions);
    if (options.previous) this.current = options.previous;
    for (const o of [
      ...inputs.namespaces,
      ...inputs.pods,
      ...(inputs.nodes ?? []),
      ...(inputs.networkPolicies ?? []),
      ...(inputs.securityPolicies ?? []),
      ...(inputs.clusterSecurityPolicies ?? []),
      ...(inputs.clusterNetworkPolicies ?? []),
      ...(inputs.adminNetworkPolicies ?? []),
      ...(inputs.baselineAdminNetworkPolicies ?? []),
    ])
      this.kindMap(o.kind).set(objectKey(o.kind, o.metadata.namespace, o.metadata.name ?? ""), o);
    for (const i of inputs.identities) this.identities.set(i.id, i);
    this.rebuild();
  }

  private readonly identities = new Map<number, Identity>();

  get state(): MapState {
    return this.current;
  }

  inputs(): PolicyInputs {
    const of = <K extends CompilerObject["kind"]>(kind: K) =>
      [...(this.objects.get(kind)?.values() ?? [])] as Extract<CompilerObject, { kind: K }>[];
    return {
      namespaces: of("Namespace"),
      pods: of("Pod"),
      nodes: of("Node"),
      networkPolicies: of("NetworkPolicy"),
      securityPolicies: of("SecurityPolicy"),
      clusterSecurityPolicies: of("ClusterSecurityPolicy"),
      clusterNetworkPolicies: of("ClusterNetworkPolicy"),
      adminNetworkPolicies: of("AdminNetworkPolicy"),
      baselineAdminNetworkPolicies: of("BaselineAdminNetworkPolicy"),
      identities: [...this.identities.values()].sort((a, b) => a.id - b.id),
    };
  }

  // The local endpoints as last compiled (what an event is matched against).
  get localEndpoints(): readonly LocalEndpoint[] {
    return this.endpoints;
  }

  // The normalized policies and the peer universe as last compiled: what names a flow event's rule id
  // and peer (monitor/view.ts). Read-only views; the compiler keeps replacing them.
  get normalizedPolicies(): readonly NormPolicy[] {
    return this.policies;
  }

  get universe(): Universe {
    return this.compiler.universe;
  }

  // The object as last recorded, by kind, namespace and name.
  object(kind: string, namespace: string | undefined, name: string): CompilerObject | undefined {
    return this.objects.get(kind)?.get(objectKey(kind, namespace, name));
  }

  // Keys of the policies that select a local endpoint: those a failure of its policy concerns.
  policiesSelecting(endpointKey: string): string[] {
    const ep = this.endpoints.find((e) => e.key === endpointKey);
    return ep ? this.policies.filter((p) => selectsEndpoint(p, ep.labels)).map((p) => p.key) : [];
  }

  // Every current error: invalid policies, then endpoints over capacity (as compile() orders them).
  get errors(): CompileError[] {
    return [
      ...policyErrors(this.policies),
      ...[...this.overflow].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, e]) => e),
    ];
  }

  private rebuild(): CompileError[] {
    const parts = compileParts(this.inputs(), this.options, this.memo);
    this.policies = parts.policies;
    this.compiler = parts.compiler;
    this.endpoints = parts.endpoints;
    this.current = parts.result.state;
    this.universeDirty = false;
    this.overflow.clear();
    for (const e of parts.result.errors)
      if (e.reason === "Overflow" && e.endpoint) this.overflow.set(e.endpoint, e);
    return parts.result.errors;
  }

  // Records a change without compiling anything; recompile() brings the state up to date.
  record(change: Change): void {
    const stored = this.store(change);
    if (stored.kind === "policy") {
      if (prefixesOf(stored.oldNorm) !== prefixesOf(stored.newNorm)) this.universeDirty = true;
      this.replacePolicy(stored.oldNorm, stored.newNorm);
      return;
    }
    this.universeDirty = true;
  }

  // Keeps the object (or identity) of a change; for a policy, its normalized form before and after.
  private store(
    change: Change,
  ):
    | { kind: "policy"; oldNorm: NormPolicy | undefined; newNorm: NormPolicy | undefined }
    | { kind: "identity" | "other" } {
    const o = change.object;
    if (o.kind === "SecurityIdentity") {
      const id = Number(o.metadata.name);
      if (change.type === "upsert") this.identities.set(id, { id, labels: o.spec.labels ?? {} });
      else this.identities.delete(id);
      return { kind: "identity" };
    }
    const key = objectKey(o.kind, o.metadata.namespace, o.metadata.name ?? "");
    const of = this.kindMap(o.kind);
    const before = of.get(key);
    // Pod label keys are kept per namespace labels object: one changed in place must not be reused.
    if (o.kind === "Namespace") this.memo.namespaceChanged();
    if (change.type === "upsert") of.set(key, o);
    else of.delete(key);
    if (!isPolicyKind(o.kind)) return { kind: "other" };
    const policy = o as AnyPolicy;
    const oldNorm = before
      ? this.policies.find(
          (p) => p.key === policyKey(policy.kind, o.metadata.namespace, o.metadata.name ?? ""),
        )
      : undefined;
    const newNorm = change.type === "upsert" ? normalizePolicy(policy) : undefined;
    return { kind: "policy", oldNorm, newNorm };
  }

  // Replaces the identity set (the agent resolves live identities from all SecurityIdentity objects).
  setIdentities(ids: readonly Identity[]): void {
    const same =
      ids.length === this.identities.size &&
      ids.every((i) => {
        const cur = this.identities.get(i.id);
        return (
          cur !== undefined && (cur.labels === i.labels || labelSetKey(cur.labels) === labelSetKey(i.labels))
        );
      });
    if (same) return;
    this.identities.clear();
    for (const i of ids) this.identities.set(i.id, i);
    this.universeDirty = true;
  }

  // Compiles the endpoints named in keys (plus what recorded changes require, see the file's head);
  // "all" recompiles every endpoint against the current universe.
  recompile(keys: Iterable<string> | "all"): RecompileResult {
    const before = this.current;
    let all = keys === "all";
    const named = new Set(keys === "all" ? [] : keys);
    let eps = this.endpoints;
    let ipcache = before.ipcache;
    const universeRebuilt = this.universeDirty;
    let peersChanged = false;
    let reached: (ep: LocalEndpoint) => boolean = () => false;
    if (this.universeDirty) {
      const inputs = this.inputs();
      const universe = universeFor(inputs, this.policies, this.options, this.memo);
      const changed = changedPeers(this.compiler.universe, universe);
      peersChanged = changed.size > 0;
      if (changed.size > CHANGED_PEERS_CHECKED) all = true;
      else if (peersChanged) {
        const peers = [...changed].flatMap((id) =>
          [this.compiler.universe.identities.get(id), universe.identities.get(id)].filter(
            (p) => p !== undefined,
          ),
        );
        // The node's own identities are in every endpoint's allow-localhost entries and fail-closed policy.
        if (peers.some((p) => p.base === ReservedIdentity.HOST)) all = true;
        else reached = this.reachedBy(peers);
      }
      this.compiler = new PolicyCompiler(universe, this.options);
      eps = localEndpoints(inputs, universe, this.options.node, this.options.labelOptions);
      ipcache = universe.ipcache;
      this.universeDirty = false;
    }
    const prevEp = new Map(this.endpoints.map((e) => [e.key, e]));
    const prevState = new Map(before.endpoints.map((e) => [e.key, e]));
    const fixed = new Map(this.options.endpointIds ?? []);
    for (const e of before.endpoints) fixed.set(e.key, e.id);
    const ids = endpointIdsFor(
      eps.map((e) => e.key),
      fixed,
    );
    const cache = new Map<string, EndpointCompilation>();
    const capacity = this.options.capacity ?? DEFAULT_CAPACITY;
    const delta: MapDelta = { ipcacheUpsert: [], ipcacheRemove: [], endpoints: [], removedEndpoints: [] };
    const endpoints: EndpointState[] = [];
    const recompiled: string[] = [];
    for (const ep of eps) {
      const prev = prevState.get(ep.key);
      const old = prevEp.get(ep.key);
      if (prev && old && !all && !named.has(ep.key) && sameLocalEndpoint(old, ep) && !reached(ep)) {
        endpoints.push(prev);
        continue;
      }
      recompiled.push(ep.key);
      const cacheKey = `${ep.labelKey}|${namedPortsKey(ep.namedPorts)}`;
      let c = cache.get(cacheKey);
      if (!c) {
        c = this.compiler.compileEndpoint(ep, this.policies);
        cache.set(cacheKey, c);
      }
      const errors: CompileError[] = [];
      const policy = capEndpoint(ep.key, c, capacity, errors);
      this.overflow.delete(ep.key);
      for (const e of errors) this.overflow.set(ep.key, e);
      const next: EndpointState = { key: ep.key, id: ids.get(ep.key)!, identity: ep.identity, policy };
      const d = diffEndpoint(prev, next);
      if (d) delta.endpoints.push(d);
      endpoints.push(d ? next : (prev ?? next));
    }
    const now = new Set(eps.map((e) => e.key));
    for (const e of before.endpoints)
      if (!now.has(e.key)) {
        delta.removedEndpoints.push(e.key);
        this.overflow.delete(e.key);
      }
    if (ipcache !== before.ipcache) Object.assign(delta, diffIpcache(before.ipcache, ipcache));
    this.endpoints = eps;
    this.current = { ipcache, endpoints, failClosed: this.compiler.failClosed };
    return { delta, recompiled, universeRebuilt, peersChanged };
  }

  // Whether a rule of a policy selecting the endpoint can give any of these peers entries: if none
  // can, its compiled entries are the same as before they changed (compile.ts ruleReaches).
  private reachedBy(peers: readonly PeerIdentity[]): (ep: LocalEndpoint) => boolean {
    const byLabels = new Map<string, boolean>();
    return (ep) => {
      let r = byLabels.get(ep.labelKey);
      if (r === undefined) {
        r = this.policies.some(
          (p) =>
            selectsEndpoint(p, ep.labels) && p.rules.some((rule) => peers.some((q) => ruleReaches(rule, q))),
        );
        byLabels.set(ep.labelKey, r);
      }
      return r;
    };
  }

  private kindMap(kind: string): Map<string, CompilerObject> {
    let m = this.objects.get(kind);
    if (!m) {
      m = new Map();
      this.objects.set(kind, m);
    }
    return m;
  }

  private replacePolicy(oldNorm: NormPolicy | undefined, newNorm: NormPolicy | undefined): void {
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
  }

  apply(change: Change): ApplyResult {
    const stored = this.store(change);
    if (stored.kind === "policy" && prefixesOf(stored.oldNorm) === prefixesOf(stored.newNorm))
      return this.policyChange(stored.oldNorm, stored.newNorm);
    return this.full();
  }

  private full(): ApplyResult {
    const before = this.current;
    const errors = this.rebuild();
    return { delta: diffStates(before, this.current), errors, recompiled: this.endpoints.length };
  }

  private policyChange(oldNorm: NormPolicy | undefined, newNorm: NormPolicy | undefined): ApplyResult {
    this.replacePolicy(oldNorm, newNorm);
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
      const before = errors.length;
      const policy = capEndpoint(ep.key, c, this.options.capacity ?? DEFAULT_CAPACITY, errors);
      this.overflow.delete(ep.key);
      if (errors.length > before) this.overflow.set(ep.key, errors[errors.length - 1]);
      const next: EndpointState = { ...prev, policy };
      const d = diffEndpoint(prev, next);
      if (d) delta.endpoints.push(d);
      endpoints[i] = next;
    }
    this.current = { ipcache: this.current.ipcache, endpoints, failClosed: this.compiler.failClosed };
    return { delta, errors, recompiled };
  }
}
