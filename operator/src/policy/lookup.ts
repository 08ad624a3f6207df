// The BPF program's policy decision, simulated over compiled state. Keep this in step with
// bpf/sluice.bpf.c: the differential test checks that both agree.
import { containsIp, parseIp, parsePrefix } from "./cidr.ts";
import type { Direction, EndpointPolicy, PolicyEntry, Verdict } from "./mapstate.ts";
import { ReservedIdentity } from "./mapstate.ts";

export interface LookupResult {
  verdict: Verdict;
  // The entry that decided, or undefined when the endpoint default did.
  entry?: PolicyEntry;
}

function matches(
  e: PolicyEntry,
  direction: Direction,
  identity: number,
  protocol: number,
  port: number,
): boolean {
  if (e.direction !== direction || e.identity !== identity) return false;
  if (e.protocol === 0) return true;
  if (e.protocol !== protocol) return false;
  if (e.portPrefixLen === 0) return true;
  const shift = 16 - e.portPrefixLen;
  return port >>> shift === e.port >>> shift;
}

function specificity(e: PolicyEntry): number {
  return e.protocol === 0 ? 0 : 1 + e.portPrefixLen;
}

function longestMatch(
  entries: readonly PolicyEntry[],
  direction: Direction,
  identity: number,
  protocol: number,
  port: number,
): PolicyEntry | undefined {
  let best: PolicyEntry | undefined;
  for (const e of entries) {
    if (matches(e, direction, identity, protocol, port) && (!best || specificity(e) > specificity(best)))
      best = e;
  }
  return best;
}

// Linear scan: this is the oracle for tests and the CLI's matrix, not a hot path.
export function lookupVerdict(
  policy: EndpointPolicy,
  direction: Direction,
  peerIdentity: number,
  protocol: number,
  port: number,
): LookupResult {
  const entry =
    longestMatch(policy.entries, direction, peerIdentity, protocol, port) ??
    longestMatch(policy.entries, direction, 0, protocol, port);
  if (entry) return { verdict: entry.verdict, entry };
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
