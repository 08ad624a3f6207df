// The policy status controller (leader only): writes each SecurityPolicy's and
// ClusterSecurityPolicy's status (Accepted, Enforced, counts) from the pods it selects and the
// nodes' SecurityNodeStatus reports (policy-status.ts computes it). A write happens only when the
// computed status differs from the object's, through the status subresource with server-side
// apply. Node-report and pod changes are coalesced (debounceMs) so a policy change costs one status
// write per node report at most: O(nodes), never O(nodes × policies). NetworkPolicy has no status
// we own; it is only counted in the policy-set hash.
//
// What a node enforces: its report carries a hash of its enforced policy set and its last changes
// (kube/node-status.ts); the controller keeps the policy sets it has seen (policy-set-log.ts) and
// reads a report's hash as one of them, the node's known state. A node whose hash is not (yet) one
// of them keeps its last known state (generations only grow, a failure is reported as an error) and
// waits: when the operator's own view reaches that hash (its watch was behind the node's), the node
// moves to it. A policy is enforced on a node at the generation its known state has, or its recent
// changes list, whichever is higher; never from a guess, so a node that cannot be read counts as
// pending (Enforced=False), not enforcing.
//
// Cost at scale (issue 14: 50,000 pods, 1,000 nodes, 1,000 policies), measured by test/scale: an
// event recomputes only the policies it can change, and a recompute only reads what that policy
// needs. A node report recomputes the policies whose generation on that node may have changed: those
// changed between its previous and new known state, and those whose recent entry or error changed;
// a pod event the policies that select its old or new label set; the selected pods come from an
// index by namespace and label set (pod-groups.ts); only the nodes those pods run on are read;
// normalization and validation are cached until what they depend on changes. SIG Network's kinds (ClusterNetworkPolicy,
// AdminNetworkPolicy, BaselineAdminNetworkPolicy), whose CRDs may be absent, get the same
// computation written as Sluice's own conditions in their shared conditions list (policy-status.ts
// upstreamConditions); their informers are optional and simply empty while the CRDs are missing.
import type { CustomObjectsApi, KubernetesObject } from "@kubernetes/client-node";
import type { NetworkPolicy } from "../api/k8s.ts";
import type { ClusterSecurityPolicy, SecurityPolicy } from "../api/types.generated.ts";
import { applyCustomStatus } from "../kube/apply.ts";
import { isNotFound } from "../kube/errors.ts";
import type { EventRecorder } from "../kube/event-recorder.ts";
import type { WatchCache } from "../kube/informer.ts";
import { type NodeReport, parseNodeReport, type SecurityNodeStatusObject } from "../kube/node-status.ts";
import {
  ADMIN_NETWORK_POLICIES,
  apiVersionOf,
  BASELINE_ADMIN_NETWORK_POLICIES,
  CLUSTER_NETWORK_POLICIES,
  CLUSTER_SECURITY_POLICIES,
  type Resource,
  SECURITY_POLICIES,
} from "../kube/resources.ts";
import { WorkQueue } from "../kube/workqueue.ts";
import { type Logger, silentLogger } from "../observe/log.ts";
import { type AnyPolicy, type NormPolicy, normalizePolicy } from "../policy/normalize.ts";
import { runController } from "./frame.ts";
import type { OperatorMetrics } from "./metrics.ts";
import type { NamespaceObject, PodObject } from "./identity-controller.ts";
import { PodGroups } from "./pod-groups.ts";
import { PolicySetLog } from "./policy-set-log.ts";
import {
  aggregate,
  type Condition,
  type NodeEnforcement,
  ownConditions,
  type PolicyStatus,
  type PolicyView,
  sameConditions,
  selects,
  sameStatus,
  upstreamConditions,
} from "./policy-status.ts";

