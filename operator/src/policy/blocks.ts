// Turns a verdict function over (protocol, 16-bit port) into the fewest longest-prefix-match
// entries that reproduce it (a dynamic program over the binary trie of port prefixes, in the
// spirit of ORTC). Points may also accept "no entry": then the lookup falls through to the next
// stage (the wildcard-identity lookup, or the endpoint default) which is known to give the same
// answer there.

// Encoded (verdict, ruleId); NONE = no entry covers the point.
export const NONE = -1;

export function encodeValue(deny: boolean, ruleId: number): number {
  return ruleId * 2 + (deny ? 1 : 0);
}
export function decodeValue(v: number): { deny: boolean; ruleId: number } {
  return { deny: v % 2 === 1, ruleId: Math.floor(v / 2) };
}

export interface Interval {
  lo: number;
  hi: number;
  value: number;
  // The fall-through answer equals value here, so "no entry" is acceptable too.
  fallOk: boolean;
}

export interface Block {
  proto: number;
  port: number;
  len: number;
  value: number;
}

interface TrieNode {
  lo: number;
  bits: number;
  // Uniform node: the one interval covering it.
  leaf?: Interval;
  left?: TrieNode;
  right?: TrieNode;
  // Cost per inherited value (values present below plus NONE); other values: costOther.
  costs: Map<number, number>;
  costOther: number;
  bestEmit: number;
  bestEmitValue: number;
}

function costOf(n: TrieNode, h: number): number {
  return n.costs.get(h) ?? n.costOther;
}

function build(intervals: readonly Interval[], lo: number, bits: number, start: number): TrieNode {
  let i = start;
  while (intervals[i].hi < lo) i++;
  const hi = lo + (1 << bits) - 1;
  const iv = intervals[i];
  if (iv.hi >= hi) {
    const costs = new Map<number, number>([
      [iv.value, 0],
      [NONE, iv.fallOk ? 0 : 1],
    ]);
    return { lo, bits, leaf: iv, costs, costOther: 1, bestEmit: 1, bestEmitValue: iv.value };
  }
  const half = 1 << (bits - 1);
  const left = build(intervals, lo, bits - 1, i);
  const right = build(intervals, lo + half, bits - 1, i);
  const candidates = new Set<number>([...left.costs.keys(), ...right.costs.keys()]);
  let bestEmit = Number.POSITIVE_INFINITY;
  let bestEmitValue = NONE;
  for (const v of candidates) {
    if (v === NONE) continue;
    const c = 1 + costOf(left, v) + costOf(right, v);
    if (c < bestEmit || (c === bestEmit && v < bestEmitValue)) {
      bestEmit = c;
      bestEmitValue = v;
    }
  }
  const costs = new Map<number, number>();
  for (const h of candidates) costs.set(h, Math.min(costOf(left, h) + costOf(right, h), bestEmit));
  const costOther = Math.min(left.costOther + right.costOther, bestEmit);
  return { lo, bits, left, right, costs, costOther, bestEmit, bestEmitValue };
}

function emit(n: TrieNode, proto: number, h: number, out: Block[]): void {
  if (n.leaf) {
    const ok = h === n.leaf.value || (h === NONE && n.leaf.fallOk);
    if (!ok) out.push({ proto, port: n.lo, len: 16 - n.bits, value: n.leaf.value });
    return;
  }
  const left = n.left!;
  const right = n.right!;
  if (costOf(left, h) + costOf(right, h) <= n.bestEmit) {
    emit(left, proto, h, out);
    emit(right, proto, h, out);
  } else {
    out.push({ proto, port: n.lo, len: 16 - n.bits, value: n.bestEmitValue });
    emit(left, proto, n.bestEmitValue, out);
    emit(right, proto, n.bestEmitValue, out);
  }
}

function mergeAdjacent(intervals: readonly Interval[]): Interval[] {
  const out: Interval[] = [];
  for (const iv of intervals) {
    const last = out[out.length - 1];
    if (last && last.value === iv.value && last.fallOk === iv.fallOk && last.hi + 1 === iv.lo)
      last.hi = iv.hi;
    else out.push({ ...iv });
  }
  return out;
}

export interface ProtocolSpace {
  proto: number;
  // Contiguous, sorted, covering 0..65535.
  intervals: Interval[];
}

// `other`: the answer for every protocol not listed (it has no port-specific rules).
export function compileBlocks(
  spaces: readonly ProtocolSpace[],
  other: { value: number; fallOk: boolean },
): Block[] {
  const roots = spaces.map((s) => ({ proto: s.proto, root: build(mergeAdjacent(s.intervals), 0, 16, 0) }));
  const sum = (h: number) => roots.reduce((acc, r) => acc + costOf(r.root, h), 0);
  // Either no protocol-wide entry (only possible when "no entry" is right for other protocols) or
  // one with the other protocols' answer.
  const withEntry = 1 + sum(other.value);
  const useEntry = !other.fallOk || withEntry < sum(NONE);
  const h = useEntry ? other.value : NONE;
  const out: Block[] = useEntry ? [{ proto: 0, port: 0, len: 0, value: other.value }] : [];
  for (const r of roots) emit(r.root, r.proto, h, out);
  return out;
}
