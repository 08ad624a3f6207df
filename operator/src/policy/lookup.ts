// The BPF program's policy decision, simulated over compiled state as a plain longest-prefix match.
// How the maps store a group is the datapath's business (datapath/writer/group-arrangement.ts); whatever the
// arrangement, the program must give this answer, and the differential tests check that it does.
// Not a hot path.
import { containsIp, parseIp, parsePrefix } from "./cidr.ts";
import type { AuditOutcome, Direction, EndpointPolicy, PolicyEntry, Verdict } from "./mapstate.ts";
import { ReservedIdentity, ReservedRuleId } from "./mapstate.ts";

export interface LookupResult {
  verdict: Verdict;
  // The entry that decided, or undefined when the endpoint default did.
  entry?: PolicyEntry;
  // What the Audit policies would decide instead, only where their verdict differs: the entry's
  // audit outcome, or with no entry the audited default (auditDefaultDeny) as rule DEFAULT.
  audit?: AuditOutcome;
}

// Whether entry e covers (protocol, port).
export function entryMatches(e: PolicyEntry, protocol: number, port: number): boolean {
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

// The most specific entry covering (protocol, port); among equals, the first.
export function longestMatch(
  entries: readonly PolicyEntry[],
  protocol: number,
  port: number,
): PolicyEntry | undefined {
  let best: PolicyEntry | undefined;
  for (const e of entries) {
    if (entryMatches(e, protocol, port) && (!best || specificity(e) > specificity(best))) best = e;
  }
  return best;
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
    const entry = longestMatch(group, protocol, port);
    if (entry)
      return entry.audit
        ? { verdict: entry.verdict, entry, audit: entry.audit }
        : { verdict: entry.verdict, entry };
  }
  const deny = policy.defaultDeny[direction];
  const auditDeny = policy.auditDefaultDeny?.[direction] ?? deny;
  if (auditDeny === deny) return { verdict: deny ? "deny" : "allow" };
  return {
    verdict: deny ? "deny" : "allow",
    audit: { verdict: auditDeny ? "deny" : "allow", ruleId: ReservedRuleId.DEFAULT },
  };
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
