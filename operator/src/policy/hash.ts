// Stable numbering: a key keeps its number when other keys come and go (unless two keys collide
// and one of them has to probe), so incremental deltas stay small.

export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

// Assigns each key a number in [base, base + size) from its hash, probing linearly on collision in
// sorted key order, so the result depends only on the set of keys.
export function stableIds(keys: Iterable<string>, base: number, size: number): Map<string, number> {
  const sorted = [...new Set(keys)].sort();
  if (sorted.length > size) throw new Error(`stableIds: ${sorted.length} keys do not fit in ${size} numbers`);
  const used = new Set<number>();
  const out = new Map<string, number>();
  for (const k of sorted) {
    let slot = fnv1a32(k) % size;
    while (used.has(slot)) slot = (slot + 1) % size;
    used.add(slot);
    out.set(k, base + slot);
  }
  return out;
}
