// Per-rule counters named for people: the datapath counts packets, bytes and flows per (endpoint, rule,
// enforced or audit) in per-CPU slots (datapath/writer/rule-slots.ts); an agent sums its endpoints'
// slots per rule, names each rule with its view (monitor/view.ts), adds the rules of its policies that
// no entry of this node carries (shadowed, or selecting nothing here), and serves that as one record
// (GET /v1/rules). `sluice stats` sums the nodes' records. This file is that contract and the two sums;
// pure.
import type { Direction } from "../policy/mapstate.ts";
import { ReservedRuleId } from "../policy/mapstate.ts";
import type { RuleName } from "../policy/rule-names.ts";

// One counter slot as the datapath reader returns it (cumulative since the slot was given out).
export interface RuleCounterRow {
  endpoint: string;
  // The direction the slot counts (the rule's; for rule id 0, the endpoint default's).
  direction?: Direction;
  ruleId: number;
  // Counts packets whose fate the Audit policies would change, not what the rule decided.
  audit: boolean;
  packets: number;
  bytes: number;
  flows: number;
}

export interface RuleCounts {
  packets: number;
  bytes: number;
  flows: number;
}

// The datapath's 64-bit sums as JSON numbers (exact up to 2^53: years of packets on one rule).
export function countsOf(c: { packets: bigint; bytes: bigint; flows: bigint }): RuleCounts {
  return { packets: Number(c.packets), bytes: Number(c.bytes), flows: Number(c.flows) };
}

// One rule on one node (or, summed, on all): mode "audit" counts what the Audit policy rule would have
// decided differently; "enforce" what the rule decided.
export interface RuleStat extends RuleCounts {
  // policyKey of the rule's policy; "allow-localhost" and "default" for the compiler's own entries.
  policy: string;
  direction?: Direction;
  index?: number;
  ruleName?: string;
  action?: string;
  ruleId: number;
  mode: "enforce" | "audit";
  // The endpoint default (policy "default", one row per direction): the policies that isolate the
  // counted endpoints in that direction (mode audit: the Audit ones too), whose default it is.
  isolatedBy?: string[];
  // Local endpoints whose maps carry the rule (0: no entry of it on the node).
  endpoints: number;
  // The last time the agent saw the rule's counters rise (its reads, see RuleActivity); absent: not since
  // the agent started.
  lastMatched?: string;
  // Nodes whose records were summed (sluice stats).
  nodes?: number;
}

export interface RulesRecord {
  type: "rules";
  time: string;
  node: string;
  rules: RuleStat[];
  // Slots the datapath could not give out (every slot in use): those entries are not counted.
  uncounted: number;
}

const RESERVED: ReadonlyMap<number, string> = new Map([
  [ReservedRuleId.DEFAULT, "default"],
  [ReservedRuleId.LOCALHOST, "allow-localhost"],
]);

// A rule id names its direction, but the default's (0) is both directions' defaults: one row each.
function statKey(ruleId: number, mode: RuleStat["mode"], direction: Direction | undefined): string {
  return ruleId === ReservedRuleId.DEFAULT ? `${ruleId}|${mode}|${direction ?? ""}` : `${ruleId}|${mode}`;
}

// When each rule's counters last rose, as seen by successive reads of the agent (per rule and mode).
export class RuleActivity {
  readonly #last = new Map<string, { packets: number; at: string }>();

  // Records this read's totals; returns when each key last rose (undefined: never seen rising).
  observe(key: string, packets: number, nowIso: string): string | undefined {
    const prev = this.#last.get(key);
    if (!prev) {
      // First read since the agent started: a counted rule matched at some time before now.
      const at = packets > 0 ? nowIso : "";
      this.#last.set(key, { packets, at });
      return at || undefined;
    }
    if (packets !== prev.packets) this.#last.set(key, { packets, at: nowIso });
    return this.#last.get(key)!.at || undefined;
  }
}

export interface NodeRulesInput {
  node: string;
  nowIso: string;
  rows: readonly RuleCounterRow[];
  // The rule names the agent knows (every rule of its policies), by rule id.
  rules: ReadonlyMap<number, RuleName>;
  uncounted: number;
  activity?: RuleActivity;
  // The policies that isolate an endpoint in a direction (with the Audit ones: audit), for the default's
  // rows (MonitorView.isolatedBy).
  isolatedBy?: (endpoint: string, direction: Direction, audit: boolean) => readonly string[];
  // Whether a policy (its key) is in Audit mode: its rules count only as audit, so those without a slot
  // are listed in that mode.
  inAudit?: (policy: string) => boolean;
}

