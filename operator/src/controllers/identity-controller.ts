// The identity controller (leader only): one SecurityIdentity per distinct security-relevant label
// set of the cluster's pods, and GC of unused ones. The rules live in identity/allocator.ts and
// identity/gc.ts; this file wires informers, the work queue and the API writes.
//
// Work queue keys: a label-set hash (allocate if used and missing) or SWEEP (duplicates, unused
// identities past the grace period, obsolete tombstones). The frame (frame.ts) runs nothing before
// the pod, namespace, identity and node-status caches have synced: an unsynced pod cache would make
// every identity look unused and an unsynced identity cache would allocate duplicates.
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { type Namespace, type Pod, podKey } from "../api/k8s.ts";
import {
  IDENTITY_HASH_LABEL,
  IDENTITY_TOMBSTONE_LABEL,
  type IdentityObject,
  IdentityIndex,
  identityRecord,
  labelSetHash,
  nextCandidate,
} from "../identity/allocator.ts";
import { planGc } from "../identity/gc.ts";
import { type LabelOptions, type LabelSet, securityLabels } from "../identity/labels.ts";
import { isAlreadyExists, isNotFound } from "../kube/errors.ts";
import type { Informer } from "../kube/informer.ts";
import { rawRequest } from "../kube/raw.ts";
import { apiVersionOf, collectionPath, objectPath, SECURITY_IDENTITIES } from "../kube/resources.ts";
import { WorkQueue } from "../kube/workqueue.ts";
import { type Logger, silentLogger } from "../observe/log.ts";
import { runController } from "./frame.ts";
import type { ApiVerb, OperatorMetrics } from "./metrics.ts";

export type PodObject = Pod & KubernetesObject;
export type NamespaceObject = Namespace & KubernetesObject;
export type IdentityObj = IdentityObject & KubernetesObject;
export interface NodeStatusObject extends KubernetesObject {
  status?: { maxIdentity?: number };
}

export interface IdentityControllerOptions {
  // Identity writes go as raw JSON over the process's kept-alive connections (kube/raw.ts): the
  // generated client's serialization halved the create rate test/scale measured.
  kc: KubeConfig;
  pods: Informer<PodObject>;
  namespaces: Informer<NamespaceObject>;
  identities: Informer<IdentityObj>;
  nodeStatuses?: Informer<NodeStatusObject>;
  /** Unused identities are deleted after this long. */
  gcGraceMs: number;
  /** Checked before every write: a replica that lost the lease writes nothing more. */
  isLeader: () => boolean;
  labelOptions?: LabelOptions;
  workers?: number;
  /** Periodic sweep even without events. Default 30 s. */
  sweepIntervalMs?: number;
  log?: Logger;
  metrics?: OperatorMetrics;
}

const SWEEP = "sweep";
// Deletes one sweep has in flight at once, and allocation workers: enough to hide the API server's
// round trip (issue 14's goal is 500 label sets/s), few enough not to crowd out other clients.
export const GC_CONCURRENCY = 16;
export const DEFAULT_WORKERS = 16;
const FIELD_MANAGER = "sluice-operator";

/** The create the operator sends for identity `id` of a label set (also the scale rig's baseline). */
export function identityCreate(id: number, hash: string, labels: LabelSet): { path: string; body: object } {
  return {
    path: `${collectionPath(SECURITY_IDENTITIES)}?fieldManager=${FIELD_MANAGER}`,
    body: {
      apiVersion: apiVersionOf(SECURITY_IDENTITIES),
      kind: SECURITY_IDENTITIES.kind,
      metadata: {
        name: String(id),
        labels: { [IDENTITY_HASH_LABEL]: hash, "app.kubernetes.io/managed-by": FIELD_MANAGER },
      },
      spec: { labels },
    },
  };
}

interface Use {
  count: number;
  labels: LabelSet;
  // The first pod's hash text, which every pod of the set keeps in podHash: one string per label set,
  // not one per pod (each labelSetHash() is a new slice of a new digest; 50,000 pods held ~6 MiB).
  hash: string;
}