export type SecurityPolicyObject = SecurityPolicy & KubernetesObject;
export type ClusterSecurityPolicyObject = ClusterSecurityPolicy & KubernetesObject;
export type NetworkPolicyObject = NetworkPolicy & KubernetesObject;
/** A policy of SIG Network's kinds as far as status goes: its metadata and shared conditions. */
export interface UpstreamPolicyObject extends KubernetesObject {
  metadata: NonNullable<KubernetesObject["metadata"]>;
  spec?: unknown;
  status?: { conditions?: Condition[] };
}
type AnyStatusPolicy = SecurityPolicyObject | ClusterSecurityPolicyObject | UpstreamPolicyObject;

// One kind whose status this controller writes.
interface StatusKind {
  resource: Resource;
  informer: WatchCache<AnyStatusPolicy>;
  // Conditions in a list shared with other implementations (SIG Network's kinds).
  upstream: boolean;
}

export interface StatusControllerOptions {
  custom: CustomObjectsApi;
  securityPolicies: WatchCache<SecurityPolicyObject>;
  clusterSecurityPolicies: WatchCache<ClusterSecurityPolicyObject>;
  networkPolicies?: WatchCache<NetworkPolicyObject>;
  /** SIG Network's kinds (optional informers: empty while their CRDs are absent). */
  clusterNetworkPolicies?: WatchCache<UpstreamPolicyObject>;
  adminNetworkPolicies?: WatchCache<UpstreamPolicyObject>;
  baselineAdminNetworkPolicies?: WatchCache<UpstreamPolicyObject>;
  pods: WatchCache<PodObject>;
  namespaces: WatchCache<NamespaceObject>;
  nodeStatuses: WatchCache<SecurityNodeStatusObject>;
  isLeader: () => boolean;
  events?: EventRecorder;
  /** Semantic validation (the compiler's validatePolicy); default: normalization errors only. */
  validate?: (policy: AnyStatusPolicy) => Array<{ field: string; message: string }>;
  workers?: number;
  debounceMs?: number;
  log?: Logger;
  metrics?: OperatorMetrics;
}

const FIELD_MANAGER = "sluice-operator";

type Findings = Array<{ field: string; message: string }>;

// A policy's normalization and validation, valid while its generation (and, for a policy whose
// validation reads pods, the pod and namespace caches) stay as they were.
interface Prepared {
  uid: string;
  generation: number;
  podEpoch: number;
  norm: NormPolicy;
  errors: Findings;
  readsPods: boolean;
}

// A node's last report, and its errors serialized (to compare with the next one's).
interface SeenReport {
  report: NodeReport;
  errors: string;
}

export class StatusController {
  private readonly o: StatusControllerOptions;
  private readonly queue = new WorkQueue<string>();
  private readonly handlers: Array<() => void> = [];
  private readonly log: Logger;
  private readonly kinds: ReadonlyMap<string, StatusKind>;
  private readonly groups = new PodGroups();
  private readonly prepared = new Map<string, Prepared>();
  private readonly seenReports = new Map<string, SeenReport>();
  /** The policy sets seen, and each node's known state among them. */
  private readonly sets = new PolicySetLog();
  private readonly knownState = new Map<string, number>();
  /** Nodes whose reported hash is no state seen yet, by that hash. */
  private readonly waiting = new Map<string, Set<string>>();
  private waitCheck: NodeJS.Timeout | undefined;
  private debounce = 100;
  /** policy uid → work queue key (the kinds this controller writes). */
  private readonly keyByUid = new Map<string, string>();
  // Bumped on every pod or namespace change: validations that read pods are redone after it.
  private podEpoch = 0;
  /** Status writes done (observability and the no-flapping tests). */
  writes = 0;
  readonly writesByKey = new Map<string, number>();

