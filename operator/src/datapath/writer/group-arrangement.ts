// How the maps store one group (the entries of one endpoint, generation, direction and peer identity;
// bpf/include/sluice_shared.h, sl_policy_set): whole in the group's hash value when it fits (inline,
// most specific first), else its full-port entries in an exact hash (sl_pexact) and the others inline
// or, when even they do not fit, in the LPM trie (sl_pol). Any arrangement gives the longest-prefix
// answer (policy/lookup.ts is the plain longest-match simulator the tests hold the program to); this
// one bounds the lookups per group whatever the map sizes.
import { entryMatches, longestMatch, specificity } from "../../policy/lookup.ts";
import type { PolicyEntry } from "../../policy/mapstate.ts";

export interface GroupLayout {
  inline: readonly PolicyEntry[];
  exact: readonly PolicyEntry[];
  lpm: readonly PolicyEntry[];
}

function isExact(e: PolicyEntry): boolean {
  return e.protocol !== 0 && e.portPrefixLen === 16;
}

// Most specific first, then by protocol and port (a stable sort keeps equal entries in input order).
function byPrecedence(a: PolicyEntry, b: PolicyEntry): number {
  return specificity(b) - specificity(a) || a.protocol - b.protocol || a.port - b.port;
}

const NONE: readonly PolicyEntry[] = Object.freeze([]);

// capacity: inline entries per group (SL_POLICY_INLINE of bpf/include/sluice_shared.h; policy-encoder.ts
// INLINE).
export function arrangeGroup(entries: readonly PolicyEntry[], capacity: number): GroupLayout {
  if (entries.length <= capacity)
    return { inline: entries.slice().sort(byPrecedence), exact: NONE, lpm: NONE };
  const exact = entries.filter(isExact);
  const rest = entries.filter((e) => !isExact(e));
  if (rest.length <= capacity) return { inline: rest.sort(byPrecedence), exact, lpm: NONE };
  return { inline: NONE, exact, lpm: rest };
}

// Entries grouped by direction and identity, for arrangeGroup.
export function groupsOf(entries: readonly PolicyEntry[]): Map<string, PolicyEntry[]> {
  const out = new Map<string, PolicyEntry[]>();
  for (const e of entries) {
    const k = `${e.direction}|${e.identity}`;
    const g = out.get(k);
    if (g) g.push(e);
    else out.set(k, [e]);
  }
  return out;
}

// One arranged group searched as the BPF program searches it (sl_policy in bpf/sluice.bpf.c): the exact hash, then the
// inline entries in order (the first match), then the LPM trie. It must give longestMatch's answer.
export function searchGroup(g: GroupLayout, protocol: number, port: number): PolicyEntry | undefined {
  const exact = g.exact.find((e) => e.protocol === protocol && e.port === port);
  if (exact) return exact;
  const inline = g.inline.find((e) => entryMatches(e, protocol, port));
  if (inline) return inline;
  return longestMatch(g.lpm, protocol, port);
}
