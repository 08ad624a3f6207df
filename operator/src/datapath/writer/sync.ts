// The map writer: applies a SyncPlan to the datapath maps with batch calls, and reads the maps back into
// an AppliedState (adoption after an agent restart: the new process computes a delta against what the
// kernel enforces, instead of rewriting or clearing it).
import type { EndpointState, MapState, PolicyEntry } from "../../policy/mapstate.ts";
import type { BpfAddon } from "../kernel/bpf-addon.ts";
import type {
  EndpointKey,
  EndpointValue,
  Ip4Key,
  Ip6Key,
  IpcacheKey,
  IpcacheValue,
  SourceKey,
  SourceValue,
} from "../codec/codecs.ts";
import { auditSlotOfBytes, endpointValueOf, wildcardsMatch } from "./endpoint-value.ts";
import {
  cidrOfHost,
  cidrOfIpcacheKey,
  hostOfCidr,
  ipcacheKeyOf,
  sourceKeyOf,
  sourceOfKey,
  type StoredEntry,
} from "../codec/keys.ts";
import { enums } from "../codec/layout.generated.ts";
import type { DatapathMaps } from "../kernel/maps.ts";
import {
  deleteStrays,
  type PolicyRecordCounts,
  PolicyWriteScratch,
  readPolicyMaps,
  writePolicyChanges,
} from "./policy-store.ts";
import { type FailedClosedEndpoint, planWithinCapacity, type RefusedEndpoint } from "./capacity-fit.ts";
import type { RuleCounts } from "../kernel/rule-counters.ts";
import { type RuleSlot, RuleSlots } from "./rule-slots.ts";
import {
  type AppliedState,
  type Capacities,
  type DesiredState,
  desiredState,
  type EndpointRecord,
  type EntrySet,
  type Generation,
  type SourceRef,
} from "./sync-plan.ts";

export interface SyncReport {
  flips: number;
  policyWritten: number;
  policyDeleted: number;
  endpointsWritten: number;
  endpointsDeleted: number;
  ipcacheWritten: number;
  ipcacheDeleted: number;
  // Endpoints of the MapState left out because their interface is unknown.
  pending: string[];
  // Endpoints whose policy did not fit in the node's policy maps: they enforce the fail-closed policy.
  failedClosed: FailedClosedEndpoint[];
  // Endpoints the node's endpoint map cannot hold: not written (capacity-fit.ts admitEndpoints).
  refused: RefusedEndpoint[];
  // Rules left without a counter (every rule counter slot taken); absent when none.
  uncountedRules?: number;
  durationMs: number;
}

// The policy maps' budget as the writer checks it: entries of every endpoint's two generations, and
// the capacity (the smallest of the three policy maps: each holds at most one record per entry).
export interface PolicyBudget {
  entries: number;
  capacity: number;
}

// One rule counter: what its slot counts (rule-slots.ts) and the counts, summed over CPUs.
export type RuleCounterRow = RuleSlot & { endpointKey?: string } & RuleCounts;

function countRows(maps: DatapathMaps, slots: (RuleSlot & { endpointKey?: string })[]): RuleCounterRow[] {
  const counts = maps.ruleCounters.read(slots.map((s) => s.slot));
  return slots.map((s) => ({ ...s, ...(counts.get(s.slot) ?? { packets: 0n, bytes: 0n, flows: 0n }) }));
}

// The rule counters of the state the maps hold (no writer at hand: `sluice datapath show`).
export function readRuleCounterTable(
  maps: DatapathMaps,
  applied: AppliedState = readApplied(maps),
): RuleCounterRow[] {
  return countRows(maps, RuleSlots.fromApplied(applied, maps.ruleCounters.info.maxEntries).table());
}

// One map's fill, for map-pressure metrics: entries held and max_entries.
export interface MapUsage {
  map: string;
  entries: number;
  capacity: number;
}

// Prefixes per ipcache map: the host hash of each family and the LPM trie.
interface IpcacheCounts {
  host4: number;
  host6: number;
  lpm: number;
}

