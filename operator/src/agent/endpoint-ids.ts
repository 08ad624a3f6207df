// Endpoint ids appear in every policy, conntrack and counter key, so an endpoint must keep its id for
// its whole life, across agent restarts: ids come from what the maps already hold, new endpoints get
// the smallest free id.
export function assignEndpointIds(keys: readonly string[], existing: ReadonlyMap<string, number>): Map<string, number> {
  const result = new Map<string, number>();
  const used = new Set<number>();
  for (const key of keys) {
    const id = existing.get(key);
    if (id !== undefined && !used.has(id)) {
      result.set(key, id);
      used.add(id);
    }
  }
  let next = 1;
  for (const key of [...keys].sort()) {
    if (result.has(key)) continue;
    while (used.has(next)) next++;
    result.set(key, next);
    used.add(next);
  }
  return result;
}