  constructor(o: StatusControllerOptions) {
    this.o = o;
    this.log = (o.log ?? silentLogger()).child({ controller: "status" });
    const kinds: StatusKind[] = [
      { resource: SECURITY_POLICIES, informer: o.securityPolicies, upstream: false },
      { resource: CLUSTER_SECURITY_POLICIES, informer: o.clusterSecurityPolicies, upstream: false },
    ];
    for (const [resource, informer] of [
      [CLUSTER_NETWORK_POLICIES, o.clusterNetworkPolicies],
      [ADMIN_NETWORK_POLICIES, o.adminNetworkPolicies],
      [BASELINE_ADMIN_NETWORK_POLICIES, o.baselineAdminNetworkPolicies],
    ] as const)
      if (informer) kinds.push({ resource, informer, upstream: true });
    this.kinds = new Map(kinds.map((k) => [k.resource.kind, k]));
  }

  /** Runs until the signal aborts (leadership lost or shutdown). */
  run(signal: AbortSignal): Promise<void> {
    return runController(
      {
        name: "status",
        caches: [
          ...[...this.kinds.values()].map((k) => k.informer),
          this.o.pods,
          this.o.namespaces,
          this.o.nodeStatuses,
          ...(this.o.networkPolicies ? [this.o.networkPolicies] : []),
        ],
        queue: this.queue,
        start: () => {
          this.subscribe();
          this.enqueueAll(0);
          return () => {
            for (const off of this.handlers.splice(0)) off();
            if (this.waitCheck) clearTimeout(this.waitCheck);
            this.waitCheck = undefined;
          };
        },
        reconcile: (key) => this.reconcile(key),
        workers: this.o.workers,
        log: this.o.log ?? silentLogger(),
        metrics: this.o.metrics?.controllers,
        describeKey: (key) => ({ policy: key }),
      },
      signal,
    );
  }

  private subscribe(): void {
    const on = <T extends KubernetesObject>(inf: WatchCache<T>, cb: (o: T, deleted: boolean) => void) => {
      for (const ev of ["add", "update", "delete"] as const) {
        const h = (o: T) => cb(o, ev === "delete");
        inf.on(ev, h);
        this.handlers.push(() => inf.off(ev, h));
      }
    };
    const debounce = this.o.debounceMs ?? 100;
    this.debounce = debounce;
    for (const k of this.kinds.values())
      on(k.informer, (p, deleted) => {
        this.recordSet(p, deleted);
        this.trackUid(k.resource, p, deleted);
        this.queue.add(keyOf(k.resource, p));
      });
    // Every policy an agent compiles, as kube-agent.ts enforcementSummary lists them.
    for (const k of this.kinds.values()) for (const p of k.informer.list()) this.recordSet(p, false);
    for (const p of this.o.networkPolicies?.list() ?? []) this.recordSet(p, false);
    for (const p of this.o.pods.list()) this.groups.update(p);
    this.knownState.clear();
    this.waiting.clear();
    for (const s of this.o.nodeStatuses.list()) {
      const node = s.metadata?.name ?? "";
      const r = seen(s);
      this.seenReports.set(node, r);
      this.locate(node, r.report.setHash);
    }
    on(this.o.pods, (p, deleted) => {
      this.podEpoch++;
      const touched = this.groups.update(p, deleted);
      if (touched.length > 0) this.enqueueSelecting(touched, debounce);
    });
    on(this.o.namespaces, (ns) => {
      this.podEpoch++;
      // Namespace labels: cluster-wide policies may select it now or no longer.
      this.enqueueWhere(
        (k, p) => !k.resource.namespaced || p.metadata.namespace === ns.metadata.name,
        debounce,
      );
    });
    on(this.o.nodeStatuses, (s, deleted) => this.onNodeReport(s, deleted, debounce));
    // A NetworkPolicy has no status of ours, but it is in every node's enforced set.
    if (this.o.networkPolicies) on(this.o.networkPolicies, (p, deleted) => this.recordSet(p, deleted));
  }