function ipcacheMapOf(cidr: string): keyof IpcacheCounts {
  const h = hostOfCidr(cidr);
  return !h ? "lpm" : h.family === 4 ? "host4" : "host6";
}

// endpointValues: the endpoint map's entries, when the caller has read them already. counts, when
// given, receives how many prefixes each ipcache map holds.
function readEndpointsAndIpcache(
  maps: DatapathMaps,
  endpointValues: [EndpointKey, EndpointValue][] = maps.endpoints.entries(),
  counts?: IpcacheCounts,
): Omit<AppliedState, "policy" | "sources"> {
  const ipcache = new Map<string, number>();
  const host4 = maps.ipHosts4.entries();
  const host6 = maps.ipHosts6.entries();
  const nets = maps.ipcache.entries();
  if (counts) Object.assign(counts, { host4: host4.length, host6: host6.length, lpm: nets.length });
  for (const [k, v] of host4) ipcache.set(cidrOfHost(k.addr), v.identity);
  for (const [k, v] of host6) ipcache.set(cidrOfHost(k.addr), v.identity);
  for (const [k, v] of nets) ipcache.set(cidrOfIpcacheKey(k), v.identity);
  const endpoints = new Map<number, EndpointRecord>();
  for (const [k, v] of endpointValues) {
    if (v.gen !== 0 && v.gen !== 1)
      throw new Error(`endpoint ifindex ${k.ifindex}: generation ${v.gen} is not 0 or 1`);
    endpoints.set(k.ifindex, {
      id: v.ep_id,
      identity: v.identity,
      policyRev: v.policy_rev,
      gen: v.gen,
      flags: v.flags,
      slot: v.slot,
      auditSlot: auditSlotOfBytes(v.audit_slot),
    });
  }
  return { ipcache, endpoints };
}

// Every endpoint's own addresses in sl_src, by endpoint id (none when the pins predate the map).
function readSources(maps: DatapathMaps): Map<number, Set<string>> {
  const out = new Map<number, Set<string>>();
  for (const [k] of maps.sources?.entries() ?? []) {
    const { epId, address } = sourceOfKey(k);
    let set = out.get(epId);
    if (!set) {
      set = new Set();
      out.set(epId, set);
    }
    set.add(address);
  }
  return out;
}

// Reads every datapath map into the state the planner diffs against (what the programs can reach).
export function readApplied(maps: DatapathMaps): AppliedState {
  return {
    ...readEndpointsAndIpcache(maps),
    policy: readPolicyMaps(maps).policy,
    sources: readSources(maps),
  };
}

// What the writer knows each map holds without reading it again (MapSync.usage).
interface MapCounts {
  ipcache: IpcacheCounts;
  policy: PolicyRecordCounts;
  sources: number;
}

function countSources(s: AppliedState["sources"]): number {
  let n = 0;
  for (const set of s.values()) n += set.size;
  return n;
}

// As readApplied, and deletes spilled policy records no program can reach (left by an interrupted write)
// and rewrites endpoint values whose wildcard groups are not those of their active generation. Also
// gives how many records the maps hold afterwards.
function readAppliedAndTidy(maps: DatapathMaps): { applied: AppliedState; counts: MapCounts } {
  const { policy, strays, records } = readPolicyMaps(maps);
  deleteStrays(maps, strays);
  const values = maps.endpoints.entries();
  const ipcacheCounts: IpcacheCounts = { host4: 0, host6: 0, lpm: 0 };
  const applied = {
    ...readEndpointsAndIpcache(maps, values, ipcacheCounts),
    policy,
    sources: readSources(maps),
  };
  const repair: [EndpointKey, EndpointValue][] = [];
  for (const [k, v] of values) {
    const rec = applied.endpoints.get(k.ifindex);
    if (!rec) continue;
    const active = [...(policy.get(rec.id)?.[rec.gen].values() ?? [])];
    if (!wildcardsMatch(v, active)) repair.push([k, endpointValueOf(rec, active)]);
  }
  if (repair.length > 0) maps.endpoints.setMany(repair);
  return {
    applied,
    counts: { ipcache: ipcacheCounts, policy: records, sources: countSources(applied.sources) },
  };
}

