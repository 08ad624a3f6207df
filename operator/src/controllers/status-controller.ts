// The policy status controller (leader only): writes each SecurityPolicy's and
// ClusterSecurityPolicy's status (Accepted, Enforced, counts) from the pods it selects and the
// nodes' SecurityNodeStatus reports (policy-status.ts computes it). A write happens only when the
// computed status differs from the object's, through the status subresource with server-side
// apply. Node-report and pod changes are coalesced (debounceMs) so a policy change costs one status
// write per node report at most: O(nodes), never O(nodes × policies). NetworkPolicy has no status
// we own; it is only counted in the policy-set hash. SIG Network's kinds (ClusterNetworkPolicy,
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
import { type AnyPolicy, normalizePolicy } from "../policy/normalize.ts";
import { runController } from "./frame.ts";
import type { OperatorMetrics } from "./metrics.ts";
import type { NamespaceObject, PodObject } from "./identity-controller.ts";
import {
  aggregate,
  type Condition,
  ownConditions,
  type PodView,
  type PolicyStatus,
  sameConditions,
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

export class StatusController {
  private readonly o: StatusControllerOptions;
  private readonly queue = new WorkQueue<string>();
  private readonly handlers: Array<() => void> = [];
  private readonly log: Logger;
  private readonly kinds: ReadonlyMap<string, StatusKind>;
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
    const on = <T extends KubernetesObject>(inf: WatchCache<T>, cb: (o: T) => void) => {
      for (const ev of ["add", "update", "delete"] as const) {
        inf.on(ev, cb);
        this.handlers.push(() => inf.off(ev, cb));
      }
    };
    for (const k of this.kinds.values()) on(k.informer, (p) => this.queue.add(keyOf(k.resource, p)));
    const debounce = this.o.debounceMs ?? 100;
    const all = () => this.enqueueAll(debounce);
    on(this.o.pods, all);
    on(this.o.namespaces, all);
    on(this.o.nodeStatuses, all);
    if (this.o.networkPolicies) on(this.o.networkPolicies, all);
  }

  private enqueueAll(delayMs: number): void {
    for (const k of this.kinds.values())
      for (const p of k.informer.list()) this.queue.addAfter(keyOf(k.resource, p), delayMs);
  }

  private clusterSetHash(): string {
    const all: Array<{ uid: string; generation: number }> = [];
    const push = (o: KubernetesObject) => {
      if (o.metadata?.uid) all.push({ uid: o.metadata.uid, generation: o.metadata.generation ?? 0 });
    };
    // Every policy an agent compiles, as kube-agent.ts enforcementSummary lists them.
    for (const k of this.kinds.values()) for (const p of k.informer.list()) push(p);
    for (const p of this.o.networkPolicies?.list() ?? []) push(p);
    return policySetHash(all);
  }

  private podViews(): PodView[] {
    const out: PodView[] = [];
    for (const p of this.o.pods.list()) {
      if (p.spec?.hostNetwork) continue;
      const phase = p.status?.phase;
      if (phase === "Succeeded" || phase === "Failed") continue;
      out.push({
        namespace: p.metadata.namespace ?? "",
        labels: p.metadata.labels ?? {},
        nodeName: p.spec?.nodeName,
      });
    }
    return out;
  }

  /** Computes the status a policy should have now (exposed for tests and `sluice` diagnostics). */
  compute(policy: AnyStatusPolicy): {
    status: PolicyStatus;
    nodeErrors: Array<{ node: string; message: string }>;
  } {
    const norm = normalizePolicy(policy as AnyPolicy);
    // The compiler's validation includes the normalization errors; without it, use those alone.
    const errors = this.o.validate ? this.o.validate(policy) : norm.errors;
    const upstream = this.kinds.get(policy.kind ?? "")?.upstream ?? false;
    const conditions = policy.status?.conditions;
    const nodes = new Map<string, NodeReport>();
    for (const s of this.o.nodeStatuses.list()) {
      const r = parseNodeReport(s);
      nodes.set(r.node, r);
    }
    return aggregate({
      policy: {
        uid: policy.metadata.uid ?? "",
        generation: policy.metadata.generation ?? 0,
        subjectNamespace: norm.subjectNamespace,
        subjectPods: norm.subjectPods,
        errors,
      },
      pods: this.podViews(),
      namespaceLabels: (ns) => this.o.namespaces.get(ns)?.metadata.labels,
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
