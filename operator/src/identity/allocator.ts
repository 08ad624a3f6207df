// Identity allocation, the pure part: which SecurityIdentity stands for a label set, which
// number to try next, which objects are duplicates. The controller (controllers/identity-controller.ts)
// does the I/O.
//
// Invariants and how they hold:
// - One number never names two label sets: the number is the object's name, so the API server
//   lets exactly one create succeed, and spec.labels is immutable (CEL in the CRD).
// - Numbers are never reused: allocation is monotonic. The next number is above every identity
//   object (tombstones included), every number a node reports holding (SecurityNodeStatus
//   status.maxIdentity) and every number this process created. GC never deletes the
//   highest-numbered object: it turns it into a tombstone (label sluice.dev/tombstone), which keeps
//   the high-water mark in the API server without a ConfigMap; older tombstones are deleted.
// - One label set has one identity: the leader checks its cache (and its own creates not yet seen
//   there) before creating. A failover can still race: the old leader's create in flight when its
//   lease runs out lands after the new leader looked. Then two objects carry the same label set;
//   the deterministic tiebreak is "the lowest number wins": agents resolve a label set to its
//   lowest-numbered live identity (resolveIdentity), and the leader retires every higher duplicate
//   as soon as it sees it. Both replicas would pick the same survivor, so the race heals to exactly
//   one identity without ever giving a number a second meaning.
import { createHash } from "node:crypto";
import { type LabelSet, labelSetKey } from "./labels.ts";

export const IDENTITY_HASH_LABEL = "sluice.dev/label-hash";
export const IDENTITY_TOMBSTONE_LABEL = "sluice.dev/tombstone";
export const CLUSTER_ID_MIN = 256;
/** The CRD allows numbers below 2^24 (the ipcache/policy maps' identity width used by Sluice). */
export const CLUSTER_ID_MAX = 16_777_215;

/** 40 hex digits (160 bits) of SHA-256 over the canonical label set: fits a label value. */
export function labelSetHash(labels: LabelSet): string {
  return createHash("sha256").update(labelSetKey(labels)).digest("hex").slice(0, 40);
}

export interface IdentityObject {
  metadata?: {
    name?: string;
    labels?: Record<string, string>;
    deletionTimestamp?: string | Date;
    creationTimestamp?: string | Date;
  };
  spec?: { labels?: Record<string, string> };
}

export interface IdentityRecord {
  id: number;
  /** Hash computed from spec.labels (the label is only an index for lookups). */
  hash: string;
  labels: LabelSet;
  tombstone: boolean;
}

/** Parses an identity object; undefined for objects that are not valid cluster identities. */
export function identityRecord(obj: IdentityObject): IdentityRecord | undefined {
  const name = obj.metadata?.name ?? "";
  if (!/^[1-9][0-9]{2,9}$/.test(name)) return undefined;
  const id = Number(name);
  if (id < CLUSTER_ID_MIN || id > CLUSTER_ID_MAX) return undefined;
  const labels = obj.spec?.labels ?? {};
  return {
    id,
    hash: labelSetHash(labels),
    labels,
    tombstone:
      obj.metadata?.labels?.[IDENTITY_TOMBSTONE_LABEL] === "true" || !!obj.metadata?.deletionTimestamp,
  };
}

function sameLabels(a: LabelSet, b: LabelSet): boolean {
  return labelSetKey(a) === labelSetKey(b);
}

/** An index over identity objects; rebuild or update it from the informer cache. */
export class IdentityIndex {
  private readonly byId = new Map<number, IdentityRecord>();
  private readonly byHash = new Map<string, Set<number>>();
  private max = 0;

  constructor(records: Iterable<IdentityRecord> = []) {
    for (const r of records) this.upsert(r);
  }

  upsert(r: IdentityRecord): void {
    this.remove(r.id);
    this.byId.set(r.id, r);
    let set = this.byHash.get(r.hash);
    if (!set) {
      set = new Set();
      this.byHash.set(r.hash, set);
    }
    set.add(r.id);
    if (r.id > this.max) this.max = r.id;
  }

  remove(id: number): void {
    const r = this.byId.get(id);
    if (!r) return;
    this.byId.delete(id);
    const set = this.byHash.get(r.hash);
    set?.delete(id);
    if (set && set.size === 0) this.byHash.delete(r.hash);
    if (id === this.max) {
      // A loop, not Math.max(...keys): tens of thousands of arguments overflow the stack.
      let max = 0;
      for (const k of this.byId.keys()) if (k > max) max = k;
      this.max = max;
    }
  }

  get(id: number): IdentityRecord | undefined {
    return this.byId.get(id);
  }

  /** Highest number of any object, tombstones included (0 when none). */
  get maxId(): number {
    return this.max;
  }

  get size(): number {
    return this.byId.size;
  }

  all(): IterableIterator<IdentityRecord> {
    return this.byId.values();
  }

  /** Live (non-tombstone) identities of a label set, lowest number first. */
  live(hash: string, labels?: LabelSet): IdentityRecord[] {
    const out: IdentityRecord[] = [];
    for (const id of this.byHash.get(hash) ?? []) {
      const r = this.byId.get(id);
      if (r && !r.tombstone && (!labels || sameLabels(r.labels, labels))) out.push(r);
    }
    return out.sort((a, b) => a.id - b.id);
  }

  /** Hashes that have more than one live identity. */
  duplicatedHashes(): string[] {
    const out: string[] = [];
    for (const [hash, ids] of this.byHash) {
      if (ids.size > 1 && this.live(hash).length > 1) out.push(hash);
    }
    return out;
  }
}

/** The identity of a label set: its lowest-numbered live identity (the tiebreak every process uses). */
export function resolveIdentity(index: IdentityIndex, labels: LabelSet): number | undefined {
  return index.live(labelSetHash(labels), labels)[0]?.id;
}

/** The first number to try for a new identity: above everything known to exist or to have existed. */
export function nextCandidate(index: IdentityIndex, floors: Iterable<number>): number {
  let n = Math.max(CLUSTER_ID_MIN - 1, index.maxId);
  for (const f of floors) if (f > n) n = f;
  const next = n + 1;
  if (next > CLUSTER_ID_MAX) throw new Error(`identity numbers exhausted (next would be ${next})`);
  return next;
}

/**
 * What to do with an identity nobody uses any more, or a duplicate: delete it, unless it is the
 * highest number, which stays as a tombstone so the high-water mark survives restarts.
 */
export function retirement(index: IdentityIndex, id: number): "delete" | "tombstone" {
  return id >= index.maxId ? "tombstone" : "delete";
}

/** Tombstones below the highest number: they no longer carry the high-water mark. */
export function obsoleteTombstones(index: IdentityIndex): number[] {
  const out: number[] = [];
  for (const r of index.all()) if (r.tombstone && r.id < index.maxId) out.push(r.id);
  return out;
}
