// SecurityNodeStatus: one cluster-scoped object per node (name = node name), written only by that
// node's agent with server-side apply. The operator reads them to aggregate policy status.
//
// Size bound, whatever the number of policies: `policies` maps policy uid → the generation the
// node enforces, at most MAX_REPORTED_POLICIES entries (~50 bytes each, ~50 KB). Beyond that the map
// holds the first MAX_REPORTED_POLICIES uids in sorted order, `policiesTruncated` is true and
// `policySetHash` (hash over every uid=generation the node enforces) lets the operator recognize
// "this node enforces exactly the policies I see" for all the others; a truncated node that is
// still converging counts as not enforcing the unlisted policies (never a false Enforced=True).
// `errors` keeps at most MAX_ERRORS entries of MAX_ERROR_MESSAGE characters; an endpoint whose policy
// does not fit (it fails closed) gives one per policy that selects it, with the numbers, and
// `failedClosedEndpoints` counts such endpoints. The map is atomic
// (x-kubernetes-map-type) so managedFields stays one entry instead of one per policy.
import { createHash } from "node:crypto";
import type { CustomObjectsApi, KubernetesObject } from "@kubernetes/client-node";
import { applyCustomObject } from "./apply.ts";
import { SECURITY_NODE_STATUSES } from "./resources.ts";

export const MAX_REPORTED_POLICIES = 1000;
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
  /** CapacityExceeded: an endpoint's policy did not fit, and the endpoint fails closed. */
  reason?: NodeErrorReason;
  /** The endpoint ("namespace/pod") that fails closed. */
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
  policies: Record<string, number>;
  policiesTruncated: boolean;
  policySetHash: string;
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

/** The status fields for a summary, bounded (pure). */
export function buildNodeStatus(summary: NodeStatusSummary): NodeStatusFields {
  const byUid = new Map<string, number>();
  for (const e of summary.enforced) byUid.set(e.uid, Math.max(e.generation, byUid.get(e.uid) ?? 0));
  const all = [...byUid].map(([uid, generation]) => ({ uid, generation }));
  const uids = [...byUid.keys()].sort();
  const policies: Record<string, number> = {};
  for (const uid of uids.slice(0, MAX_REPORTED_POLICIES)) policies[uid] = byUid.get(uid) as number;
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
    policyCount: uids.length,
    policies,
    policiesTruncated: uids.length > MAX_REPORTED_POLICIES,
    policySetHash: policySetHash(all),
    errors,
    failedClosedEndpoints: summary.failedClosedEndpoints ?? 0,
    maxIdentity: summary.maxIdentity ?? 0,
    lastSyncTime: (summary.lastSyncTime ?? new Date()).toISOString().replace(/\.\d{3}Z$/, "Z"),
  };
  if (summary.agentVersion) fields.agentVersion = summary.agentVersion;
  return fields;
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

/** What the operator reads back from a node status object. */
export interface NodeReport {
  node: string;
  policies: ReadonlyMap<string, number>;
  truncated: boolean;
  setHash: string;
  errors: ReadonlyArray<NodeError>;
  failedClosedEndpoints: number;
  maxIdentity: number;
}

export function parseNodeReport(obj: SecurityNodeStatusObject): NodeReport {
  const s = obj.status ?? {};
  const policies = new Map<string, number>();
  for (const [uid, gen] of Object.entries(s.policies ?? {}))
    if (typeof gen === "number") policies.set(uid, gen);
  return {
    node: obj.metadata?.name ?? "",
    policies,
    truncated: s.policiesTruncated === true,
    setHash: s.policySetHash ?? "",
    errors: Array.isArray(s.errors) ? s.errors : [],
    failedClosedEndpoints: typeof s.failedClosedEndpoints === "number" ? s.failedClosedEndpoints : 0,
    maxIdentity: typeof s.maxIdentity === "number" ? s.maxIdentity : 0,
  };
}

/**
 * Publishes on change only, coalescing bursts (at most one write per minIntervalMs) and
 * re-publishing every heartbeatMs so lastSyncTime stays fresh. The agent calls update() after each
 * map sync; writes stay O(1) per node per policy change.
 */
export class NodeStatusPublisher {
  private readonly client: { custom: CustomObjectsApi };
  private readonly nodeName: string;
  private readonly minIntervalMs: number;
  private readonly heartbeatMs: number;
  private readonly onError?: (err: unknown) => void;
  private latest: NodeStatusSummary | undefined;
  private lastKey = "";
  private lastWrite = 0;
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private stopped = false;
  writes = 0;

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
    this.latest = { ...summary, enforced: [...summary.enforced] };
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

  /** Writes now if the content changed (or force). Resolves when written. */
  async flush(force = true): Promise<void> {
    if (this.writing) await this.writing;
    const s = this.latest;
    if (!s || this.stopped) return;
    const key = this.keyOf(s);
    if (!force && key === this.lastKey) return;
    this.writing = (async () => {
      try {
        await publishNodeStatus(this.client, this.nodeName, s);
        this.lastKey = key;
        this.writes++;
      } catch (err) {
        this.onError?.(err);
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
    this.heartbeat = setTimeout(() => void this.flush(true), this.heartbeatMs);
    this.heartbeat.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.heartbeat) clearTimeout(this.heartbeat);
  }
}
