// Deterministic identity allocation for offline use (the CLI, the lab's static mode): the same
// label sets always get the same numbers, from ReservedIdentity.CLUSTER_MIN up in label-key order.
// A running cluster allocates through the API server instead (SecurityIdentity objects).
import { ReservedIdentity } from "../policy/mapstate.ts";
import { type LabelSet, labelSetKey } from "./labels.ts";

export interface Identity {
  id: number;
  labels: LabelSet;
}

export function allocateStatic(labelSets: Iterable<LabelSet>): Identity[] {
  const byKey = new Map<string, LabelSet>();
  for (const l of labelSets) byKey.set(labelSetKey(l), l);
  const keys = [...byKey.keys()].sort();
  return keys.map((k, i) => ({ id: ReservedIdentity.CLUSTER_MIN + i, labels: byKey.get(k)! }));
}
