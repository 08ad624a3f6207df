// The policy status controller (leader only): writes each SecurityPolicy's and
// ClusterSecurityPolicy's status (Accepted, Enforced, counts) from the pods it selects and the
// nodes' SecurityNodeStatus reports (policy-status.ts computes it). A write happens only when the
// computed status differs from the object's, through the status subresource with server-side
// apply. Node-report and pod changes are coalesced (debounceMs) so a policy change costs one status
// write per node report at most: O(nodes), never O(nodes × policies). NetworkPolicy has no status
// we own; it is only counted in the policy-set hash.
//
// Cost at scale (issue 14: 50,000 pods, 1,000 nodes, 1,000 policies), measured by test/scale: an
// event recomputes only the policies it can change, and a recompute only reads what that policy
// needs. A node report recomputes the policies whose reported generation (or error) changed in it,
// found by comparing it with the node's previous report; a pod event the policies that select its
// old or new label set; the selected pods come from an index by namespace and label set
// (pod-groups.ts); only the reports of the nodes those pods run on are read, each for this policy's
// uid alone; normalization, validation and the cluster's policy-set hash are cached until what they
// depend on changes. SIG Network's kinds (ClusterNetworkPolicy,
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
import {
  type NodeReport,
  parseNodeReport,
  policySetHash,
  type SecurityNodeStatusObject,
} from "../kube/node-status.ts";
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
import {
  aggregate,
  type Condition,
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

// What the controller compares a node's next report with: the previous one's policy map and errors.
interface SeenReport {
  policies: Record<string, unknown>;
  errors: string;
  truncated: boolean;
  setHash: string;
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
  /** policy uid → work queue key (the kinds this controller writes). */
  private readonly keyByUid = new Map<string, string>();
  private setHash: string | undefined;
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
    for (const k of this.kinds.values())
      on(k.informer, (p, deleted) => {
        this.setHash = undefined;
        this.trackUid(k.resource, p, deleted);
        this.queue.add(keyOf(k.resource, p));
      });
    for (const p of this.o.pods.list()) this.groups.update(p);
    for (const s of this.o.nodeStatuses.list()) this.seenReports.set(s.metadata?.name ?? "", seen(s));
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
    if (this.o.networkPolicies)
      on(this.o.networkPolicies, () => {
        this.setHash = undefined;
        // The set hash only matters for nodes whose report is truncated.
        if ([...this.seenReports.values()].some((r) => r.truncated)) this.enqueueAll(debounce);
      });
  }

  private trackUid(r: Resource, p: KubernetesObject, deleted: boolean): void {
    const uid = p.metadata?.uid;
    if (!uid) return;
    if (deleted) {
      this.keyByUid.delete(uid);
      this.prepared.delete(keyOf(r, p));
    } else this.keyByUid.set(uid, keyOf(r, p));
  }

  // A node's new report: the policies whose entry (generation or error) differs from its last one.
  private onNodeReport(s: SecurityNodeStatusObject, deleted: boolean, debounce: number): void {
    const node = s.metadata?.name ?? "";
    const before = this.seenReports.get(node);
    const now = deleted ? undefined : seen(s);
    if (now) this.seenReports.set(node, now);
    else this.seenReports.delete(node);
    const changed = new Set<string>();
    const a = before?.policies ?? {};
    const b = now?.policies ?? {};
    // A truncated report stands for the policies it does not list through its set hash: when that
    // changed, those policies (not every policy: the scale rig's 1,001 policies made each of 1,000
    // node reports recompute all of them) are recomputed too.
    if (
      (before?.truncated || now?.truncated) &&
      (before?.setHash !== now?.setHash || before?.truncated !== now?.truncated)
    )
      for (const uid of this.keyByUid.keys()) if (!(uid in a) || !(uid in b)) changed.add(uid);
    for (const uid of Object.keys(a)) if (a[uid] !== b[uid]) changed.add(uid);
    for (const uid of Object.keys(b)) if (a[uid] !== b[uid]) changed.add(uid);
    if (before?.errors !== now?.errors)
      for (const r of [before, now])
        for (const e of JSON.parse(r?.errors ?? "[]") as Array<{ uid?: string }>) {
          if (!e.uid) {
            this.enqueueAll(debounce);
            return;
          }
          changed.add(e.uid);
        }
    const keys: string[] = [];
    for (const uid of changed) {
      const key = this.keyByUid.get(uid);
      if (key) keys.push(key);
    }
    this.queue.addAllAfter(keys, debounce);
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

  private clusterSetHash(): string {
    if (this.setHash !== undefined) return this.setHash;
    const all: Array<{ uid: string; generation: number }> = [];
    const push = (o: KubernetesObject) => {
      if (o.metadata?.uid) all.push({ uid: o.metadata.uid, generation: o.metadata.generation ?? 0 });
    };
    // Every policy an agent compiles, as kube-agent.ts enforcementSummary lists them.
    for (const k of this.kinds.values()) for (const p of k.informer.list()) push(p);
    for (const p of this.o.networkPolicies?.list() ?? []) push(p);
    this.setHash = policySetHash(all);
    return this.setHash;
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
    // The reports of the nodes running selected pods, each cut to this policy's entry (aggregate
    // reads nothing else of a node's policy map), instead of every node's whole map.
    const nodes = new Map<string, NodeReport>();
    for (const pod of pods) {
      const node = pod.nodeName;
      if (!node || nodes.has(node)) continue;
      const s = this.o.nodeStatuses.get(node);
      if (s) nodes.set(node, parseNodeReport(forPolicy(s, view.uid)));
    }
    return aggregate({
      policy: view,
      pods,
      namespaceLabels,
      nodes,
      clusterPolicySetHash: this.clusterSetHash(),
      current: { conditions: upstream ? ownConditions(conditions) : conditions },
      now: new Date(),
    });
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
  return {
    policies: s.status?.policies ?? {},
    errors: JSON.stringify(s.status?.errors ?? []),
    truncated: s.status?.policiesTruncated === true,
    setHash: s.status?.policySetHash ?? "",
  };
}

// A node report with only one policy's entry in its policy map.
function forPolicy(s: SecurityNodeStatusObject, uid: string): SecurityNodeStatusObject {
  const generation = s.status?.policies?.[uid];
  return {
    ...s,
    status: { ...s.status, policies: generation === undefined ? {} : { [uid]: generation } },
  };
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