export class IdentityController {
  private readonly o: IdentityControllerOptions;
  private readonly queue = new WorkQueue<string>();
  private readonly podHash = new Map<string, string>();
  private readonly uses = new Map<string, Use>();
  private readonly index = new IdentityIndex();
  /** Identities this process created that the cache has not shown yet: hash → number. */
  private readonly pending = new Map<string, number>();
  private readonly unusedSince = new Map<number, number>();
  private highWater = 0;
  /** Label sets without identity → when this controller first saw a pod using them (allocation latency). */
  private readonly waitingSince = new Map<string, number>();
  private readonly handlers: Array<() => void> = [];
  private readonly log: Logger;
  /** Creates and retirements done (observability and tests). */
  readonly stats = { created: 0, conflicts: 0, adopted: 0, deleted: 0, tombstoned: 0 };

  constructor(o: IdentityControllerOptions) {
    this.o = o;
    this.log = (o.log ?? silentLogger()).child({ controller: "identity" });
  }

  /** Runs until the signal aborts (leadership lost or shutdown). */
  run(signal: AbortSignal): Promise<void> {
    return runController(
      {
        name: "identity",
        caches: [
          this.o.pods,
          this.o.namespaces,
          this.o.identities,
          ...(this.o.nodeStatuses ? [this.o.nodeStatuses] : []),
        ],
        queue: this.queue,
        start: () => {
          this.subscribe();
          // Initial state from the caches, then one allocation check per used label set and a sweep.
          for (const i of this.o.identities.list()) this.onIdentity(i);
          for (const p of this.o.pods.list()) this.onPod(p);
          for (const hash of this.uses.keys()) this.queue.add(hash);
          this.queue.add(SWEEP);
          return () => {
            for (const off of this.handlers.splice(0)) off();
          };
        },
        reconcile: (key) => this.reconcile(key),
        workers: this.o.workers ?? DEFAULT_WORKERS,
        log: this.o.log ?? silentLogger(),
        metrics: this.o.metrics?.controllers,
        describeKey: (key) => (key === SWEEP ? { key } : { label_set_hash: key }),
      },
      signal,
    );
  }

  /** Used label sets without a live identity in the cache (0 when allocation has caught up). */
  missing(): number {
    let n = 0;
    for (const [hash, use] of this.uses) if (this.index.live(hash, use.labels).length === 0) n++;
    return n;
  }

  /** Distinct label sets in use by pods. */
  get labelSets(): number {
    return this.uses.size;
  }

  private subscribe(): void {
    const on = <T extends KubernetesObject>(
      inf: Informer<T>,
      ev: "add" | "update" | "delete",
      cb: (o: T) => void,
    ) => {
      inf.on(ev, cb);
      this.handlers.push(() => inf.off(ev, cb));
    };
    on(this.o.pods, "add", (p) => this.onPod(p));
    on(this.o.pods, "update", (p) => this.onPod(p));
    on(this.o.pods, "delete", (p) => this.onPodGone(p));
    const nsChanged = (ns: NamespaceObject) => {
      for (const p of this.o.pods.list(ns.metadata.name)) this.onPod(p);
    };
    on(this.o.namespaces, "add", nsChanged);
    on(this.o.namespaces, "update", nsChanged);
    on(this.o.identities, "add", (i) => this.onIdentity(i));
    on(this.o.identities, "update", (i) => this.onIdentity(i));
    on(this.o.identities, "delete", (i) => this.onIdentityGone(i));
  }

  private wantsIdentity(p: PodObject): boolean {
    if (p.spec?.hostNetwork) return false; // host-network pods have the host identity
    const phase = p.status?.phase;
    return phase !== "Succeeded" && phase !== "Failed";
  }

