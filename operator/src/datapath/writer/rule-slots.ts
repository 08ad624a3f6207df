// Rule counter slots (sl_rcnt, issue 13 §3/§4): one slot per (endpoint, direction, rule, audit) that the
// written state holds, written into the policy values (slot, audit_slot) and the endpoint values
// (audit_slot of the audited default, rule id 0). A pair keeps its slot while it exists, so its counts
// survive every write and, read back from the maps (fromApplied), an agent restart. A slot given up by a
// write is handed out again from the next write on (until that write's last phase the old generation may
// still point at it; conntrack entries that do are not charged: the endpoint's policy revision moved),
// and zeroed before. When every slot is taken a pair gets slot 0: not counted, and said so (uncounted).
// Counters are telemetry: policy is never affected.
import type { Direction } from "../../policy/mapstate.ts";
import { dirCode, type StoredEntry } from "../codec/keys.ts";
import { enums } from "../codec/layout.generated.ts";
import type { AppliedState, DesiredEndpoint, DesiredState, EntrySet } from "./sync-plan.ts";

const EPF = enums.sl_endpoint_flags;
const DIRECTIONS = ["ingress", "egress"] as const;
// The default flag and the audited default's, by direction (sl_dir).
const DEFAULT_FLAGS = [
  [EPF.SL_EP_DEFAULT_DENY_INGRESS, EPF.SL_EP_AUDIT_DENY_INGRESS],
  [EPF.SL_EP_DEFAULT_DENY_EGRESS, EPF.SL_EP_AUDIT_DENY_EGRESS],
] as const;
// A slot is a __u16 (0: none).
const SLOT_LIMIT = 0x10000;

// What one slot counts: the packets endpoint epId's rule ruleId decides in direction (audit: the
// packets the Audit policies would decide by ruleId otherwise; ruleId 0 with audit: their default).
export interface RuleSlot {
  slot: number;
  epId: number;
  direction: Direction;
  ruleId: number;
  audit: boolean;
}

export interface SlotAssignment {
  // The desired state with every entry's slots (entries and endpoints copied where they change).
  desired: DesiredState;
  // Slots handed out by this write: zero their counters before anything points at them.
  zero: number[];
  // Pairs left uncounted (slot 0) because every slot was taken.
  uncounted: number;
}

function pairKey(epId: number, direction: Direction, ruleId: number, audit: boolean): string {
  return `${epId}|${direction}|${ruleId}|${audit ? 1 : 0}`;
}

export class RuleSlots {
  readonly #byKey = new Map<string, RuleSlot>();
  // Free slots, highest first (pop gives the lowest); retired: given up by the last write.
  #free: number[] = [];
  #retired: number[] = [];
  #next = 1;
  readonly #capacity: number;
  #endpointKeys = new Map<number, string>();
  // The last write's endpoints by ifindex: the desired endpoint given, the one returned, and its pairs.
  // The desired cache hands an unchanged endpoint over as the same object: it keeps its slots without
  // a walk of its entries, so a write costs what its changed endpoints hold, not the node's whole policy.
  #assigned = new Map<number, { given: DesiredEndpoint; out: DesiredEndpoint; pairs: readonly string[] }>();

  // capacity: the counter map's max_entries (at most 65536: the slot is 16 bits).
  constructor(capacity: number) {
    this.#capacity = Math.min(capacity, SLOT_LIMIT);
  }

