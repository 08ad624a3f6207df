// Which SecurityIdentity a label set has, as the agents and the lab read the operator's objects.
import type { ClusterObjects } from "../api/objects.ts";
import { IDENTITY_TOMBSTONE_LABEL } from "./allocator.ts";
import { labelSetKey } from "./labels.ts";

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