  private onPod(p: PodObject): void {
    if (!this.wantsIdentity(p)) {
      this.onPodGone(p);
      return;
    }
    const ns = this.o.namespaces.get(p.metadata.namespace ?? "");
    const labels = securityLabels(p, ns, this.o.labelOptions);
    const hash = labelSetHash(labels);
    const key = podKey(p);
    const old = this.podHash.get(key);
    if (old === hash) return;
    if (old !== undefined) this.release(old);
    const use = this.uses.get(hash);
    this.podHash.set(key, use?.hash ?? hash);
    if (use) use.count++;
    else {
      this.uses.set(hash, { count: 1, labels, hash });
      if (!this.pending.has(hash) && this.index.live(hash, labels).length === 0) this.waiting(hash);
      this.queue.add(hash);
    }
  }

  /** A used label set has no identity from now on: the allocation latency counts from here. */
  private waiting(hash: string): void {
    if (!this.waitingSince.has(hash)) this.waitingSince.set(hash, performance.now());
  }

  /** The label set has its identity (created here, adopted, or seen in the cache). */
  private bound(hash: string): void {
    const since = this.waitingSince.get(hash);
    if (since === undefined) return;
    this.waitingSince.delete(hash);
    this.o.metrics?.allocationSeconds.observe((performance.now() - since) / 1000);
  }

  private onPodGone(p: PodObject): void {
    const key = podKey(p);
    const old = this.podHash.get(key);
    if (old === undefined) return;
    this.podHash.delete(key);
    this.release(old);
  }

  private release(hash: string): void {
    const use = this.uses.get(hash);
    if (!use) return;
    if (--use.count <= 0) {
      this.uses.delete(hash);
      this.waitingSince.delete(hash);
      this.queue.add(SWEEP);
    }
  }

  private onIdentity(obj: IdentityObj): void {
    const r = identityRecord(obj);
    if (!r) return;
    this.index.upsert(r);
    if (this.pending.get(r.hash) === r.id) this.pending.delete(r.hash);
    if (!r.tombstone) this.bound(r.hash);
    if (this.index.live(r.hash).length > 1) this.queue.add(SWEEP);
  }

  private onIdentityGone(obj: IdentityObj): void {
    const r = identityRecord(obj);
    if (!r) return;
    this.index.remove(r.id);
    if (this.pending.get(r.hash) === r.id) this.pending.delete(r.hash);
    // Someone deleted an identity still in use: allocate again (a new number).
    const use = this.uses.get(r.hash);
    if (use) {
      if (this.index.live(r.hash, use.labels).length === 0) this.waiting(r.hash);
      this.queue.add(r.hash);
    }
  }

  private nodeFloor(): number {
    let max = 0;
    for (const s of this.o.nodeStatuses?.list() ?? []) {
      const m = s.status?.maxIdentity;
      if (typeof m === "number" && m > max) max = m;
    }
    return max;
  }

  /** Forgets own creates the cache has shown (the watch event can beat the create's response). */
  private prunePending(): void {
    for (const [hash, id] of this.pending) if (this.index.get(id)) this.pending.delete(hash);
  }

  private async reconcile(key: string): Promise<{ requeueAfterMs?: number } | undefined> {
    this.prunePending();
    if (key === SWEEP) return this.sweep();
    const use = this.uses.get(key);
    if (!use) return undefined;
    if (this.pending.has(key) || this.index.live(key, use.labels).length > 0) return undefined;
    await this.allocate(key, use.labels);
    return undefined;
  }

  private guard(): void {
    if (!this.o.isLeader()) throw new Error("not the leader any more");
  }

  private async allocate(hash: string, labels: LabelSet): Promise<void> {
    for (let attempt = 0; attempt < 64; attempt++) {
      // Reserved synchronously (before any await): concurrent workers of this process never
      // race each other for a number, only other processes can take one.
      const candidate = nextCandidate(this.index, [
        this.highWater,
        this.nodeFloor(),
        ...this.pending.values(),
      ]);
      this.highWater = candidate;
      this.guard();
      const { path, body } = identityCreate(candidate, hash, labels);
      try {
        await this.api("create", () => rawRequest(this.o.kc, "POST", path, body));
        this.pending.set(hash, candidate);
        this.stats.created++;
        this.allocated(hash, candidate, "created");
        return;
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        this.stats.conflicts++;
        this.o.metrics?.identityAllocationConflicts.inc();
        // Taken: by another (old) leader for this same set? Then adopt it instead of a duplicate.
        const existing = await this.read(candidate);
        const r = existing && identityRecord(existing);
        if (r && !r.tombstone && r.hash === hash) {
          this.pending.set(hash, candidate);
          this.stats.adopted++;
          this.allocated(hash, candidate, "adopted");
          return;
        }
      }
    }
    throw new Error(`could not allocate an identity for ${hash} after 64 attempts`);
  }