// Writes and deletes ipcache prefixes: full-length ones in the host hash of their family, the others
// in the LPM trie.
export function writeIpcache(
  maps: DatapathMaps,
  del: readonly string[],
  put: readonly (readonly [string, number])[],
): void {
  const host4Del: Ip4Key[] = [];
  const host6Del: Ip6Key[] = [];
  const netDel: IpcacheKey[] = [];
  for (const cidr of del) {
    const h = hostOfCidr(cidr);
    if (!h) netDel.push(ipcacheKeyOf(cidr));
    else (h.family === 4 ? host4Del : host6Del).push({ addr: h.addr });
  }
  const host4Put: [Ip4Key, IpcacheValue][] = [];
  const host6Put: [Ip6Key, IpcacheValue][] = [];
  const netPut: [IpcacheKey, IpcacheValue][] = [];
  for (const [cidr, identity] of put) {
    const h = hostOfCidr(cidr);
    const v = { identity, flags: 0 };
    if (!h) netPut.push([ipcacheKeyOf(cidr), v]);
    else (h.family === 4 ? host4Put : host6Put).push([{ addr: h.addr }, v]);
  }
  if (host4Del.length > 0) maps.ipHosts4.deleteMany(host4Del);
  if (host6Del.length > 0) maps.ipHosts6.deleteMany(host6Del);
  if (netDel.length > 0) maps.ipcache.deleteMany(netDel);
  if (host4Put.length > 0) maps.ipHosts4.setMany(host4Put);
  if (host6Put.length > 0) maps.ipHosts6.setMany(host6Put);
  if (netPut.length > 0) maps.ipcache.setMany(netPut);
}

// Writes and deletes endpoints' own addresses (sl_src).
export function writeSources(maps: DatapathMaps, del: readonly SourceRef[], put: readonly SourceRef[]): void {
  if (del.length + put.length === 0) return;
  const m = maps.sources;
  if (!m) throw new Error("the pinned maps predate sl_src: load this build's object to write addresses");
  const key = (r: SourceRef): SourceKey => sourceKeyOf(r.epId, r.address);
  if (del.length > 0) m.deleteMany(del.map(key));
  if (put.length > 0) m.setMany(put.map((r): [SourceKey, SourceValue] => [key(r), { flags: 0 }]));
}

const NO_ENTRIES: EntrySet = new Map();
const COUNTERS_PER_ENDPOINT = enums.sl_counters.SL_COUNTERS_PER_ENDPOINT;

type WriteCounts = Pick<
  SyncReport,
  | "flips"
  | "policyWritten"
  | "policyDeleted"
  | "endpointsWritten"
  | "endpointsDeleted"
  | "ipcacheWritten"
  | "ipcacheDeleted"
>;

// What two writes of one apply did together.
function sumCounts(a: WriteCounts, b: WriteCounts): WriteCounts {
  return {
    flips: a.flips + b.flips,
    policyWritten: a.policyWritten + b.policyWritten,
    policyDeleted: a.policyDeleted + b.policyDeleted,
    endpointsWritten: a.endpointsWritten + b.endpointsWritten,
    endpointsDeleted: a.endpointsDeleted + b.endpointsDeleted,
    ipcacheWritten: a.ipcacheWritten + b.ipcacheWritten,
    ipcacheDeleted: a.ipcacheDeleted + b.ipcacheDeleted,
  };
}

export interface MapSyncOptions {
  // Wait for running programs between the flip and rewriting the old generation (default true).
  // Tests of the planner may turn it off; the agent must not.
  barrier?: boolean;
}

// The most policy-writer scratch a MapSync keeps between syncs (about 5,000 records' worth).
export const SCRATCH_KEPT_BYTES = 2 * 1024 * 1024;

