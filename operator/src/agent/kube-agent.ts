// The agent against the API server: informers on everything the compiler reads feed a rate-limited
// work queue; one level-triggered reconcile recompiles the node's state and writes the delta.
// Nothing is written to the maps before every cache has synced (a restart never writes a partial
// view), and while the API server is unreachable the informers retry and the maps keep the last
// good state. A single reconcile key is deliberate: the compiler and MapSync both produce deltas,
// so coalescing a burst of events into one pass costs less than reconciling endpoint by endpoint.
import type { KubernetesObject } from "@kubernetes/client-node";
import { type ClusterObjects, classifyObjects } from "../api/objects.ts";
import type { Datapath } from "../datapath/programs.ts";
import { loadKubeConfig, makeClients } from "../kube/client.ts";
import { describeError } from "../kube/errors.ts";
import { Informer, waitForCacheSync } from "../kube/informer.ts";
import { type EnforcedPolicy, type NodeError, NodeStatusPublisher } from "../kube/node-status.ts";
import {
  CLUSTER_SECURITY_POLICIES,
  NAMESPACES,
  NETWORK_POLICIES,
  NODES,
  PODS,
  type Resource,
  SECURITY_IDENTITIES,
  SECURITY_POLICIES,
} from "../kube/resources.ts";
import { runWorkers, WorkQueue } from "../kube/workqueue.ts";
import { IDENTITY_TOMBSTONE_LABEL } from "../identity/allocator.ts";
import { type LabelOptions, labelSetKey } from "../identity/labels.ts";
import { policyKey } from "../policy/normalize.ts";
import { Enforcer } from "./enforcer.ts";
import type { InterfaceResolver } from "./host-interfaces.ts";

const WATCHED: readonly Resource[] = [
  NAMESPACES,
  PODS,
  NODES,
  NETWORK_POLICIES,
  SECURITY_POLICIES,
  CLUSTER_SECURITY_POLICIES,
  SECURITY_IDENTITIES,
];
const KEY = "node";
const DATAPATH_VERSION = "sluice-bpf-v1";

export interface KubeAgentOptions {
  kubeconfig?: string;
  node: string;
  pinRoot: string;
  datapath: Datapath;
  resolver: InterfaceResolver;
  labelOptions?: LabelOptions;
  log: (line: string) => void;
}

// What the node tells the operator: every policy it compiled at its generation, and what failed.
export function enforcementSummary(
  objects: ClusterObjects,
  errors: readonly { policies: string[]; message: string }[],
): { enforced: EnforcedPolicy[]; errors: NodeError[] } {
  const policies: { key: string; metadata: KubernetesObject["metadata"] }[] = [
    ...objects.networkPolicies.map((p) => ({ kind: "NetworkPolicy" as const, p })),
    ...objects.securityPolicies.map((p) => ({ kind: "SecurityPolicy" as const, p })),
    ...objects.clusterSecurityPolicies.map((p) => ({ kind: "ClusterSecurityPolicy" as const, p })),
  ].map(({ kind, p }) => ({
    key: policyKey(kind, p.metadata?.namespace, p.metadata?.name ?? ""),
    metadata: p.metadata,
  }));
  const failed = new Set(errors.flatMap((e) => e.policies));
  const uidOf = new Map(policies.map((p) => [p.key, p.metadata?.uid]));
  return {
    enforced: policies
      .filter((p) => p.metadata?.uid && !failed.has(p.key))
      .map((p) => ({ uid: p.metadata!.uid!, generation: p.metadata?.generation ?? 0 })),
    errors: errors.map((e) => ({
      policy: e.policies[0],
      uid: uidOf.get(e.policies[0] ?? ""),
      message: e.message,
    })),
  };
}

