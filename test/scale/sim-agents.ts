// The 999 agents the rig does not run, simulated by what the operator sees of them: each node's
// SecurityNodeStatus, written with server-side apply under the agent's field manager and shape
// (kube/node-status.ts buildNodeStatus), reporting every policy it "enforces" at its generation (the
// set's hash, the recent changes). Like a real agent (NodeStatusPublisher), a node reports a policy
// change after a delay (its watch, queue, compile and map write, plus the publisher's coalescing:
// uniform in [minDelayMs, maxDelayMs]), writes only when its report changed, and every heartbeatMs
// (spread over the interval) merge-patches lastSyncTime alone. One shared
// watch per policy kind stands for the 999 agents' watches (which the real API server would serve
// from its watch cache); writes go through a bounded keep-alive pool as the simulated agents' user.
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { Informer, OptionalInformer, type WatchCache } from "../../operator/src/kube/informer.ts";
import {
  buildNodeStatus,
  type EnforcedPolicy,
  heartbeatPatch,
  NODE_STATUS_FIELD_MANAGER,
  type NodeStatusFields,
  RecentPolicies,
} from "../../operator/src/kube/node-status.ts";
import {
  ADMIN_NETWORK_POLICIES,
  apiVersionOf,
  BASELINE_ADMIN_NETWORK_POLICIES,
  CLUSTER_NETWORK_POLICIES,
  CLUSTER_SECURITY_POLICIES,
  NETWORK_POLICIES,
  objectPath,
  SECURITY_NODE_STATUSES,
  SECURITY_POLICIES,
} from "../../operator/src/kube/resources.ts";
import type { ApiHttp } from "./http.ts";

export interface SimOptions {
  minDelayMs?: number;
  maxDelayMs?: number;
  heartbeatMs?: number;
  /** Writes in flight at once (the API server's share for 999 agents). */
  concurrency?: number;
  /** Local endpoints per node (what the node reports as `endpoints`). */
  endpoints: (node: string) => number;
}

export class SimulatedAgents {
  private readonly http: ApiHttp;
  private readonly nodes: readonly string[];
  private readonly o: Required<Omit<SimOptions, "endpoints">> & Pick<SimOptions, "endpoints">;
  private readonly informers: WatchCache<KubernetesObject>[];
  private readonly scheduled = new Map<string, NodeJS.Timeout>();
  private readonly lastReport = new Map<string, string>();
  // Nodes whose next write is a heartbeat (a merge patch of lastSyncTime) unless their report changed.
  private readonly beating = new Set<string>();
  // What every node enforces (they all see the same policies), rebuilt once per change.
  private readonly recent = new RecentPolicies();
  private version = 0;
  private report:
    | { version: number; enforced: EnforcedPolicy[]; status: NodeStatusFields; key: string }
    | undefined;
  private readonly ready: string[] = [];
  // Nodes that have not yet written a report since the last policy change (heartbeats aside).
  private readonly owing = new Set<string>();
  private inFlight = 0;
  private heartbeat: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Node status reports written (applies), heartbeats (merge patches), and failures (each retried). */
  writes = 0;
  heartbeats = 0;
  failures = 0;

  constructor(kc: KubeConfig, http: ApiHttp, nodes: readonly string[], o: SimOptions) {
    this.http = http;
    this.nodes = nodes;
    this.o = {
      minDelayMs: 200,
      maxDelayMs: 1500,
      heartbeatMs: 60_000,
      concurrency: 16,
      ...o,
    };
    this.informers = [
      ...[NETWORK_POLICIES, SECURITY_POLICIES, CLUSTER_SECURITY_POLICIES].map(
        (r) => new Informer<KubernetesObject>(kc, r),
      ),
      ...[CLUSTER_NETWORK_POLICIES, ADMIN_NETWORK_POLICIES, BASELINE_ADMIN_NETWORK_POLICIES].map(
        (r) => new OptionalInformer<KubernetesObject>(kc, r),
      ),
    ];
  }