// Owns the maps' contents for one agent. Construct with adopt(): it starts from what the kernel holds.
export class MapSync {
  readonly #addon: BpfAddon;
  readonly #maps: DatapathMaps;
  readonly #barrier: boolean;
  #applied: AppliedState;
  #counts: MapCounts;
  #stale = false;
  // The policy writer's working memory, reused by every sync. It grows to the biggest write; one
  // grown past SCRATCH_KEPT_BYTES (a node's first sync, a full rewrite: 19 MiB for 40,000 records)
  // is dropped after that sync, and the small incremental writes that follow start from a new one.
  #scratch = new PolicyWriteScratch();
  #slots: RuleSlots;
  // Rules the last write left without a counter slot (every slot taken).
  #uncounted = 0;

  // Bytes of policy-writer scratch kept until the next sync (tests).
  get scratchBytes(): number {
    return this.#scratch.bytes;
  }

  private constructor(
    addon: BpfAddon,
    maps: DatapathMaps,
    read: { applied: AppliedState; counts: MapCounts },
    o: MapSyncOptions,
  ) {
    this.#addon = addon;
    this.#maps = maps;
    this.#applied = read.applied;
    this.#counts = read.counts;
    this.#barrier = o.barrier ?? true;
    this.#slots = RuleSlots.fromApplied(read.applied, maps.ruleCounters.info.maxEntries);
  }

  static adopt(addon: BpfAddon, maps: DatapathMaps, o: MapSyncOptions = {}): MapSync {
    return new MapSync(addon, maps, readAppliedAndTidy(maps), o);
  }

  get applied(): AppliedState {
    return this.#applied;
  }

  // Every rule counter slot the written state uses: what it counts, by endpoint id and (once a write
  // named it) endpoint key. Read the counts with maps.ruleCounters.read, or ruleCounterTable.
  ruleSlots(): (RuleSlot & { endpointKey?: string })[] {
    return this.#slots.table();
  }