// The operator's contract: a label set resolves to its lowest-numbered identity that is not a
// tombstone (a late create after a failover can briefly leave two; the higher one is retired).
export function liveIdentities<T extends ClusterObjects["securityIdentities"][number]>(
  ids: readonly T[],
): T[] {
  const best = new Map<string, T>();
  for (const id of ids) {
    if (id.metadata.labels?.[IDENTITY_TOMBSTONE_LABEL] === "true") continue;
    const key = labelSetKey(id.spec.labels ?? {});
    const cur = best.get(key);
    if (!cur || Number(id.metadata.name) < Number(cur.metadata.name)) best.set(key, id);
  }
  return [...best.values()];
}

export class KubeAgent {
  readonly #o: KubeAgentOptions;
  readonly #informers: Informer<KubernetesObject>[];
  readonly #queue = new WorkQueue<string>({ baseDelayMs: 50, maxDelayMs: 30_000 });
  readonly #enforcer: Enforcer;
  readonly #status: NodeStatusPublisher;
  #workers?: Promise<void>;
  reconciles = 0;

  constructor(o: KubeAgentOptions) {
    this.#o = o;
    const kc = loadKubeConfig(o.kubeconfig);
    const clients = makeClients(kc);
    this.#enforcer = new Enforcer(o.datapath, {
      node: o.node,
      pinRoot: o.pinRoot,
      resolver: o.resolver,
      labelOptions: o.labelOptions,
    });
    this.#status = new NodeStatusPublisher(clients, o.node, {
      onError: (e) => o.log(`node status: ${describeError(e)}`),
    });
    this.#informers = WATCHED.map(
      (r) =>
        new Informer<KubernetesObject>(kc, r, {
          onError: (d, n) =>
            o.log(`watch ${r.plural}: ${d} (failure ${n}; retrying, maps keep the last good state)`),
        }),
    );
    const enqueue = () => this.#queue.add(KEY);
    for (const inf of this.#informers)
      for (const ev of ["add", "update", "delete"] as const) inf.on(ev, enqueue);
  }

  // Starts watching; resolves once the caches have synced and the first reconcile ran.
  async start(): Promise<void> {
    for (const inf of this.#informers) inf.start();
    await waitForCacheSync(this.#informers);
    this.#o.log("caches synced");
    const first = this.reconcile();
    this.#workers = runWorkers(
      this.#queue,
      1,
      () => this.reconcile(),
      (_k, e) => this.#o.log(`reconcile: ${describeError(e)}`),
    );
    await first;
  }

  snapshot(): ClusterObjects {
    const objects: unknown[] = [];
    for (const inf of this.#informers)
      for (const o of inf.list()) objects.push({ ...o, kind: inf.resource.kind, apiVersion: o.apiVersion });
    const o = classifyObjects(objects);
    o.securityIdentities = liveIdentities(o.securityIdentities);
    return o;
  }

  async reconcile(): Promise<{ requeueAfterMs?: number }> {
    const objects = this.snapshot();
    const result = await this.#enforcer.apply(objects);
    this.reconciles++;
    const summary = enforcementSummary(objects, result.errors);
    this.#status.update({
      datapathVersion: DATAPATH_VERSION,
      endpoints: result.endpoints,
      enforced: summary.enforced,
      errors: summary.errors,
      // A high-water mark for the allocator: numbers at or below it are never handed out again.
      maxIdentity: Math.max(0, ...objects.securityIdentities.map((i) => Number(i.metadata.name))),
    });
    const s = result.sync;
    if (s.policyWritten + s.policyDeleted + s.ipcacheWritten + s.ipcacheDeleted + s.endpointsWritten > 0)
      this.#o.log(
        `sync: ${result.endpoints} endpoints, policy +${s.policyWritten}/-${s.policyDeleted}, flips ${s.flips}, ` +
          `ipcache +${s.ipcacheWritten}/-${s.ipcacheDeleted}, ${s.durationMs.toFixed(1)} ms`,
      );
    // Pods whose interface is not wired yet: look again shortly.
    return result.pending.length > 0 ? { requeueAfterMs: 1000 } : {};
  }

  async stop(): Promise<void> {
    this.#queue.shutDown();
    await Promise.all(this.#informers.map((i) => i.stop()));
    await this.#workers;
    await this.#status.flush(false).catch(() => {});
    this.#status.stop();
  }
}