  async start(): Promise<void> {
    // Only a new generation (or a policy added or gone) changes what a node reports: the operator's
    // status writes are updates too, and must not make 999 nodes recompute their reports.
    const seen = new Map<string, number>();
    const onChange = (p: KubernetesObject, deleted: boolean) => {
      const uid = p.metadata?.uid ?? "";
      const generation = p.metadata?.generation ?? 0;
      if (deleted) seen.delete(uid);
      else if (seen.get(uid) === generation) return;
      else seen.set(uid, generation);
      this.version++;
      this.changed();
    };
    for (const inf of this.informers) {
      inf.on("add", (p) => onChange(p, false));
      inf.on("update", (p) => onChange(p, false));
      inf.on("delete", (p) => onChange(p, true));
      inf.start();
    }
    await Promise.all(this.informers.map((i) => i.waitForSync(120_000)));
    this.changed();
    // Heartbeats: one node every heartbeatMs / nodes, so the interval covers every node once.
    let next = 0;
    this.heartbeat = setInterval(
      () => {
        const node = this.nodes[next++ % this.nodes.length];
        this.beating.add(node);
        this.enqueue(node);
      },
      Math.max(1, this.o.heartbeatMs / this.nodes.length),
    );
  }

  /** Every node will report (after its own delay) what it enforces then. */
  changed(): void {
    for (const node of this.nodes) {
      this.owing.add(node);
      if (this.scheduled.has(node) || this.stopped) continue;
      const delay = this.o.minDelayMs + Math.random() * (this.o.maxDelayMs - this.o.minDelayMs);
      this.scheduled.set(
        node,
        setTimeout(() => {
          this.scheduled.delete(node);
          this.enqueue(node);
        }, delay),
      );
    }
  }

  /**
   * Nodes that still owe the report of the last policy change. Heartbeats do not count: at full scale
   * they alone keep the write queue busy (999 nodes every 60 s), so the queue is never empty.
   */
  pending(): number {
    return this.owing.size;
  }

  private enqueue(node: string): void {
    if (this.stopped) return;
    if (!this.ready.includes(node)) this.ready.push(node);
    this.pump();
  }

  private pump(): void {
    while (this.inFlight < this.o.concurrency && this.ready.length > 0) {
      const node = this.ready.shift() as string;
      this.inFlight++;
      void this.write(node).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  // The report every node would write now (its hash and recent list), built once per change.
  private current() {
    if (this.report?.version === this.version) return this.report;
    const enforced: EnforcedPolicy[] = [];
    for (const inf of this.informers)
      for (const p of inf.list())
        if (p.metadata?.uid) enforced.push({ uid: p.metadata.uid, generation: p.metadata.generation ?? 0 });
    this.recent.observe(enforced);
    const status = buildNodeStatus({
      datapathVersion: "scale-sim",
      agentVersion: "scale-sim",
      endpoints: 0,
      enforced,
      recent: this.recent.entries(),
    });
    const { lastSyncTime: _time, endpoints: _endpoints, ...content } = status;
    this.report = { version: this.version, enforced, status, key: JSON.stringify(content) };
    return this.report;
  }

  private async write(node: string): Promise<void> {
    const { version, status: shared, key: sharedKey } = this.current();
    const endpoints = this.o.endpoints(node);
    const key = `${endpoints} ${sharedKey}`;
    const heartbeat = this.beating.delete(node) && this.lastReport.get(node) === key;
    if (!heartbeat && this.lastReport.get(node) === key) {
      this.owing.delete(node);
      return;
    }
    const status = { ...shared, endpoints, lastSyncTime: heartbeatPatch().status.lastSyncTime };
    const r = await (heartbeat
      ? this.http.send(
          "PATCH",
          `${objectPath(SECURITY_NODE_STATUSES, node)}?fieldManager=${NODE_STATUS_FIELD_MANAGER}`,
          heartbeatPatch(),
          "application/merge-patch+json",
        )
      : this.http.send(
          "PATCH",
          `${objectPath(SECURITY_NODE_STATUSES, node)}?fieldManager=${NODE_STATUS_FIELD_MANAGER}&force=true`,
          {
            apiVersion: apiVersionOf(SECURITY_NODE_STATUSES),
            kind: SECURITY_NODE_STATUSES.kind,
            metadata: { name: node, labels: { "app.kubernetes.io/managed-by": NODE_STATUS_FIELD_MANAGER } },
            status,
          },
          "application/apply-patch+yaml",
        )
    ).catch(() => ({ status: 0 }));
    if (r.status >= 200 && r.status < 300) {
      if (heartbeat) this.heartbeats++;
      else this.writes++;
      this.lastReport.set(node, key);
      // Only a report of what is enforced now settles the node (a change may have come meanwhile).
      if (version === this.version) this.owing.delete(node);
    } else {
      if (heartbeat) this.lastReport.delete(node);
      this.failures++;
      if (!this.stopped) setTimeout(() => this.enqueue(node), 1000).unref();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    for (const t of this.scheduled.values()) clearTimeout(t);
    this.scheduled.clear();
    this.ready.length = 0;
    await Promise.all(this.informers.map((i) => i.stop()));
  }
}
