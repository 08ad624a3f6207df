// The BPF program's policy decision, simulated over compiled state. Keep this in step with
// bpf/sluice.bpf.c (sl_policy): the differential test checks that both agree. Not a hot path.
import { enums } from "../datapath/layout.generated.ts";
import { containsIp, parseIp, parsePrefix } from "./cidr.ts";
import type { Direction, EndpointPolicy, PolicyEntry, Verdict } from "./mapstate.ts";
import { ReservedIdentity } from "./mapstate.ts";

// Inline entries per group: a datapath constant (bpf/include/sluice_shared.h), read from the BTF layout.
const INLINE = enums.sl_policy_inline.SL_POLICY_INLINE;

export interface LookupResult {
  verdict: Verdict;
  // The entry that decided, or undefined when the endpoint default did.
  entry?: PolicyEntry;
}

function matches(e: PolicyEntry, protocol: number, port: number): boolean {
  if (e.protocol === 0) return true;
  if (e.protocol !== protocol) return false;
  if (e.portPrefixLen === 0) return true;
  const shift = 16 - e.portPrefixLen;
  return port >>> shift === e.port >>> shift;
}

// Longest-prefix rank: any protocol < one protocol, any port < longer port prefixes.
export function specificity(e: Pick<PolicyEntry, "protocol" | "portPrefixLen">): number {
  return e.protocol === 0 ? 0 : 1 + e.portPrefixLen;
}

function isExact(e: PolicyEntry): boolean {
  return e.protocol !== 0 && e.portPrefixLen === 16;
}

// How the datapath stores one group (the entries of one direction and peer identity): whole in the
// group's hash value when it fits (inline, most specific first), else its full-port entries in an exact
// hash and the others inline or, when even they do not fit, in an LPM trie. Any arrangement gives the
// longest-prefix answer; this one bounds the lookups per group whatever the map sizes.
export interface GroupLayout {
  inline: readonly PolicyEntry[];
  exact: readonly PolicyEntry[];
  lpm: readonly PolicyEntry[];
}

// Most specific first, then by protocol and port (a stable sort keeps equal entries in input order).
function byPrecedence(a: PolicyEntry, b: PolicyEntry): number {
  return specificity(b) - specificity(a) || a.protocol - b.protocol || a.port - b.port;
}

const NONE: readonly PolicyEntry[] = Object.freeze([]);

// capacity: inline entries per group (SL_POLICY_INLINE of bpf/include/sluice_shared.h).
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

function longestMatch(
  entries: readonly PolicyEntry[],
  protocol: number,
  port: number,
): PolicyEntry | undefined {
  let best: PolicyEntry | undefined;
  for (const e of entries) {
    if (matches(e, protocol, port) && (!best || specificity(e) > specificity(best))) best = e;
  }
  return best;
}

// One group as the BPF program searches it: exact hash, inline entries in order, LPM trie.
function groupMatch(g: GroupLayout, protocol: number, port: number): PolicyEntry | undefined {
  const exact = g.exact.find((e) => e.protocol === protocol && e.port === port);
  if (exact) return exact;
  const inline = g.inline.find((e) => matches(e, protocol, port));
  if (inline) return inline;
  return longestMatch(g.lpm, protocol, port);
}

// The peer identity's group, then the wildcard identity's; the first match decides; else the default.
// Linear in the endpoint's entries: this is the oracle for tests and the CLI's matrix.
export function lookupVerdict(
  policy: EndpointPolicy,
  direction: Direction,
  peerIdentity: number,
  protocol: number,
  port: number,
): LookupResult {
  for (const identity of [peerIdentity, ReservedIdentity.ANY]) {
    const group = policy.entries.filter((e) => e.direction === direction && e.identity === identity);
    const entry = group.length > 0 ? groupMatch(arrangeGroup(group, INLINE), protocol, port) : undefined;
    if (entry) return { verdict: entry.verdict, entry };
  }
  return { verdict: policy.defaultDeny[direction] ? "deny" : "allow" };
}

// The ipcache lookup: longest prefix containing the address; a miss means world.
export function lookupIdentity(ipcache: readonly { cidr: string; identity: number }[], ip: string): number {
  const addr = parseIp(ip);
  if (!addr) return ReservedIdentity.WORLD;
  let best = -1;
  let identity: number = ReservedIdentity.WORLD;
  for (const e of ipcache) {
    const p = parsePrefix(e.cidr);
    if (p && p.len > best && containsIp(p, addr)) {
      best = p.len;
      identity = e.identity;
    }
  }
  return identity;
}
