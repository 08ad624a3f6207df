// SecurityNodeStatus: one cluster-scoped object per node (name = node name), written only by that
// node's agent. The operator reads them to aggregate policy status.
//
// Compact whatever the number of policies (issue 14: 1,000 nodes each listing 1,000 policies kept
// the API server busy with ~50 KB objects, rewritten by every heartbeat). The node reports what it
// enforces as `policySetHash` (a hash over every uid=generation it enforces, policies that failed
// left out) and `policyCount`; the operator recognizes the hash as one of the policy sets it has
// seen (controllers/policy-set-log.ts) and so knows every generation the node enforces without a
// list. `recentPolicies` adds the last MAX_RECENT_POLICIES policies whose enforced generation
// changed on the node, so a change is confirmed even while the node's set differs from every set
// the operator knows (a view that lags or leads, a policy failing elsewhere). `errors` keeps at most
// MAX_ERRORS entries of MAX_ERROR_MESSAGE characters; an endpoint whose policy does not fit (it
// fails closed) gives one per policy that selects it, with the numbers, and `failedClosedEndpoints`
// counts such endpoints. A report is written by server-side apply when its content changes (the
// map is atomic, x-kubernetes-map-type, so managedFields stays one entry); the heartbeat is a merge
// patch of `lastSyncTime` alone, a few bytes.
import { createHash } from "node:crypto";
import type { CustomObjectsApi, KubernetesObject } from "@kubernetes/client-node";
import { applyCustomObject, mergePatchCustomObject } from "./apply.ts";
import { SECURITY_NODE_STATUSES } from "./resources.ts";

export const MAX_RECENT_POLICIES = 64;
export const MAX_ERRORS = 16;
export const MAX_ERROR_MESSAGE = 256;
export const NODE_STATUS_FIELD_MANAGER = "sluice-agent";

export interface EnforcedPolicy {
  uid: string;
  generation: number;
}

export interface NodeError {
  /** "Kind/namespace/name" or "Kind/name" of the policy concerned, when there is one. */
  policy?: string;
  /** The policy's uid, when there is one (what the operator matches on). */
  uid?: string;
  message: string;
  /**
   * CapacityExceeded: a map of the node cannot hold what it needs. With an endpoint: its policy did not
   * fit (it fails closed) or the endpoint map had no place for it (it is refused); without one: a
   * node-wide map refused the write whole.
   */
  reason?: NodeErrorReason;
  /** The endpoint ("namespace/pod") that fails closed or is refused. */
  endpoint?: string;
  /** Entries its policy needs, and the most it may have: per endpoint, or what the node's map has left. */
  needed?: number;
  capacity?: number;
}

export type NodeErrorReason = "CapacityExceeded";

/** What the agent knows about its node; publishNodeStatus bounds it. */
export interface NodeStatusSummary {
  datapathVersion: string;
  agentVersion?: string;
  /** Local endpoints (pods) the datapath enforces. */
  endpoints: number;
  enforced: Iterable<EnforcedPolicy>;
  /** The policies whose enforced generation changed last, newest first (RecentPolicies.entries). */
  recent?: ReadonlyArray<EnforcedPolicy>;
  errors?: readonly NodeError[];
  /** Highest cluster identity number present in this node's maps (for the allocator's high-water). */
  maxIdentity?: number;
  /** Local endpoints that fail closed because their policy does not fit. */
  failedClosedEndpoints?: number;
  /** When the maps last matched the desired state. Default: now. */
  lastSyncTime?: Date;
}

export interface NodeStatusFields {
  datapathVersion: string;
  agentVersion?: string;
  endpoints: number;
  policyCount: number;
  policySetHash: string;
  recentPolicies: Record<string, number>;
  errors: NodeError[];
  failedClosedEndpoints: number;
  maxIdentity: number;
  lastSyncTime: string;
}

export interface SecurityNodeStatusObject extends KubernetesObject {
  status?: Partial<NodeStatusFields>;
}

/** Hash over a set of uid=generation pairs (order-independent). */
export function policySetHash(entries: Iterable<EnforcedPolicy>): string {
  const lines = [...entries].map((e) => `${e.uid}=${e.generation}`).sort();
  return createHash("sha256").update(lines.join("\n")).digest("hex").slice(0, 32);
}

/** uid → the highest generation enforced of it (several endpoints may list one policy). */
function generationsByUid(enforced: Iterable<EnforcedPolicy>): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of enforced) out.set(e.uid, Math.max(e.generation, out.get(e.uid) ?? 0));
  return out;
}

/**
 * The policies whose enforced generation changed most recently (added or a new generation), at most
 * MAX_RECENT_POLICIES, newest first; a policy no longer enforced leaves the list. Fed the whole
 * enforced set after each map sync.
 */