  // The rule counters of the written state, summed over CPUs: one row per slot.
  ruleCounterTable(): RuleCounterRow[] {
    return countRows(this.#maps, this.#slots.table());
  }

  // Rules the last write could not give a counter slot (their packets are decided, not counted).
  get uncountedRules(): number {
    return this.#uncounted;
  }

  // How full each map this writer fills is, from its own bookkeeping: no map is read, so a scrape costs
  // nothing at a million entries. After a failed write the figures are those of the last good one until
  // the next write reads the maps back.
  usage(): MapUsage[] {
    const m = this.#maps;
    const { ipcache, policy, sources } = this.#counts;
    const row = (map: { name: string; maxEntries: number }, entries: number): MapUsage => ({
      map: map.name,
      entries,
      capacity: map.maxEntries,
    });
    return [
      row(m.ipHosts4, ipcache.host4),
      row(m.ipHosts6, ipcache.host6),
      row(m.ipcache, ipcache.lpm),
      row(m.endpoints, this.#applied.endpoints.size),
      row(m.policySets, policy.sets),
      row(m.policyExact, policy.exact),
      row(m.policyLpm, policy.lpm),
      ...(m.sources ? [row(m.sources, sources)] : []),
    ];
  }

  // Applies a compiled MapState. ifindexOf maps an endpoint to its host-side interface.
  apply(state: MapState, ifindexOf: (ep: EndpointState) => number | undefined): SyncReport {
    const { desired, pending } = desiredState(state, ifindexOf);
    return { ...this.applyDesired(desired), pending };
  }

  // The capacities the planner checks, from the maps' sizes in the kernel.
  #capacities(): Capacities {
    const m = this.#maps;
    return {
      ipcache: Math.min(m.ipcache.maxEntries, m.ipHosts4.maxEntries, m.ipHosts6.maxEntries),
      // An endpoint needs its value and its counter slot.
      endpoints: Math.min(
        m.endpoints.maxEntries,
        Math.floor(m.counters.info.maxEntries / COUNTERS_PER_ENDPOINT),
      ),
      // Every map of the policy holds at most one record per entry.
      policy: Math.min(m.policySets.maxEntries, m.policyExact.maxEntries, m.policyLpm.maxEntries),
      sources: m.sources?.maxEntries ?? 0,
    };
  }

  // How much of the policy maps' budget the enforced state takes (metrics: pressure before the limit).
  policyBudget(): PolicyBudget {
    let entries = 0;
    for (const gens of this.#applied.policy.values()) entries += gens[0].size + gens[1].size;
    return { entries, capacity: this.#capacities().policy };
  }

  applyDesired(desired: DesiredState): SyncReport {
    const t0 = performance.now();
    let report = this.#applyOnce(desired);
    // Endpoints failed closed while others were still being removed (their entries go only after the
    // barrier, so the write's peak counted them): once those are gone, the endpoints may fit.
    while (report.failedClosed.length > 0 && report.freed) {
      const again = this.#applyOnce(desired);
      if (again.failedClosed.length >= report.failedClosed.length) break;
      report = { ...again, ...sumCounts(report, again) };
    }
    const { freed: _freed, ...out } = report;
    return { ...out, durationMs: performance.now() - t0 };
  }

  #applyOnce(want: DesiredState): Omit<SyncReport, "durationMs"> & { freed: boolean } {
    // After a failed write we no longer know the maps' content: read it back before planning.
    if (this.#stale) {
      const read = readAppliedAndTidy(this.#maps);
      this.#applied = read.applied;
      this.#counts = read.counts;
      this.#slots = RuleSlots.fromApplied(read.applied, this.#maps.ruleCounters.info.maxEntries);
      this.#stale = false;
    }
    const m = this.#maps;
    const slotted = this.#slots.assign(want);
    this.#uncounted = slotted.uncounted;
    const { plan, desired, failedClosed, refused } = planWithinCapacity(
      this.#applied,
      slotted.desired,
      this.#capacities(),
    );
    const applied = this.#applied;
    const before = (epId: number, gen: Generation) => applied.policy.get(epId)?.[gen] ?? NO_ENTRIES;
    let added1: PolicyRecordCounts;
    let added3: PolicyRecordCounts;
    try {
      // Before any value points at them: a slot handed out again starts from zero.
      m.ruleCounters.zero(slotted.zero);
      added1 = writePolicyChanges(m, before, plan.phase1.delete, plan.phase1.write, this.#scratch);
      // Before the values: an endpoint's check never runs without its addresses.
      writeSources(m, plan.sources.deleteFirst, plan.sources.write);
      if (plan.phase2.deleteEndpoints.length > 0)
        m.endpoints.deleteMany(plan.phase2.deleteEndpoints.map((ifindex) => ({ ifindex })));
      for (const slot of plan.phase2.zeroCounters) m.counters.zero(slot);
      if (plan.phase2.writeEndpoints.length > 0)
        m.endpoints.setMany(
          plan.phase2.writeEndpoints.map(([ifindex, r]) => [
            { ifindex },
            // The generation the record activates holds the desired entries (after phase 1).
            endpointValueOf(r, desired.endpoints.get(ifindex)?.entries.values() ?? []),
          ]),
        );
      const phase3 =
        plan.phase3.delete.length +
          plan.phase3.write.length +
          plan.phase3.zeroCounters.length +
          plan.sources.delete.length >
        0;
      if (plan.barrier && phase3 && this.#barrier) this.#addon.waitForPrograms();
      // Phase 3 touches other (id, generation) pairs than phase 1 (planSync ensures it): what they
      // hold is still what `applied` says.
      added3 = writePolicyChanges(m, before, plan.phase3.delete, plan.phase3.write, this.#scratch);
      for (const slot of plan.phase3.zeroCounters) m.counters.zero(slot);
      writeSources(m, plan.sources.delete, []);
      writeIpcache(m, plan.ipcache.delete, plan.ipcache.write);
    } catch (e) {
      this.#stale = true;
      throw e;
    } finally {
      if (this.#scratch.bytes > SCRATCH_KEPT_BYTES) this.#scratch = new PolicyWriteScratch();
    }
    const policy = this.#counts.policy;
    for (const added of [added1, added3]) {
      policy.sets += added.sets;
      policy.exact += added.exact;
      policy.lpm += added.lpm;
    }
    // Deletes are of prefixes the maps held; a write is new unless it only changes an identity.
    const ipcache = this.#counts.ipcache;
    for (const cidr of plan.ipcache.delete) ipcache[ipcacheMapOf(cidr)]--;
    for (const [cidr] of plan.ipcache.write) if (!applied.ipcache.has(cidr)) ipcache[ipcacheMapOf(cidr)]++;
    this.#counts.sources +=
      plan.sources.write.length - plan.sources.deleteFirst.length - plan.sources.delete.length;
    this.#applied = plan.result;
    return {
      flips: plan.flips,
      policyWritten: plan.phase1.write.length + plan.phase3.write.length,
      policyDeleted: plan.phase1.delete.length + plan.phase3.delete.length,
      endpointsWritten: plan.phase2.writeEndpoints.length,
      endpointsDeleted: plan.phase2.deleteEndpoints.length,
      ipcacheWritten: plan.ipcache.write.length,
      ipcacheDeleted: plan.ipcache.delete.length,
      pending: [],
      failedClosed,
      refused,
      ...(slotted.uncounted > 0 && { uncountedRules: slotted.uncounted }),
      freed: plan.phase3.delete.length > 0,
    };
  }
}

// A comparable, order-independent view of an applied state (tests, `sluice` map inspection).
export interface AppliedView {
  ipcache: { cidr: string; identity: number }[];
  endpoints: {
    ifindex: number;
    id: number;
    identity: number;
    gen: Generation;
    policyRev: number;
    defaultDeny: { ingress: boolean; egress: boolean };
    // The own addresses the program checks what the endpoint sends against; undefined: not checked.
    addresses?: string[];
    entries: PolicyEntry[];
    inactiveMatches: boolean;
  }[];
  orphanPolicyIds: number[];
}

// The compiler's entries: without the counter slots the writer gave them (ruleSlots lists those).
function sortedEntries(s: EntrySet): PolicyEntry[] {
  return [...(s as ReadonlyMap<string, StoredEntry>).entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, { slot: _s, auditSlot: _a, ...e }]) => e);
}

export function viewApplied(a: AppliedState): AppliedView {
  const EPF = enums.sl_endpoint_flags;
  const ids = new Set<number>();
  const endpoints = [...a.endpoints]
    .sort(([x], [y]) => x - y)
    .map(([ifindex, r]) => {
      ids.add(r.id);
      const gens = a.policy.get(r.id) ?? [new Map(), new Map()];
      const active = sortedEntries(gens[r.gen]);
      return {
        ifindex,
        id: r.id,
        identity: r.identity,
        gen: r.gen,
        policyRev: r.policyRev,
        defaultDeny: {
          ingress: (r.flags & EPF.SL_EP_DEFAULT_DENY_INGRESS) !== 0,
          egress: (r.flags & EPF.SL_EP_DEFAULT_DENY_EGRESS) !== 0,
        },
        ...((r.flags & EPF.SL_EP_SOURCE_CHECK) !== 0 && {
          addresses: [...(a.sources.get(r.id) ?? [])].sort(),
        }),
        entries: active,
        inactiveMatches: JSON.stringify(sortedEntries(gens[r.gen === 0 ? 1 : 0])) === JSON.stringify(active),
      };
    });
  return {
    ipcache: [...a.ipcache]
      .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))
      .map(([cidr, identity]) => ({ cidr, identity })),
    endpoints,
    orphanPolicyIds: [...a.policy.keys()].filter((id) => !ids.has(id)).sort((x, y) => x - y),
  };
}