  // A policy's generation into the set log; a new state may be one that waiting nodes reported.
  private recordSet(p: KubernetesObject, deleted: boolean): void {
    const uid = p.metadata?.uid;
    if (!uid || !this.sets.set(uid, deleted ? undefined : (p.metadata?.generation ?? 0))) return;
    if (this.waiting.size === 0 || this.waitCheck) return;
    // Hashed once per burst of policy events, not per event.
    this.waitCheck = setTimeout(() => {
      this.waitCheck = undefined;
      const nodes = this.waiting.get(this.sets.currentHash());
      if (!nodes) return;
      this.waiting.delete(this.sets.currentHash());
      const changed = new Set<string>();
      for (const node of nodes) this.moveTo(node, this.sets.seq, changed);
      this.enqueueUids(changed);
    }, 0);
    this.waitCheck.unref();
  }

  // Where a node's reported hash puts it: a known state, or waiting for one.
  private locate(node: string, hash: string, changed?: Set<string>): void {
    this.unwait(node);
    const state = this.sets.stateOf(hash);
    if (state !== undefined) {
      this.moveTo(node, state, changed);
      return;
    }
    const nodes = this.waiting.get(hash);
    if (nodes) nodes.add(node);
    else this.waiting.set(hash, new Set([node]));
  }

  private unwait(node: string): void {
    for (const [h, nodes] of this.waiting) if (nodes.delete(node) && nodes.size === 0) this.waiting.delete(h);
  }

  // The node's known state becomes `state`; the policies whose generation differs between the two
  // go into `changed` (all of them when the node had none, or the old one is too old to compare).
  private moveTo(node: string, state: number, changed?: Set<string>): void {
    const before = this.knownState.get(node);
    this.knownState.set(node, state);
    if (!changed || before === state) return;
    const between = before === undefined ? undefined : this.sets.changedBetween(before, state);
    if (between) for (const uid of between) changed.add(uid);
    else for (const uid of this.keyByUid.keys()) changed.add(uid);
  }

  private enqueueUids(uids: Iterable<string>): void {
    const keys: string[] = [];
    for (const uid of uids) {
      const key = this.keyByUid.get(uid);
      if (key) keys.push(key);
    }
    this.queue.addAllAfter(keys, this.debounce);
  }

  private trackUid(r: Resource, p: KubernetesObject, deleted: boolean): void {
    const uid = p.metadata?.uid;
    if (!uid) return;
    if (deleted) {
      this.keyByUid.delete(uid);
      this.prepared.delete(keyOf(r, p));
    } else this.keyByUid.set(uid, keyOf(r, p));
  }

  // A node's new report: the policies whose generation on it may differ from its last one's.
  private onNodeReport(s: SecurityNodeStatusObject, deleted: boolean, debounce: number): void {
    const node = s.metadata?.name ?? "";
    const before = this.seenReports.get(node);
    const now = deleted ? undefined : seen(s);
    const changed = new Set<string>();
    if (now) {
      this.seenReports.set(node, now);
      if (now.report.setHash !== before?.report.setHash) this.locate(node, now.report.setHash, changed);
    } else {
      this.seenReports.delete(node);
      this.knownState.delete(node);
      this.unwait(node);
      for (const uid of this.keyByUid.keys()) changed.add(uid);
    }
    const a = before?.report.recent ?? new Map<string, number>();
    const b = now?.report.recent ?? new Map<string, number>();
    for (const [uid, g] of a) if (b.get(uid) !== g) changed.add(uid);
    for (const [uid, g] of b) if (a.get(uid) !== g) changed.add(uid);
    if (before?.errors !== now?.errors)
      for (const r of [before, now])
        for (const e of r?.report.errors ?? []) {
          if (!e.uid) {
            this.enqueueAll(debounce);
            return;
          }
          changed.add(e.uid);
        }
    this.enqueueUids(changed);
  }

  private enqueueAll(delayMs: number): void {
    this.enqueueWhere(() => true, delayMs);
  }

  private enqueueWhere(pred: (k: StatusKind, p: AnyStatusPolicy) => boolean, delayMs: number): void {
    const keys: string[] = [];
    for (const k of this.kinds.values())
      for (const p of k.informer.list()) if (pred(k, p)) keys.push(keyOf(k.resource, p));
    this.queue.addAllAfter(keys, delayMs);
  }