export class RecentPolicies {
  private current = new Map<string, number>();
  // Insertion order = age: the newest change is the last key.
  private readonly order = new Map<string, number>();
  private readonly max: number;

  constructor(max = MAX_RECENT_POLICIES) {
    this.max = max;
  }

  observe(enforced: Iterable<EnforcedPolicy>): void {
    const next = generationsByUid(enforced);
    for (const uid of this.order.keys()) if (!next.has(uid)) this.order.delete(uid);
    // A first observation records nothing: the set hash covers what was enforced before.
    if (this.current.size > 0 || this.order.size > 0)
      for (const [uid, generation] of next)
        if (this.current.get(uid) !== generation) {
          this.order.delete(uid);
          this.order.set(uid, generation);
        }
    while (this.order.size > this.max) this.order.delete(this.order.keys().next().value as string);
    this.current = next;
  }

  entries(): EnforcedPolicy[] {
    return [...this.order].reverse().map(([uid, generation]) => ({ uid, generation }));
  }
}

/** The status fields for a summary, bounded (pure). */
export function buildNodeStatus(summary: NodeStatusSummary): NodeStatusFields {
  const byUid = generationsByUid(summary.enforced);
  const all = [...byUid].map(([uid, generation]) => ({ uid, generation }));
  // Sorted by uid so an unchanged list is an unchanged object.
  const recent = (summary.recent ?? [])
    .slice(0, MAX_RECENT_POLICIES)
    .map((e) => e.uid)
    .sort();
  const recentPolicies: Record<string, number> = {};
  for (const uid of recent) {
    const generation = byUid.get(uid);
    if (generation !== undefined) recentPolicies[uid] = generation;
  }
  const errors = (summary.errors ?? []).slice(0, MAX_ERRORS).map((e) => {
    const out: NodeError = {
      message:
        e.message.length > MAX_ERROR_MESSAGE ? `${e.message.slice(0, MAX_ERROR_MESSAGE - 1)}…` : e.message,
    };
    if (e.policy) out.policy = e.policy.slice(0, 512);
    if (e.uid) out.uid = e.uid.slice(0, 64);
    if (e.reason) out.reason = e.reason;
    if (e.endpoint) out.endpoint = e.endpoint.slice(0, 317);
    if (e.needed !== undefined) out.needed = e.needed;
    if (e.capacity !== undefined) out.capacity = e.capacity;
    return out;
  });
  const fields: NodeStatusFields = {
    datapathVersion: summary.datapathVersion,
    endpoints: summary.endpoints,
    policyCount: byUid.size,
    policySetHash: policySetHash(all),
    recentPolicies,
    errors,
    failedClosedEndpoints: summary.failedClosedEndpoints ?? 0,
    maxIdentity: summary.maxIdentity ?? 0,
    lastSyncTime: syncTime(summary.lastSyncTime ?? new Date()),
  };
  if (summary.agentVersion) fields.agentVersion = summary.agentVersion;
  return fields;
}

function syncTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** Writes the node's status object (created when absent) with server-side apply. */
export async function publishNodeStatus(
  client: { custom: CustomObjectsApi },
  nodeName: string,
  summary: NodeStatusSummary,
): Promise<NodeStatusFields> {
  const status = buildNodeStatus(summary);
  await applyCustomObject(
    client.custom,
    SECURITY_NODE_STATUSES,
    {
      metadata: { name: nodeName, labels: { "app.kubernetes.io/managed-by": NODE_STATUS_FIELD_MANAGER } },
      status,
    },
    NODE_STATUS_FIELD_MANAGER,
  );
  return status;
}

/** The heartbeat's body: a merge patch that sets lastSyncTime and nothing else. */
export function heartbeatPatch(at: Date = new Date()): { status: { lastSyncTime: string } } {
  return { status: { lastSyncTime: syncTime(at) } };
}

/** Refreshes only lastSyncTime of the node's existing status object (404 when it is gone). */
export async function publishHeartbeat(
  client: { custom: CustomObjectsApi },
  nodeName: string,
): Promise<void> {
  await mergePatchCustomObject(
    client.custom,
    SECURITY_NODE_STATUSES,
    nodeName,
    heartbeatPatch(),
    NODE_STATUS_FIELD_MANAGER,
  );
}

/** What the operator reads back from a node status object. */
export interface NodeReport {
  node: string;
  /** uid → generation, for the policies whose enforced generation changed last on the node. */
  recent: ReadonlyMap<string, number>;
  setHash: string;
  errors: ReadonlyArray<NodeError>;
  failedClosedEndpoints: number;
  maxIdentity: number;
}

