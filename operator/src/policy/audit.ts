// Audit compilation (issue 13 §4): one endpoint's map state that enforces E1 (its policies without the
// Audit ones) and carries, on each entry, what E2 (with the Audit policies enforced) would decide where
// that differs. The datapath then enforces E1 exactly and reports every packet whose fate E2 changes.
//
// The merge, per direction and per peer-identity group X of E1 or E2: the keys of E1_X, E2_X and of
// both ANY groups (U_ANY = E1_ANY ∪ E2_ANY). Copying the ANY keys into every X makes each entry's region
// (its points minus those of more specific keys of its group) one on which both E1's and E2's two-stage
// lookups are constant: port prefixes nest, so every E entry touching the region contains the key, and
// the answer there is the most specific E entry that contains the key (coveringLookup). Each entry
// gets E1's answer as its value and E2's as `audit` where the verdicts differ. Where no key matches, no E
// entry did either: the defaults decide (defaultDeny from E1, auditDefaultDeny from E2).
import type { AuditOutcome, Direction, EndpointPolicy, PolicyEntry } from "./mapstate.ts";
import { policyEntryKey, ReservedIdentity, ReservedRuleId } from "./mapstate.ts";

type Key = Pick<PolicyEntry, "direction" | "identity" | "protocol" | "port" | "portPrefixLen">;

interface Answer {
  verdict: PolicyEntry["verdict"];
  ruleId: number;
}

// The keys of one (direction, identity) group containing k, most specific first: k's own port prefix
// shortened bit by bit, then the any-protocol key.
function coveringKeys(k: Key, identity: number): string[] {
  const out: string[] = [];
  if (k.protocol !== 0)
    for (let len = k.portPrefixLen; len >= 0; len--) {
      const port = len === 0 ? 0 : (k.port >>> (16 - len)) << (16 - len);
      out.push(policyEntryKey({ ...k, identity, port, portPrefixLen: len }));
    }
  out.push(policyEntryKey({ ...k, identity, protocol: 0, port: 0, portPrefixLen: 0 }));
  return out;
}

// What the two-stage lookup of `policy` answers on the region of key k (see the file's head).
function coveringLookup(
  policy: EndpointPolicy,
  byKey: ReadonlyMap<string, PolicyEntry>,
  k: Key,
  identity: number,
): Answer {
  for (const id of identity === ReservedIdentity.ANY ? [identity] : [identity, ReservedIdentity.ANY])
    for (const key of coveringKeys(k, id)) {
      const e = byKey.get(key);
      if (e) return { verdict: e.verdict, ruleId: e.ruleId };
    }
  return { verdict: policy.defaultDeny[k.direction] ? "deny" : "allow", ruleId: ReservedRuleId.DEFAULT };
}

/** Whether two entries decide alike: the same verdict and rule, and the same audit outcome. */
export function sameOutcome(a: PolicyEntry, b: PolicyEntry): boolean {
  return (
    a.verdict === b.verdict &&
    a.ruleId === b.ruleId &&
    a.audit?.verdict === b.audit?.verdict &&
    a.audit?.ruleId === b.audit?.ruleId
  );
}

// Drops entries whose nearest enclosing entry of the same group has the same value: their points then
// take that entry, with the same answer. Most specific first, so a chain of equal values collapses.
function dropRedundant(group: Map<string, PolicyEntry>): void {
  const entries = [...group.values()].sort(
    (a, b) => (b.protocol === 0 ? 0 : 1 + b.portPrefixLen) - (a.protocol === 0 ? 0 : 1 + a.portPrefixLen),
  );
  for (const e of entries) {
    const parent = coveringKeys(e, e.identity)
      .slice(1)
      .map((k) => group.get(k))
      .find((p) => p !== undefined);
    if (parent && sameOutcome(parent, e)) group.delete(policyEntryKey(e));
  }
}

/**
 * The merged policy, or `enforced` itself when the Audit policies change no packet's fate (then the
 * endpoint compiles exactly as it would without them).
 */
export function mergeAudit(enforced: EndpointPolicy, audited: EndpointPolicy): EndpointPolicy {
  const index = (p: EndpointPolicy) => new Map(p.entries.map((e) => [policyEntryKey(e), e]));
  const e1 = index(enforced);
  const e2 = index(audited);
  const out: PolicyEntry[] = [];
  let differs = false;
  for (const direction of ["ingress", "egress"] as Direction[]) {
    const ofDirection = (p: EndpointPolicy) => p.entries.filter((e) => e.direction === direction);
    const all = [...ofDirection(enforced), ...ofDirection(audited)];
    const anyKeys = all.filter((e) => e.identity === ReservedIdentity.ANY);
    const identities = new Set(all.map((e) => e.identity));
    for (const identity of [...identities].sort((a, b) => a - b)) {
      const group = new Map<string, PolicyEntry>();
      const keys =
        identity === ReservedIdentity.ANY
          ? anyKeys
          : [...all.filter((e) => e.identity === identity), ...anyKeys];
      for (const k of keys) {
        const key = policyEntryKey({ ...k, identity });
        if (group.has(key)) continue;
        const now = coveringLookup(enforced, e1, k, identity);
        const would = coveringLookup(audited, e2, k, identity);
        const entry: PolicyEntry = {
          direction,
          identity,
          protocol: k.protocol,
          port: k.port,
          portPrefixLen: k.portPrefixLen,
          verdict: now.verdict,
          ruleId: now.ruleId,
        };
        if (would.verdict !== now.verdict) {
          entry.audit = { verdict: would.verdict, ruleId: would.ruleId } satisfies AuditOutcome;
          differs = true;
        }
        group.set(key, entry);
      }
      dropRedundant(group);
      out.push(...group.values());
    }
  }
  const d1 = enforced.defaultDeny;
  const d2 = audited.defaultDeny;
  const defaultsDiffer = d1.ingress !== d2.ingress || d1.egress !== d2.egress;
  if (!differs && !defaultsDiffer) return enforced;
  return {
    defaultDeny: { ...d1 },
    ...(defaultsDiffer ? { auditDefaultDeny: { ...d2 } } : {}),
    entries: out,
  };
}