  // Policies that select (by their current generation) any of the pod groups a pod event touched.
  private enqueueSelecting(
    groups: ReadonlyArray<{ namespace: string; labels: Readonly<Record<string, string>> }>,
    delayMs: number,
  ): void {
    const nsLabels = (ns: string) => this.o.namespaces.get(ns)?.metadata.labels;
    const keys: string[] = [];
    for (const k of this.kinds.values()) {
      const namespaces = k.resource.namespaced ? [...new Set(groups.map((g) => g.namespace))] : [undefined];
      for (const ns of namespaces)
        for (const p of k.informer.list(ns)) {
          const view = this.prepare({ ...p, kind: k.resource.kind } as AnyStatusPolicy).view;
          if (groups.some((g) => selects(view, g, nsLabels))) keys.push(keyOf(k.resource, p));
        }
    }
    this.queue.addAllAfter(keys, delayMs);
  }

  // Normalization and validation of a policy, cached per generation (validation reads the pods
  // only for named ports, policy/validate.ts: then also per pod epoch).
  private prepare(policy: AnyStatusPolicy): { view: PolicyView; norm: NormPolicy } {
    const key = keyOf(this.kinds.get(policy.kind ?? "")?.resource ?? SECURITY_POLICIES, policy);
    const uid = policy.metadata.uid ?? "";
    const generation = policy.metadata.generation ?? 0;
    let p = this.prepared.get(key);
    if (!p || p.uid !== uid || p.generation !== generation || (p.readsPods && p.podEpoch !== this.podEpoch)) {
      const norm = normalizePolicy(policy as AnyPolicy);
      // The compiler's validation includes the normalization errors; without it, use those alone.
      const errors = this.o.validate ? this.o.validate(policy) : norm.errors;
      const readsPods = norm.rules.some((r) => r.ports?.some((x) => typeof x.port === "string"));
      p = { uid, generation, podEpoch: this.podEpoch, norm, errors, readsPods };
      this.prepared.set(key, p);
    }
    return {
      norm: p.norm,
      view: {
        uid,
        generation,
        subjectNamespace: p.norm.subjectNamespace,
        subjectPods: p.norm.subjectPods,
        errors: p.errors,
      },
    };
  }

  /** The status a policy should have now, from the indexes run() keeps (exposed for tests). */
  compute(policy: AnyStatusPolicy): {
    status: PolicyStatus;
    nodeErrors: Array<{ node: string; message: string }>;
  } {
    const { view } = this.prepare(policy);
    const upstream = this.kinds.get(policy.kind ?? "")?.upstream ?? false;
    const conditions = policy.status?.conditions;
    const namespaceLabels = (ns: string) => this.o.namespaces.get(ns)?.metadata.labels;
    const pods = [...this.groups.selected(view, namespaceLabels)];
    // What the nodes running selected pods say about this policy alone.
    const nodes = new Map<string, NodeEnforcement>();
    for (const pod of pods) {
      const node = pod.nodeName;
      if (!node || nodes.has(node)) continue;
      const r = this.seenReports.get(node)?.report;
      if (r) nodes.set(node, { errors: r.errors, generation: this.enforcedGeneration(node, r, view.uid) });
    }
    return aggregate({
      policy: view,
      pods,
      namespaceLabels,
      nodes,
      current: { conditions: upstream ? ownConditions(conditions) : conditions },
      now: new Date(),
    });
  }

  // The generation of a policy a node is known to enforce: its known state's, or its recent list's.
  private enforcedGeneration(node: string, report: NodeReport, uid: string): number | undefined {
    const state = this.knownState.get(node);
    const fromState = state === undefined ? undefined : this.sets.generationAt(state, uid);
    const recent = report.recent.get(uid);
    if (fromState === undefined) return recent;
    return recent === undefined ? fromState : Math.max(fromState, recent);
  }