  private allocated(hash: string, id: number, how: "created" | "adopted"): void {
    this.o.metrics?.identitiesAllocated.inc();
    const since = this.waitingSince.get(hash);
    // Per identity, so debug: a rollout of a new Deployment allocates one, a cluster start thousands.
    this.log.debug(
      {
        identity: id,
        label_set_hash: hash,
        how,
        ...(since !== undefined ? { wait_ms: Math.round(performance.now() - since) } : {}),
      },
      "identity allocated",
    );
    this.bound(hash);
  }

  /** An API call whose unexpected failures count in sluice_operator_api_errors_total. */
  private async api<T>(verb: ApiVerb, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      // AlreadyExists and NotFound are answers the allocation and GC decide on, not failures.
      if (!isAlreadyExists(err) && !isNotFound(err))
        this.o.metrics?.apiError(SECURITY_IDENTITIES.plural, verb);
      throw err;
    }
  }

  private async read(id: number): Promise<IdentityObj | undefined> {
    try {
      return await this.api("get", () =>
        rawRequest<IdentityObj>(this.o.kc, "GET", objectPath(SECURITY_IDENTITIES, String(id))),
      );
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  private async sweep(): Promise<{ requeueAfterMs: number }> {
    const interval = this.o.sweepIntervalMs ?? 30_000;
    const plan = planGc(
      this.index,
      (h) => this.uses.has(h) || this.pending.has(h),
      this.unusedSince,
      Date.now(),
      this.o.gcGraceMs,
    );
    const t0 = performance.now();
    const done = { delete: 0, tombstone: 0 };
    // Retirements are independent (each its own object), so several are in flight at once: one at a
    // time, a sweep after a large scale-down retired identities at the API server's round-trip rate
    // (test/scale measured 8/s under load).
    let next = 0;
    const retire = async () => {
      while (next < plan.actions.length) {
        const a = plan.actions[next++];
        const r = this.index.get(a.id);
        // Re-check against the cache right before writing: a pod may have come back meanwhile.
        if (a.why === "unused" && r && this.uses.has(r.hash)) continue;
        this.guard();
        if (a.action === "delete") await this.deleteIdentity(a.id);
        else await this.tombstone(a.id);
        done[a.action]++;
        this.o.metrics?.identitiesGc.inc({ action: a.action });
        this.log.debug({ identity: a.id, action: a.action, why: a.why }, "identity retired");
      }
    };
    await Promise.all(Array.from({ length: GC_CONCURRENCY }, retire));
    // One line per sweep that did something, not one per identity.
    if (done.delete + done.tombstone > 0)
      this.log.info(
        { deleted: done.delete, tombstoned: done.tombstone, sweep_ms: Math.round(performance.now() - t0) },
        "identity gc",
      );
    return { requeueAfterMs: Math.max(50, Math.min(interval, plan.nextDueMs ?? interval)) };
  }

  private async deleteIdentity(id: number): Promise<void> {
    try {
      await this.api("delete", () =>
        rawRequest(this.o.kc, "DELETE", objectPath(SECURITY_IDENTITIES, String(id))),
      );
      this.stats.deleted++;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  private async tombstone(id: number): Promise<void> {
    try {
      await this.api("patch", () =>
        rawRequest(
          this.o.kc,
          "PATCH",
          objectPath(SECURITY_IDENTITIES, String(id)),
          { metadata: { labels: { [IDENTITY_TOMBSTONE_LABEL]: "true", [IDENTITY_HASH_LABEL]: null } } },
          { contentType: "application/merge-patch+json" },
        ),
      );
      this.stats.tombstoned++;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
}
