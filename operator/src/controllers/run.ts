// The operator process: shared informers (started on every replica, so a standby has warm caches
// and takes over fast), leader election, and the leader-only controllers. Losing the lease aborts
// the controllers at once; they re-run from the caches when this replica leads again. SIG Network's
// policy kinds are watched through optional informers: a cluster without their CRDs is a normal
// cluster (caches synced and empty), and one that installs them later is seen without a restart.
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { Registry } from "prom-client";
import { identityRecord } from "../identity/allocator.ts";
import type { AnyPolicy } from "../policy/normalize.ts";
import { validatePolicy } from "../policy/validate.ts";
import { EventRecorder } from "../kube/event-recorder.ts";
import { HeapRelief } from "../observe/heap-relief.ts";
import { Informer, OptionalInformer, type WatchCache } from "../kube/informer.ts";
import type { HealthCheck } from "../observe/health.ts";
import { type Logger, silentLogger } from "../observe/log.ts";
import type { KubernetesObject } from "@kubernetes/client-node";
import type { KubeClients } from "../kube/client.ts";
import type { SecurityNodeStatusObject } from "../kube/node-status.ts";
import {
  ADMIN_NETWORK_POLICIES,
  BASELINE_ADMIN_NETWORK_POLICIES,
  CLUSTER_NETWORK_POLICIES,
  CLUSTER_SECURITY_POLICIES,
  NAMESPACES,
  NETWORK_POLICIES,
  PODS,
  type Resource,
  SECURITY_IDENTITIES,
  SECURITY_NODE_STATUSES,
  SECURITY_POLICIES,
} from "../kube/resources.ts";
import {
  IdentityController,
  type IdentityObj,
  type NamespaceObject,
  type PodObject,
} from "./identity-controller.ts";
import { cachesSyncedCheck, leaderKnownCheck, leaseRenewalCheck } from "./checks.ts";
import { LeaderElector } from "./leader-election.ts";
import { OperatorMetrics } from "./metrics.ts";
import {
  type ClusterSecurityPolicyObject,
  type NetworkPolicyObject,
  type SecurityPolicyObject,
  StatusController,
  type UpstreamPolicyObject,
} from "./status-controller.ts";

export interface OperatorOptions {
  clients: KubeClients;
  leaseNamespace: string;
  leaseName?: string;
  /** Replica identity; default hostname + random suffix. */
  id?: string;
  identityGcGraceMs: number;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  statusDebounceMs?: number;
  /** Default: silent. The CLI's has { component: "operator" } on every line. */
  log?: Logger;
  /** Default: metrics on a registry nobody scrapes. */
  metrics?: OperatorMetrics;
  /** How often the optional informers ask discovery whether their CRDs are served (default 15 s). */
  discoveryIntervalMs?: number;
}

export interface OperatorInformers {
  pods: Informer<PodObject>;
  namespaces: Informer<NamespaceObject>;
  identities: Informer<IdentityObj>;
  nodeStatuses: Informer<SecurityNodeStatusObject>;
  securityPolicies: Informer<SecurityPolicyObject>;
  clusterSecurityPolicies: Informer<ClusterSecurityPolicyObject>;
  networkPolicies: Informer<NetworkPolicyObject>;
  clusterNetworkPolicies: OptionalInformer<UpstreamPolicyObject>;
  adminNetworkPolicies: OptionalInformer<UpstreamPolicyObject>;
  baselineAdminNetworkPolicies: OptionalInformer<UpstreamPolicyObject>;
}

export class Operator {
  readonly id: string;
  readonly informers: OperatorInformers;
  readonly elector: LeaderElector;
  readonly metrics: OperatorMetrics;
  private readonly o: OperatorOptions;
  private readonly log: Logger;
  /** Controllers of the current (or last) term as leader. */
  identity: IdentityController | undefined;
  status: StatusController | undefined;
  /** Times this replica started leading (tests). */
  terms = 0;
  // Collections when the heap outgrows what the last one left (observe/heap-relief.ts).
  private stopHeapWatch: () => void = () => {};