// One node's record: the slots summed per rule and mode, then every known rule with no slot at 0 (in
// its policy's mode).
export function nodeRules(i: NodeRulesInput): RulesRecord {
  const out = new Map<string, RuleStat>();
  for (const r of i.rows) {
    const mode = r.audit ? "audit" : "enforce";
    const k = statKey(r.ruleId, mode, r.direction);
    let s = out.get(k);
    if (!s) {
      s = {
        ...describe(r.ruleId, i.rules.get(r.ruleId), r.direction),
        mode,
        packets: 0,
        bytes: 0,
        flows: 0,
        endpoints: 0,
      };
      out.set(k, s);
    }
    s.packets += r.packets;
    s.bytes += r.bytes;
    s.flows += r.flows;
    s.endpoints++;
    if (r.ruleId === ReservedRuleId.DEFAULT && r.direction && i.isolatedBy)
      s.isolatedBy = union(s.isolatedBy, i.isolatedBy(r.endpoint, r.direction, r.audit));
  }
  for (const [id, name] of i.rules) {
    if (out.has(statKey(id, "enforce", name.direction)) || out.has(statKey(id, "audit", name.direction)))
      continue;
    const mode = i.inAudit?.(name.policy) ? "audit" : "enforce";
    out.set(statKey(id, mode, name.direction), {
      ...describe(id, name),
      mode,
      packets: 0,
      bytes: 0,
      flows: 0,
      endpoints: 0,
    });
  }
  for (const [k, s] of out) {
    const at = i.activity?.observe(k, s.packets, i.nowIso);
    if (at) s.lastMatched = at;
  }
  return {
    type: "rules",
    time: i.nowIso,
    node: i.node,
    rules: sortStats([...out.values()]),
    uncounted: i.uncounted,
  };
}

function describe(
  ruleId: number,
  name: RuleName | undefined,
  direction?: Direction,
): Omit<RuleStat, keyof RuleCounts | "mode" | "endpoints"> {
  if (name)
    return {
      policy: name.policy,
      direction: name.direction,
      index: name.index,
      ...(name.ruleName ? { ruleName: name.ruleName } : {}),
      action: name.action,
      ruleId,
    };
  const policy = RESERVED.get(ruleId) ?? `rule ${ruleId} (not among the agent's policies)`;
  return ruleId === ReservedRuleId.DEFAULT && direction ? { policy, direction, ruleId } : { policy, ruleId };
}

function union(a: readonly string[] | undefined, b: readonly string[]): string[] {
  return [...new Set([...(a ?? []), ...b])].sort();
}

// The nodes' records summed per rule and mode: endpoints and nodes added, the latest lastMatched kept.
export function sumRules(records: readonly RulesRecord[]): RuleStat[] {
  const out = new Map<string, RuleStat>();
  for (const rec of records)
    for (const r of rec.rules) {
      const k = statKey(r.ruleId, r.mode, r.direction);
      const s = out.get(k);
      if (!s) {
        out.set(k, { ...r, nodes: r.endpoints > 0 ? 1 : 0 });
        continue;
      }
      s.packets += r.packets;
      s.bytes += r.bytes;
      s.flows += r.flows;
      s.endpoints += r.endpoints;
      if (r.endpoints > 0) s.nodes = (s.nodes ?? 0) + 1;
      if (r.isolatedBy) s.isolatedBy = union(s.isolatedBy, r.isolatedBy);
      if (r.lastMatched && (!s.lastMatched || r.lastMatched > s.lastMatched)) s.lastMatched = r.lastMatched;
    }
  return sortStats([...out.values()]);
}

// By policy, then direction and index, enforce before audit.
function sortStats(stats: RuleStat[]): RuleStat[] {
  return stats.sort(
    (a, b) =>
      a.policy.localeCompare(b.policy) ||
      (a.direction ?? "").localeCompare(b.direction ?? "") ||
      (a.index ?? -1) - (b.index ?? -1) ||
      a.mode.localeCompare(b.mode),
  );
}

// `sluice stats <policy>`: Kind/namespace/name, namespace/name or name, as the monitor's --policy: the
// policy's rules, and the default of the endpoints it isolates.
export function matchesPolicy(s: RuleStat, v: string): boolean {
  const named = (p: string) => p === v || p.endsWith(`/${v}`);
  return named(s.policy) || (s.isolatedBy?.some(named) ?? false);
}