  // The slots the maps hold (both generations of every endpoint, and the endpoint values): each pair
  // keeps its slot; slots the maps point at for no pair of the active generation are retired.
  static fromApplied(applied: AppliedState, capacity: number): RuleSlots {
    const t = new RuleSlots(capacity);
    const used = new Set<number>();
    const bind = (epId: number, direction: Direction, ruleId: number, audit: boolean, slot: number) => {
      if (slot === 0 || slot >= t.#capacity || used.has(slot)) return;
      const k = pairKey(epId, direction, ruleId, audit);
      used.add(slot);
      if (t.#byKey.has(k)) t.#retired.push(slot);
      else t.#byKey.set(k, { slot, epId, direction, ruleId, audit });
    };
    const bindEntries = (epId: number, entries: EntrySet) => {
      for (const e of entries.values() as Iterable<StoredEntry>) {
        bind(epId, e.direction, e.ruleId, false, e.slot ?? 0);
        if (e.audit) bind(epId, e.direction, e.audit.ruleId, true, e.auditSlot ?? 0);
      }
    };
    const active = new Map<number, 0 | 1>();
    for (const r of applied.endpoints.values()) {
      active.set(r.id, r.gen);
      for (const d of DIRECTIONS) bind(r.id, d, 0, true, r.auditSlot[dirCode(d)]);
    }
    // The active generation first: where the two differ (a write cut short), its slots win.
    for (const [epId, gens] of applied.policy) {
      const g = active.get(epId);
      if (g !== undefined) bindEntries(epId, gens[g]);
    }
    for (const [epId, gens] of applied.policy) {
      const g = active.get(epId);
      for (const gen of [0, 1] as const) if (gen !== g) bindEntries(epId, gens[gen]);
    }
    // A slot bound while an endpoint without a value still points at it is only retired, not taken.
    for (const [k, s] of t.#byKey)
      if (!active.has(s.epId)) {
        t.#byKey.delete(k);
        t.#retired.push(s.slot);
      }
    t.#next = Math.max(0, ...used) + 1;
    const taken = new Set([...used]);
    for (let s = t.#next - 1; s >= 1; s--) if (!taken.has(s)) t.#free.push(s);
    return t;
  }

  // Gives every entry of desired its slots, and every endpoint its audited default's.
  assign(desired: DesiredState): SlotAssignment {
    // Nothing points at the slots the last write gave up any more.
    for (const s of this.#retired) this.#free.push(s);
    this.#retired = [];
    this.#free.sort((a, b) => b - a);
    const zero: number[] = [];
    const seen = new Set<string>();
    const missed = new Set<string>();
    let pairs = new Set<string>();
    const take = (epId: number, direction: Direction, ruleId: number, audit: boolean): number => {
      const k = pairKey(epId, direction, ruleId, audit);
      seen.add(k);
      pairs.add(k);
      const have = this.#byKey.get(k);
      if (have) return have.slot;
      let slot = this.#free.pop();
      if (slot === undefined && this.#next < this.#capacity) slot = this.#next++;
      if (slot === undefined) {
        missed.add(k);
        return 0;
      }
      this.#byKey.set(k, { slot, epId, direction, ruleId, audit });
      zero.push(slot);
      return slot;
    };
    const endpoints = new Map<number, DesiredEndpoint>();
    this.#endpointKeys = new Map();
    const assigned = new Map<
      number,
      { given: DesiredEndpoint; out: DesiredEndpoint; pairs: readonly string[] }
    >();
    for (const [ifindex, d] of desired.endpoints) {
      this.#endpointKeys.set(d.id, d.key);
      const last = this.#assigned.get(ifindex);
      if (last?.given === d) {
        for (const k of last.pairs) seen.add(k);
        endpoints.set(ifindex, last.out);
        assigned.set(ifindex, last);
        continue;
      }
      pairs = new Set();
      const missedBefore = missed.size;
      let copied: Map<string, StoredEntry> | undefined;
      // An endpoint's entries share few pairs: each is looked up once, by number (no key text per entry).
      const mine = new Map<number, number>();
      const takeMine = (direction: Direction, ruleId: number, audit: boolean): number => {
        const n = ruleId * 4 + dirCode(direction) * 2 + (audit ? 1 : 0);
        const have = mine.get(n);
        if (have !== undefined) return have;
        const slot = take(d.id, direction, ruleId, audit);
        mine.set(n, slot);
        return slot;
      };
      for (const [k, e] of d.entries as ReadonlyMap<string, StoredEntry>) {
        const slot = takeMine(e.direction, e.ruleId, false);
        const auditSlot = e.audit ? takeMine(e.direction, e.audit.ruleId, true) : undefined;
        if (e.slot === slot && e.auditSlot === auditSlot) continue;
        if (e.slot === undefined && e.auditSlot === undefined) {
          // Never written: no applied state shares it yet.
          e.slot = slot;
          if (auditSlot !== undefined) e.auditSlot = auditSlot;
          continue;
        }
        copied ??= new Map(d.entries);
        const { auditSlot: _old, ...rest } = e;
        copied.set(k, { ...rest, slot, ...(auditSlot !== undefined && { auditSlot }) });
      }
      const auditSlot = DEFAULT_FLAGS.map(([deny, audit], dir) =>
        ((d.flags & deny) !== 0) !== ((d.flags & audit) !== 0) ? take(d.id, DIRECTIONS[dir], 0, true) : 0,
      ) as [number, number];
      const same = (d.auditSlot?.[0] ?? 0) === auditSlot[0] && (d.auditSlot?.[1] ?? 0) === auditSlot[1];
      const out = copied || !same ? { ...d, entries: copied ?? d.entries, auditSlot } : d;
      endpoints.set(ifindex, out);
      // An endpoint left with an uncounted pair is walked again: a slot may be free by then.
      if (missed.size === missedBefore) assigned.set(ifindex, { given: d, out, pairs: [...pairs] });
    }
    this.#assigned = assigned;
    for (const [k, s] of this.#byKey)
      if (!seen.has(k)) {
        this.#byKey.delete(k);
        this.#retired.push(s.slot);
      }
    return { desired: { ...desired, endpoints }, zero, uncounted: missed.size };
  }

  // Every slot handed out, with the endpoint key of the last write that named it.
  table(): (RuleSlot & { endpointKey?: string })[] {
    return [...this.#byKey.values()]
      .map((s) => {
        const endpointKey = this.#endpointKeys.get(s.epId);
        return endpointKey === undefined ? { ...s } : { ...s, endpointKey };
      })
      .sort((a, b) => a.slot - b.slot);
  }
}