  constructor(o: OperatorOptions) {
    this.o = o;
    this.id = o.id ?? `${hostname()}-${randomBytes(3).toString("hex")}`;
    this.log = o.log ?? silentLogger();
    this.metrics = o.metrics ?? new OperatorMetrics(new Registry());
    const log = this.log;
    const metrics = this.metrics;
    const kc = o.clients.kc;
    // Restarts back off exponentially (informer.ts), so one line per failure stays readable.
    const informer = <T extends KubernetesObject>(r: Resource) =>
      new Informer<T>(kc, r, {
        onError: (d, n) => {
          metrics.apiError(r.plural, "list_watch");
          log.warn({ resource: r.plural, failures: n, err: d }, "watch failed; restarting with backoff");
        },
      });
    const optional = <T extends KubernetesObject>(r: Resource) =>
      new OptionalInformer<T>(kc, r, {
        discoveryIntervalMs: o.discoveryIntervalMs,
        onError: (d, n) => {
          metrics.apiError(r.plural, "list_watch");
          log.warn({ resource: r.plural, failures: n, err: d }, "watch failed; restarting with backoff");
        },
        onServedChange: (served) =>
          log.info(
            { resource: r.plural },
            served ? "resource now served: watching it" : "resource no longer served: its cache is emptied",
          ),
      });
    this.informers = {
      pods: informer<PodObject>(PODS),
      namespaces: informer<NamespaceObject>(NAMESPACES),
      identities: informer<IdentityObj>(SECURITY_IDENTITIES),
      nodeStatuses: informer<SecurityNodeStatusObject>(SECURITY_NODE_STATUSES),
      securityPolicies: informer<SecurityPolicyObject>(SECURITY_POLICIES),
      clusterSecurityPolicies: informer<ClusterSecurityPolicyObject>(CLUSTER_SECURITY_POLICIES),
      networkPolicies: informer<NetworkPolicyObject>(NETWORK_POLICIES),
      clusterNetworkPolicies: optional<UpstreamPolicyObject>(CLUSTER_NETWORK_POLICIES),
      adminNetworkPolicies: optional<UpstreamPolicyObject>(ADMIN_NETWORK_POLICIES),
      baselineAdminNetworkPolicies: optional<UpstreamPolicyObject>(BASELINE_ADMIN_NETWORK_POLICIES),
    };
    this.elector = new LeaderElector(kc, {
      namespace: o.leaseNamespace,
      name: o.leaseName ?? "sluice-operator",
      identity: this.id,
      leaseDurationMs: o.leaseDurationMs,
      renewDeadlineMs: o.renewDeadlineMs,
      retryPeriodMs: o.retryPeriodMs,
      onStartedLeading: (signal) => this.lead(signal),
      onStoppedLeading: () => {
        metrics.leaderTransitions.inc({ to: "standby" });
        log.info({ id: this.id }, "stopped leading");
      },
      onNewLeader: (leader) => log.info({ id: this.id, leader }, "new leader observed; standing by"),
      onError: (d, op) => {
        if (op === "leader-work") {
          log.error({ err: d }, "leader work failed");
          return;
        }
        metrics.apiError("leases", op === "release" ? "update" : op);
        log.warn({ op, err: d }, "lease request failed");
      },
    });
    metrics.bind({
      isLeader: () => this.isLeader(),
      liveIdentities: () => {
        let n = 0;
        for (const i of this.informers.identities.list()) {
          const r = identityRecord(i);
          if (r && !r.tombstone) n++;
        }
        return n;
      },
    });
  }

  /** /readyz: caches synced, and this replica leads or knows who does. */
  readiness(): HealthCheck[] {
    const byPlural = Object.fromEntries(
      Object.values(this.informers).map((i: WatchCache<KubernetesObject>) => [i.resource.plural, i]),
    );
    return [cachesSyncedCheck(byPlural), leaderKnownCheck(this.id, this.elector)];
  }

  /** /healthz beyond the event loop: the leader's renew loop is not wedged. */
  liveness(): HealthCheck[] {
    return [leaseRenewalCheck(this.elector)];
  }

  start(): void {
    for (const inf of Object.values(this.informers)) inf.start();
    this.elector.start();
    this.stopHeapWatch = new HeapRelief().watchGrowth();
  }

  isLeader(): boolean {
    return this.elector.isLeader();
  }

  private async lead(signal: AbortSignal): Promise<void> {
    this.terms++;
    this.metrics.leaderTransitions.inc({ to: "leader" });
    this.log.info({ id: this.id, term: this.terms }, "started leading");
    const { clients } = this.o;
    const isLeader = () => !signal.aborted && this.elector.isLeader();
    const log = this.log;
    const metrics = this.metrics;
    this.identity = new IdentityController({
      kc: clients.kc,
      pods: this.informers.pods,
      namespaces: this.informers.namespaces,
      identities: this.informers.identities,
      nodeStatuses: this.informers.nodeStatuses,
      gcGraceMs: this.o.identityGcGraceMs,
      isLeader,
      log,
      metrics,
    });
    this.status = new StatusController({
      custom: clients.custom,
      securityPolicies: this.informers.securityPolicies,
      clusterSecurityPolicies: this.informers.clusterSecurityPolicies,
      networkPolicies: this.informers.networkPolicies,
      clusterNetworkPolicies: this.informers.clusterNetworkPolicies,
      adminNetworkPolicies: this.informers.adminNetworkPolicies,
      baselineAdminNetworkPolicies: this.informers.baselineAdminNetworkPolicies,
      pods: this.informers.pods,
      namespaces: this.informers.namespaces,
      nodeStatuses: this.informers.nodeStatuses,
      isLeader,
      validate: (policy) =>
        validatePolicy(policy as AnyPolicy, {
          pods: this.informers.pods.list(),
          namespaces: this.informers.namespaces.list(),
        }),
      events: new EventRecorder(clients.core, {
        component: "sluice-operator",
        instance: this.id,
        onError: (d, verb) => {
          metrics.apiError("events", verb);
          log.warn({ err: d }, "event not recorded");
        },
      }),
      debounceMs: this.o.statusDebounceMs,
      log,
      metrics,
    });
    await Promise.all([this.identity.run(signal), this.status.run(signal)]);
  }

  /** Stops leading (releasing the lease) and the informers. */
  async stop(): Promise<void> {
    this.stopHeapWatch();
    await this.elector.stop();
    await Promise.all(Object.values(this.informers).map((i) => i.stop()));
  }
}