  private async reconcile(key: string): Promise<undefined> {
    const { kind, namespace, name } = parseKey(key);
    const k = this.kinds.get(kind);
    if (!k) return undefined;
    const { resource } = k;
    const cached = k.informer.get(name, namespace);
    if (!cached) return undefined;
    // Watch events carry no kind on their objects' behalf here: the cache is of one kind.
    const policy = { ...cached, kind: resource.kind } as AnyStatusPolicy;
    const { status, nodeErrors } = this.compute(policy);
    const current = policy.status?.conditions;
    let body: Record<string, unknown>;
    if (k.upstream) {
      const own = upstreamConditions(status);
      if (sameConditions(own, current)) return undefined;
      // Only Sluice's entries: the list is a map keyed by type, so the apply leaves the other
      // implementations' conditions to their managers.
      body = { conditions: own };
    } else {
      if (sameStatus(status, policy.status as Partial<PolicyStatus> | undefined)) return undefined;
      body = status as unknown as Record<string, unknown>;
    }
    if (!this.o.isLeader()) throw new Error("not the leader any more");
    const t0 = performance.now();
    try {
      await applyCustomStatus(this.o.custom, resource, { name, namespace }, body, FIELD_MANAGER);
    } catch (err) {
      if (isNotFound(err)) {
        this.o.metrics?.statusWrite("gone");
        return undefined; // deleted meanwhile
      }
      this.o.metrics?.statusWrite("error");
      this.o.metrics?.apiError(resource.plural, "apply");
      throw err;
    }
    this.o.metrics?.statusWrite("ok");
    this.writes++;
    this.writesByKey.set(key, (this.writesByKey.get(key) ?? 0) + 1);
    // Per write, so debug; what operators act on are the conditions and events the write carries.
    this.log.debug(
      {
        policy: key,
        generation: policy.metadata.generation,
        conditions: Object.fromEntries(status.conditions.map((c) => [c.type, c.reason])),
        write_ms: Math.round(performance.now() - t0),
      },
      "policy status written",
    );
    await this.emitEvents(
      resource,
      policy,
      status,
      k.upstream ? ownConditions(current) : (current ?? []),
      nodeErrors,
    );
    return undefined;
  }

  private async emitEvents(
    resource: Resource,
    policy: AnyStatusPolicy,
    status: PolicyStatus,
    prev: readonly Condition[],
    nodeErrors: Array<{ node: string; message: string }>,
  ): Promise<void> {
    const events = this.o.events;
    if (!events) return;
    const ref = {
      apiVersion: apiVersionOf(resource),
      kind: resource.kind,
      name: policy.metadata.name ?? "",
      namespace: policy.metadata.namespace,
      uid: policy.metadata.uid,
    };
    const changed = (type: string, reason: string) => {
      const now = status.conditions.find((c) => c.type === type);
      const before = prev.find((c) => c.type === type);
      return now?.reason === reason && (before?.reason !== reason || before.message !== now.message);
    };
    if (changed("Accepted", "Invalid")) {
      const c = status.conditions.find((x) => x.type === "Accepted");
      await events.record(ref, "Warning", "Rejected", c?.message ?? "invalid policy");
    }
    if (changed("Enforced", "EnforcementFailed")) {
      for (const e of nodeErrors.slice(0, 5))
        await events.record(ref, "Warning", "EnforcementFailed", `node ${e.node}: ${e.message}`);
    }
  }
}

function seen(s: SecurityNodeStatusObject): SeenReport {
  const report = parseNodeReport(s);
  return { report, errors: JSON.stringify(report.errors) };
}

function keyOf(resource: Resource, o: KubernetesObject): string {
  return resource.namespaced
    ? `${resource.kind}/${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`
    : `${resource.kind}/${o.metadata?.name ?? ""}`;
}

function parseKey(key: string): { kind: string; namespace?: string; name: string } {
  const parts = key.split("/");
  if (parts.length === 3) return { kind: parts[0], namespace: parts[1], name: parts[2] };
  return { kind: parts[0], name: parts[1] };
}
