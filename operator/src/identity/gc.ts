// Identity garbage collection, the pure part. An identity no pod uses is retired after a grace
// period (a pod being recreated, or a rollout that comes back, keeps its number); duplicates left
// by a failover race are retired at once (the lowest number of a label set wins); tombstones below
// the high-water mark are deleted. "Retire" deletes, except the highest number, which becomes a
// tombstone (allocator.ts explains why numbers are never reused).
import { type IdentityIndex, obsoleteTombstones, retirement } from "./allocator.ts";

export interface GcAction {
  id: number;
  action: "delete" | "tombstone";
  why: "unused" | "duplicate" | "obsolete-tombstone";
}

export interface GcPlan {
  actions: GcAction[];
  /** When the next unused identity comes due (ms from now); undefined when none is pending. */
  nextDueMs?: number;
}

/**
 * Plans one sweep. `unusedSince` (identity number → first time seen unused, ms) is carried
 * between sweeps by the caller and updated here; on a new leader it starts empty, so the grace
 * period restarts: a failover delays GC, never hastens it.
 */
export function planGc(
  index: IdentityIndex,
  inUse: (hash: string) => boolean,
  unusedSince: Map<number, number>,
  nowMs: number,
  graceMs: number,
): GcPlan {
  const actions: GcAction[] = [];
  const retired = new Set<number>();
  const retire = (id: number, why: GcAction["why"]) => {
    if (retired.has(id)) return;
    retired.add(id);
    actions.push({ id, action: why === "obsolete-tombstone" ? "delete" : retirement(index, id), why });
  };
  for (const hash of index.duplicatedHashes()) {
    for (const dup of index.live(hash).slice(1)) retire(dup.id, "duplicate");
  }
  let nextDueMs: number | undefined;
  const seen = new Set<number>();
  for (const r of index.all()) {
    if (r.tombstone) continue;
    seen.add(r.id);
    if (inUse(r.hash)) {
      unusedSince.delete(r.id);
      continue;
    }
    const since = unusedSince.get(r.id) ?? nowMs;
    unusedSince.set(r.id, since);
    const left = since + graceMs - nowMs;
    if (left <= 0) retire(r.id, "unused");
    else if (!retired.has(r.id)) nextDueMs = Math.min(nextDueMs ?? left, left);
  }
  for (const id of unusedSince.keys()) if (!seen.has(id)) unusedSince.delete(id);
  for (const id of obsoleteTombstones(index)) retire(id, "obsolete-tombstone");
  return { actions, nextDueMs };
}
