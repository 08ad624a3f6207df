// The operator process: shared informers (started on every replica, so a standby has warm caches
// and takes over fast), leader election, and the leader-only controllers. Losing the lease aborts
// the controllers at once; they re-run from the caches when this replica leads again.
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { validatePolicy } from "../policy/validate.ts";
import { EventRecorder } from "../kube/events.ts";
import { Informer } from "../kube/informer.ts";
import type { KubeClients } from "../kube/client.ts";
import type { SecurityNodeStatusObject } from "../kube/node-status.ts";
import {
  CLUSTER_SECURITY_POLICIES,
  NAMESPACES,
  NETWORK_POLICIES,
  PODS,
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
import { LeaderElector } from "./leader-election.ts";
import {
  type ClusterSecurityPolicyObject,
  type NetworkPolicyObject,
  type SecurityPolicyObject,
  StatusController,
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
  log?: (msg: string) => void;
}

export interface OperatorInformers {
  pods: Informer<PodObject>;
  namespaces: Informer<NamespaceObject>;
  identities: Informer<IdentityObj>;
  nodeStatuses: Informer<SecurityNodeStatusObject>;
  securityPolicies: Informer<SecurityPolicyObject>;
  clusterSecurityPolicies: Informer<ClusterSecurityPolicyObject>;
  networkPolicies: Informer<NetworkPolicyObject>;
}

export class Operator {
  readonly id: string;
  readonly informers: OperatorInformers;
  readonly elector: LeaderElector;
  private readonly o: OperatorOptions;
  /** Controllers of the current (or last) term as leader. */
  identity: IdentityController | undefined;
  status: StatusController | undefined;
  /** Times this replica started leading (tests). */
  terms = 0;

  constructor(o: OperatorOptions) {
    this.o = o;
    this.id = o.id ?? `${hostname()}-${randomBytes(3).toString("hex")}`;
    const kc = o.clients.kc;
    const onError = (what: string) => (d: string, n: number) =>
      o.log?.(`informer ${what}: ${d} (failure ${n})`);
    this.informers = {
      pods: new Informer<PodObject>(kc, PODS, { onError: onError("pods") }),
      namespaces: new Informer<NamespaceObject>(kc, NAMESPACES, { onError: onError("namespaces") }),
      identities: new Informer<IdentityObj>(kc, SECURITY_IDENTITIES, { onError: onError("identities") }),
      nodeStatuses: new Informer<SecurityNodeStatusObject>(kc, SECURITY_NODE_STATUSES, {
        onError: onError("nodestatuses"),
      }),
      securityPolicies: new Informer<SecurityPolicyObject>(kc, SECURITY_POLICIES, {
        onError: onError("securitypolicies"),
      }),
      clusterSecurityPolicies: new Informer<ClusterSecurityPolicyObject>(kc, CLUSTER_SECURITY_POLICIES, {
        onError: onError("clustersecuritypolicies"),
      }),
      networkPolicies: new Informer<NetworkPolicyObject>(kc, NETWORK_POLICIES, {
        onError: onError("networkpolicies"),
      }),
    };
    this.elector = new LeaderElector(kc, {
      namespace: o.leaseNamespace,
      name: o.leaseName ?? "sluice-operator",
      identity: this.id,
      leaseDurationMs: o.leaseDurationMs,
      renewDeadlineMs: o.renewDeadlineMs,
      retryPeriodMs: o.retryPeriodMs,
      onStartedLeading: (signal) => this.lead(signal),
      onStoppedLeading: () => o.log?.(`${this.id}: stopped leading`),
      onNewLeader: (leader) => o.log?.(`${this.id}: leader is ${leader}`),
      onError: (d) => o.log?.(`leader election: ${d}`),
    });
  }

  start(): void {
    for (const inf of Object.values(this.informers)) inf.start();
    this.elector.start();
  }

  isLeader(): boolean {
    return this.elector.isLeader();
  }

  private async lead(signal: AbortSignal): Promise<void> {
    this.terms++;
    this.o.log?.(`${this.id}: started leading`);
    const { clients } = this.o;
    const isLeader = () => !signal.aborted && this.elector.isLeader();
    const log = this.o.log;
    this.identity = new IdentityController({
      custom: clients.custom,
      pods: this.informers.pods,
      namespaces: this.informers.namespaces,
      identities: this.informers.identities,
      nodeStatuses: this.informers.nodeStatuses,
      gcGraceMs: this.o.identityGcGraceMs,
      isLeader,
      log,
    });
    this.status = new StatusController({
      custom: clients.custom,
      securityPolicies: this.informers.securityPolicies,
      clusterSecurityPolicies: this.informers.clusterSecurityPolicies,
      networkPolicies: this.informers.networkPolicies,
      pods: this.informers.pods,
      namespaces: this.informers.namespaces,
      nodeStatuses: this.informers.nodeStatuses,
      isLeader,
      validate: (policy) =>
        validatePolicy(policy, {
          pods: this.informers.pods.list(),
          namespaces: this.informers.namespaces.list(),
        }),
      events: new EventRecorder(clients.core, {
        component: "sluice-operator",
        instance: this.id,
        onError: log,
      }),
      debounceMs: this.o.statusDebounceMs,
      log,
    });
    await Promise.all([this.identity.run(signal), this.status.run(signal)]);
  }

  /** Stops leading (releasing the lease) and the informers. */
  async stop(): Promise<void> {
    await this.elector.stop();
    await Promise.all(Object.values(this.informers).map((i) => i.stop()));
  }
}
