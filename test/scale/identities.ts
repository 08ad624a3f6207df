// What the API server holds of identities, read whole (paged): live identities per label set, so
// the rig can count label sets without one and label sets with more than one (duplicates).
import {
  IDENTITY_HASH_LABEL,
  identityRecord,
  type IdentityObject,
} from "../../operator/src/identity/allocator.ts";
import { collectionPath, SECURITY_IDENTITIES } from "../../operator/src/kube/resources.ts";
import type { ApiHttp } from "./http.ts";

export interface IdentityCensus {
  live: number;
  tombstones: number;
  /** Label sets (by hash) with more than one live identity. */
  duplicates: number;
  hashes: Set<string>;
}

export async function identityCensus(http: ApiHttp): Promise<IdentityCensus> {
  const byHash = new Map<string, number>();
  let tombstones = 0;
  let cont = "";
  do {
    const r = await http.must<{ items: IdentityObject[]; metadata: { continue?: string } }>(
      "GET",
      `${collectionPath(SECURITY_IDENTITIES)}?limit=1000${cont ? `&continue=${encodeURIComponent(cont)}` : ""}`,
    );
    for (const o of r.body.items) {
      const rec = identityRecord(o);
      if (!rec) continue;
      if (rec.tombstone) tombstones++;
      else byHash.set(rec.hash, (byHash.get(rec.hash) ?? 0) + 1);
      // The index label must agree with spec.labels (what agents and the leader look up by).
      const label = o.metadata?.labels?.[IDENTITY_HASH_LABEL];
      if (!rec.tombstone && label !== rec.hash)
        throw new Error(
          `identity ${rec.id}: label ${IDENTITY_HASH_LABEL}=${label} but spec hashes to ${rec.hash}`,
        );
    }
    cont = r.body.metadata.continue ?? "";
  } while (cont);
  let live = 0;
  let duplicates = 0;
  for (const n of byHash.values()) {
    live += n;
    if (n > 1) duplicates++;
  }
  return { live, tombstones, duplicates, hashes: new Set(byHash.keys()) };
}