export function parseNodeReport(obj: SecurityNodeStatusObject): NodeReport {
  const s = obj.status ?? {};
  const recent = new Map<string, number>();
  for (const [uid, gen] of Object.entries(s.recentPolicies ?? {}))
    if (typeof gen === "number") recent.set(uid, gen);
  return {
    node: obj.metadata?.name ?? "",
    recent,
    setHash: s.policySetHash ?? "",
    errors: Array.isArray(s.errors) ? s.errors : [],
    failedClosedEndpoints: typeof s.failedClosedEndpoints === "number" ? s.failedClosedEndpoints : 0,
    maxIdentity: typeof s.maxIdentity === "number" ? s.maxIdentity : 0,
  };
}

/**
 * Publishes on change only, coalescing bursts (at most one write per minIntervalMs), by server-side
 * apply of the whole report; every heartbeatMs a merge patch refreshes lastSyncTime alone. The
 * agent calls update() after each map sync; writes stay O(1) per node per policy change.
 */
export class NodeStatusPublisher {
  private readonly client: { custom: CustomObjectsApi };
  private readonly nodeName: string;
  private readonly minIntervalMs: number;
  private readonly heartbeatMs: number;
  private readonly onError?: (err: unknown) => void;
  private readonly recent = new RecentPolicies();
  private latest: NodeStatusSummary | undefined;
  // The last update()'s summary: what a failed write's report adds its error to.
  private good: NodeStatusSummary | undefined;
  private lastKey = "";
  private lastWrite = 0;
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private stopped = false;
  /** Reports written (applies), and heartbeats (merge patches of lastSyncTime). */
  writes = 0;
  heartbeats = 0;

  constructor(
    client: { custom: CustomObjectsApi },
    nodeName: string,
    opts: { minIntervalMs?: number; heartbeatMs?: number; onError?: (err: unknown) => void } = {},
  ) {
    this.client = client;
    this.nodeName = nodeName;
    this.minIntervalMs = opts.minIntervalMs ?? 200;
    this.heartbeatMs = opts.heartbeatMs ?? 60_000;
    this.onError = opts.onError;
  }

  update(summary: NodeStatusSummary): void {
    if (this.stopped) return;
    const enforced = [...summary.enforced];
    this.recent.observe(enforced);
    this.latest = {
      ...summary,
      enforced,
      recent: this.recent.entries(),
      lastSyncTime: summary.lastSyncTime ?? new Date(),
    };
    this.good = this.latest;
    this.schedule();
  }

  /**
   * A write the node's maps could not take as a whole (a node-wide map full): the last good report
   * (its lastSyncTime included: the maps still hold that state) with this error, until the next
   * update().
   */
  writeFailed(error: NodeError): void {
    if (this.stopped || !this.good) return;
    this.latest = { ...this.good, errors: [...(this.good.errors ?? []), error] };
    this.schedule();
  }

  private keyOf(s: NodeStatusSummary): string {
    const { lastSyncTime: _ignored, ...rest } = buildNodeStatus(s);
    return JSON.stringify(rest);
  }

  private schedule(): void {
    if (this.timer || !this.latest) return;
    const wait = Math.max(0, this.lastWrite + this.minIntervalMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush(false);
    }, wait);
  }

  /**
   * Writes now if the content changed (or force: the whole report again). A heartbeat whose report
   * was written and is unchanged patches lastSyncTime only. Resolves when written.
   */
  async flush(force = true, heartbeat = false): Promise<void> {
    if (this.writing) await this.writing;
    const s = this.latest;
    if (!s || this.stopped) return;
    const key = this.keyOf(s);
    if (!force && !heartbeat && key === this.lastKey) return;
    const patchOnly = heartbeat && !force && key === this.lastKey;
    this.writing = (async () => {
      try {
        if (patchOnly) {
          await publishHeartbeat(this.client, this.nodeName);
          this.heartbeats++;
        } else {
          await publishNodeStatus(this.client, this.nodeName, s);
          this.lastKey = key;
          this.writes++;
        }
      } catch (err) {
        this.onError?.(err);
        // The object may be gone (a heartbeat's 404): the retry applies the whole report.
        if (patchOnly) this.lastKey = "";
        // Retry later with the newest summary.
        setTimeout(() => this.schedule(), Math.max(1000, this.minIntervalMs)).unref();
      } finally {
        this.lastWrite = Date.now();
        this.writing = undefined;
      }
    })();
    await this.writing;
    this.armHeartbeat();
  }

  private armHeartbeat(): void {
    if (this.heartbeat) clearTimeout(this.heartbeat);
    this.heartbeat = setTimeout(() => void this.flush(false, true), this.heartbeatMs);
    this.heartbeat.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.heartbeat) clearTimeout(this.heartbeat);
  }
}
