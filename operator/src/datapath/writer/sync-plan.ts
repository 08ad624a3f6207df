// The map writer's plan, pure: from what is in the maps (AppliedState) and what should be (DesiredState),
// the ordered batches that get there without a packet ever seeing a mix of old and new policy.
//
// Per endpoint the policy map holds two generations; the endpoint value names the active one.
//   phase 1: the inactive generation is brought to the new content (stale entries deleted, new written),
//            and the endpoint's new own addresses (sl_src) are written;
//   phase 2: the counters of endpoints new to a counter slot are zeroed; each changed endpoint's value
//            is rewritten once: new gen, flags, policy_rev + 1 (the switch); removed endpoints' values
//            are deleted;
//   barrier: wait until no program still runs with an endpoint value read before phase 2;
//   phase 3: the old generation is brought to the same content (the next update is a delta again) and
//            policy and counters of endpoints that are gone are deleted, and addresses an endpoint no
//            longer has; ipcache changes follow the policy.
// So an endpoint's addresses are in sl_src before the value that turns its source check on
// (SL_EP_SOURCE_CHECK), and leave only once no program can still read a value that names them.
// Capacity is checked on the whole plan before anything is written.
import {
  type EndpointState,
  type MapState,
  type PolicyEntry,
  policyEntryKey,
} from "../../policy/mapstate.ts";
import { canonicalCidr, formatIp, parseIp } from "../../policy/cidr.ts";
import { enums } from "../codec/layout.generated.ts";
import { canonicalEntry, sameStoredValue } from "../codec/keys.ts";
import type { PolicyEntryRef } from "./policy-encoder.ts";
import { MapCapacityError } from "../kernel/typed-map.ts";

export type Generation = 0 | 1;
export type EntrySet = ReadonlyMap<string, PolicyEntry>;

// Entry-level change of one endpoint generation, as the planner emits it (policy-store.ts writes it).
export type EntryChange = PolicyEntryRef & { gen: Generation };

// One of an endpoint's own addresses (sl_src), canonical text.
export interface SourceRef {
  epId: number;
  address: string;
}

export interface EndpointRecord {
  id: number;
  identity: number;
  policyRev: number;
  gen: Generation;
  flags: number;
  // Dense index (below the endpoint capacity) of the endpoint's counters.
  slot: number;
  // By direction: the rule counter (sl_rcnt) of packets whose fate the audited default changes; 0: none.
  auditSlot: readonly [number, number];
}

export interface AppliedState {
  // canonical CIDR -> identity
  ipcache: ReadonlyMap<string, number>;
  // host-side ifindex -> endpoint value
  endpoints: ReadonlyMap<number, EndpointRecord>;
  // endpoint id -> content of generation 0 and 1
  policy: ReadonlyMap<number, readonly [EntrySet, EntrySet]>;
  // endpoint id -> its own addresses in sl_src (canonical text, sourceAddress); ids without any are absent
  sources: ReadonlyMap<number, ReadonlySet<string>>;
}

export interface DesiredEndpoint {
  key: string;
  ifindex: number;
  id: number;
  identity: number;
  // SL_EP_SOURCE_CHECK is set exactly when addresses is defined.
  flags: number;
  entries: EntrySet;
  // The pod's own addresses (canonical text): all it may send from. Undefined: the caller does not know
  // them, and the endpoint's sources are not checked.
  addresses?: ReadonlySet<string>;
  // Rule counters of the audited default by direction (rule-slots.ts assigns them); absent: none.
  auditSlot?: readonly [number, number];
}

export interface DesiredState {
  ipcache: ReadonlyMap<string, number>;
  endpoints: ReadonlyMap<number, DesiredEndpoint>;
  // The entries of an endpoint failed closed (MapState.failClosed, capacity-fit.ts); absent: each
  // endpoint's own allow-localhost entries.
  failClosed?: EntrySet;
}

export interface SyncPlan {
  phase1: { delete: EntryChange[]; write: EntryChange[] };
  phase2: { zeroCounters: number[]; deleteEndpoints: number[]; writeEndpoints: [number, EndpointRecord][] };
  // Whether phase 3 touches generations a program may have just read (then the barrier is needed).
  barrier: boolean;
  // zeroCounters: counter slots no endpoint holds any more.
  phase3: { delete: EntryChange[]; write: EntryChange[]; zeroCounters: number[] };
  // write: with phase 1, before any endpoint value; delete: with phase 3, after the barrier.
  // write and deleteFirst go before the endpoint values (an address the pod lost while its check stays
  // on: the revision bump that makes its tracked flows revalidate must not find it); delete after the
  // barrier (the endpoint or its check is going, and its old value may still run until then).
  sources: { write: SourceRef[]; deleteFirst: SourceRef[]; delete: SourceRef[] };
  ipcache: { delete: string[]; write: [string, number][] };
  flips: number;
  result: AppliedState;
}

export interface Capacities {
  ipcache: number;
  endpoints: number;
  policy: number;
  sources: number;
}

export const EMPTY_STATE: AppliedState = {
  ipcache: new Map(),
  endpoints: new Map(),
  policy: new Map(),
  sources: new Map(),
};

const EPF = enums.sl_endpoint_flags;
// The flags that change verdicts (a change rechecks tracked flows); the source check drops only what
// no tracked flow of the pod can carry.
// The audited default's flags are there too: a tracked flow's audit mark (SL_CT_AUDIT) follows them.
const DENY_FLAGS =
  EPF.SL_EP_DEFAULT_DENY_INGRESS |
  EPF.SL_EP_DEFAULT_DENY_EGRESS |
  EPF.SL_EP_AUDIT_DENY_INGRESS |
  EPF.SL_EP_AUDIT_DENY_EGRESS;
const NO_AUDIT_SLOTS: readonly [number, number] = [0, 0];

// An address as sl_src holds it, in the one text form the writer compares: "10.0.0.1", "fd00::1".
export function sourceAddress(text: string): string {
  const ip = parseIp(text);
  if (!ip) throw new Error(`endpoint address ${JSON.stringify(text)} is not an IP address`);
  return formatIp(ip.family, ip.addr);
}

// The default-deny flags, and the audited default's (the same when the Audit policies change none).
export function endpointFlags(
  defaultDeny: { ingress: boolean; egress: boolean },
  auditDefaultDeny: { ingress: boolean; egress: boolean } = defaultDeny,
): number {
  return (
    (defaultDeny.ingress ? EPF.SL_EP_DEFAULT_DENY_INGRESS : 0) |
    (defaultDeny.egress ? EPF.SL_EP_DEFAULT_DENY_EGRESS : 0) |
    (auditDefaultDeny.ingress ? EPF.SL_EP_AUDIT_DENY_INGRESS : 0) |
    (auditDefaultDeny.egress ? EPF.SL_EP_AUDIT_DENY_EGRESS : 0)
  );
}

function u32(what: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff)
    throw new Error(`${what}: ${v} is not a 32-bit unsigned integer`);
  return v;
}

// The compiler's MapState as the maps will hold it. Endpoints whose interface is unknown (ifindexOf
// returns undefined) are left out and listed in `pending`.
export function desiredState(
  state: MapState,
  ifindexOf: (ep: EndpointState) => number | undefined,
): { desired: DesiredState; pending: string[] } {
  const ipcache = new Map<string, number>();
  for (const e of state.ipcache) {
    const cidr = canonicalCidr(e.cidr);
    const prev = ipcache.get(cidr);
    if (prev !== undefined && prev !== e.identity)
      throw new Error(`ipcache ${e.cidr}: two identities (${prev}, ${e.identity}) for one prefix`);
    ipcache.set(cidr, u32(`ipcache ${e.cidr}: identity`, e.identity));
  }
  const endpoints = new Map<number, DesiredEndpoint>();
  const ids = new Map<number, string>();
  const pending: string[] = [];
  for (const ep of state.endpoints) {
    const ifindex = ifindexOf(ep);
    if (ifindex === undefined) {
      pending.push(ep.key);
      continue;
    }
    u32(`endpoint ${ep.key}: id`, ep.id);
    u32(`endpoint ${ep.key}: identity`, ep.identity);
    const other = endpoints.get(ifindex);
    if (other) throw new Error(`endpoint ${ep.key}: ifindex ${ifindex} already used by ${other.key}`);
    const dupId = ids.get(ep.id);
    if (dupId) throw new Error(`endpoint ${ep.key}: id ${ep.id} already used by ${dupId}`);
    ids.set(ep.id, ep.key);
    const entries = new Map<string, PolicyEntry>();
    for (const raw of ep.policy.entries) {
      const e = canonicalEntry(raw);
      u32(`endpoint ${ep.key}: policy identity`, e.identity);
      u32(`endpoint ${ep.key}: rule id`, e.ruleId);
      const k = policyEntryKey(e);
      const prev = entries.get(k);
      if (prev && !sameStoredValue(prev, e))
        throw new Error(
          `endpoint ${ep.key}: conflicting policy entries for ${k} (${prev.verdict}, ${e.verdict})`,
        );
      entries.set(k, e);
    }
    const addresses = ep.addresses && new Set(ep.addresses.map(sourceAddress));
    endpoints.set(ifindex, {
      key: ep.key,
      ifindex,
      id: ep.id,
      identity: ep.identity,
      flags:
        endpointFlags(ep.policy.defaultDeny, ep.policy.auditDefaultDeny) |
        (addresses ? EPF.SL_EP_SOURCE_CHECK : 0),
      entries,
      ...(addresses && { addresses }),
    });
  }
  const failClosed = state.failClosed && closedEntries(state.failClosed.entries);
  return { desired: { ipcache, endpoints, ...(failClosed && { failClosed }) }, pending };
}

// The fail-closed policy's entries (MapState.failClosed) as the writer compares them.
export function closedEntries(entries: readonly PolicyEntry[]): EntrySet {
  const out = new Map<string, PolicyEntry>();
  for (const raw of entries) {
    const e = canonicalEntry(raw);
    out.set(policyEntryKey(e), e);
  }
  return out;
}

export function sameEntries(a: EntrySet, b: EntrySet): boolean {
  if (a.size !== b.size) return false;
  for (const [k, e] of a) {
    const o = b.get(k);
    if (!o || !sameStoredValue(e, o)) return false;
  }
  return true;
}

// Ops turning generation `gen` of epId from `have` into `want`; returns how many keys are added.
function diffInto(
  epId: number,
  gen: Generation,
  have: EntrySet,
  want: EntrySet,
  del: EntryChange[],
  put: EntryChange[],
): number {
  let added = 0;
  for (const [k, e] of have) if (!want.has(k)) del.push({ epId, gen, entry: e });
  for (const [k, e] of want) {
    const h = have.get(k);
    if (!h) added++;
    if (!h || !sameStoredValue(h, e)) put.push({ epId, gen, entry: e });
  }
  return added;
}

const NO_ENTRIES: EntrySet = new Map();
const NO_ADDRESSES: ReadonlySet<string> = new Set();
const EMPTY_GENS: readonly [EntrySet, EntrySet] = [NO_ENTRIES, NO_ENTRIES];

// Counter slots: an endpoint id keeps the slot it has; a new one takes the lowest slot no applied
// endpoint holds (a slot given up in this plan may still be counted into by a packet that read the old
// endpoint value), or, when there is none, a slot given up in this plan.
class SlotAllocator {
  readonly #ofId = new Map<number, number>();
  readonly #taken = new Set<number>();
  readonly #givenUp: number[] = [];
  readonly #capacity: number;
  #next = 0;

  constructor(applied: AppliedState, desiredIds: ReadonlySet<number>, capacity: number) {
    this.#capacity = capacity;
    for (const a of applied.endpoints.values()) {
      this.#taken.add(a.slot);
      if (desiredIds.has(a.id)) this.#ofId.set(a.id, a.slot);
      else this.#givenUp.push(a.slot);
    }
    this.#givenUp.sort((x, y) => y - x);
  }

  // The slot of endpoint id; a slot new to it is listed in zero.
  slotOf(id: number, zero: number[]): number {
    const have = this.#ofId.get(id);
    if (have !== undefined) return have;
    while (this.#next < this.#capacity && this.#taken.has(this.#next)) this.#next++;
    let slot: number;
    if (this.#next < this.#capacity) slot = this.#next++;
    else {
      const reuse = this.#givenUp.pop();
      if (reuse === undefined)
        throw new MapCapacityError("endpoint counter slots", this.#capacity, this.#capacity + 1);
      slot = reuse;
    }
    this.#taken.add(slot);
    this.#ofId.set(id, slot);
    zero.push(slot);
    return slot;
  }

  // Slots given up in this plan and not handed out again.
  released(): number[] {
    return this.#givenUp.slice();
  }
}

export function planSync(applied: AppliedState, desired: DesiredState, cap: Capacities): SyncPlan {
  const plan: SyncPlan = {
    phase1: { delete: [], write: [] },
    phase2: { zeroCounters: [], deleteEndpoints: [], writeEndpoints: [] },
    barrier: false,
    phase3: { delete: [], write: [], zeroCounters: [] },
    sources: { write: [], deleteFirst: [], delete: [] },
    ipcache: { delete: [], write: [] },
    flips: 0,
    result: EMPTY_STATE,
  };
  const resultEndpoints = new Map<number, EndpointRecord>();
  const resultPolicy = new Map<number, readonly [EntrySet, EntrySet]>();
  let policyCount = 0;
  for (const gens of applied.policy.values()) policyCount += gens[0].size + gens[1].size;
  let added1 = 0;
  let removed1 = 0;
  let added3 = 0;
  let removed3 = 0;

  // An id may move to another interface: its generations are then in use under the old ifindex.
  const activeGenOfId = new Map<number, Generation>();
  for (const a of applied.endpoints.values()) activeGenOfId.set(a.id, a.gen);
  // One desired endpoint per id (desiredState checks it): then phase 1 and phase 3 touch disjoint
  // (id, generation) pairs, and the writer diffs both against the applied state.
  const desiredIds = new Set<number>();
  for (const d of desired.endpoints.values()) {
    if (desiredIds.has(d.id)) throw new Error(`endpoint ${d.key}: id ${d.id} used by two desired endpoints`);
    desiredIds.add(d.id);
  }

  for (const ifindex of applied.endpoints.keys()) {
    if (!desired.endpoints.has(ifindex)) plan.phase2.deleteEndpoints.push(ifindex);
  }
  if (desired.endpoints.size > cap.endpoints)
    throw new MapCapacityError("endpoints", cap.endpoints, desired.endpoints.size);
  const slots = new SlotAllocator(applied, desiredIds, cap.endpoints);
  for (const [ifindex, d] of desired.endpoints) {
    const a = applied.endpoints.get(ifindex);
    const slot = slots.slotOf(d.id, plan.phase2.zeroCounters);
    const gens = applied.policy.get(d.id) ?? EMPTY_GENS;
    const same = a !== undefined && a.id === d.id;
    const g: Generation = same ? a.gen : (activeGenOfId.get(d.id) ?? 1);
    const h: Generation = g === 0 ? 1 : 0;
    const flip = !same || !sameEntries(gens[g], d.entries);
    if (flip) {
      const before = plan.phase1.delete.length;
      added1 += diffInto(d.id, h, gens[h], d.entries, plan.phase1.delete, plan.phase1.write);
      removed1 += plan.phase1.delete.length - before;
      const rec: EndpointRecord = {
        id: d.id,
        identity: d.identity,
        policyRev: ((a?.policyRev ?? 0) + 1) >>> 0,
        gen: h,
        flags: d.flags,
        slot,
        auditSlot: d.auditSlot ?? NO_AUDIT_SLOTS,
      };
      plan.phase2.writeEndpoints.push([ifindex, rec]);
      resultEndpoints.set(ifindex, rec);
      plan.flips++;
      plan.barrier = true;
      const before3 = plan.phase3.delete.length;
      added3 += diffInto(d.id, g, gens[g], d.entries, plan.phase3.delete, plan.phase3.write);
      removed3 += plan.phase3.delete.length - before3;
    } else {
      // Active generation already right. Default-deny flags changing alter verdicts, so they bump the
      // revision (conntrack rechecks forward flows); so do the source check turning on and an own address
      // the pod lost while it stays on (the datapath checks addresses only where conntrack does not
      // decide, so a flow tracked without the check, or from that address, must revalidate). An identity
      // change alone does not.
      const rec: EndpointRecord = {
        ...a,
        identity: d.identity,
        flags: d.flags,
        policyRev:
          (a.flags ^ d.flags) & (DENY_FLAGS | EPF.SL_EP_SOURCE_CHECK) || lostAddress(applied, d)
            ? (a.policyRev + 1) >>> 0
            : a.policyRev,
        slot,
        auditSlot: d.auditSlot ?? NO_AUDIT_SLOTS,
      };
      if (
        rec.identity !== a.identity ||
        rec.flags !== a.flags ||
        rec.slot !== a.slot ||
        rec.auditSlot[0] !== a.auditSlot[0] ||
        rec.auditSlot[1] !== a.auditSlot[1] ||
        rec.policyRev !== a.policyRev
      )
        plan.phase2.writeEndpoints.push([ifindex, rec]);
      resultEndpoints.set(ifindex, rec);
      // Repair an inactive generation left behind by an interrupted sync; no program reads it.
      const before3 = plan.phase3.delete.length;
      added3 += diffInto(d.id, h, gens[h], d.entries, plan.phase3.delete, plan.phase3.write);
      removed3 += plan.phase3.delete.length - before3;
    }
    resultPolicy.set(d.id, [d.entries, d.entries]);
  }
  // Policy of endpoint ids no desired endpoint uses: after the barrier, nobody reads it.
  for (const [epId, gens] of applied.policy) {
    if (desiredIds.has(epId)) continue;
    for (const gen of [0, 1] as const)
      for (const e of gens[gen].values()) plan.phase3.delete.push({ epId, gen, entry: e });
    removed3 += gens[0].size + gens[1].size;
    plan.barrier = true;
  }
  plan.phase3.zeroCounters = slots.released();

  // Own addresses: new ones before the values that may turn the check on, old ones after the barrier.
  const resultSources = new Map<number, ReadonlySet<string>>();
  let sourceCount = 0;
  for (const have of applied.sources.values()) sourceCount += have.size;
  for (const d of desired.endpoints.values()) {
    const want = d.addresses ?? NO_ADDRESSES;
    const have = applied.sources.get(d.id) ?? NO_ADDRESSES;
    for (const address of want) if (!have.has(address)) plan.sources.write.push({ epId: d.id, address });
    const lost = d.addresses ? plan.sources.deleteFirst : plan.sources.delete;
    for (const address of have) if (!want.has(address)) lost.push({ epId: d.id, address });
    if (want.size > 0) resultSources.set(d.id, want);
  }
  for (const [epId, have] of applied.sources)
    if (!desiredIds.has(epId)) for (const address of have) plan.sources.delete.push({ epId, address });
  if (plan.sources.delete.length > 0) plan.barrier = true;
  const sourcePeak = sourceCount + plan.sources.write.length;
  if (sourcePeak > cap.sources) throw new MapCapacityError("sources", cap.sources, sourcePeak);

  for (const cidr of applied.ipcache.keys()) if (!desired.ipcache.has(cidr)) plan.ipcache.delete.push(cidr);
  for (const [cidr, id] of desired.ipcache)
    if (applied.ipcache.get(cidr) !== id) plan.ipcache.write.push([cidr, id]);

  // Capacity: deletes run before writes in each phase, so the peak is after a phase's writes.
  const peak1 = policyCount - removed1 + added1;
  const peak3 = peak1 - removed3 + added3;
  const policyPeak = Math.max(peak1, peak3);
  if (policyPeak > cap.policy) throw new MapCapacityError("policy", cap.policy, policyPeak);
  if (desired.ipcache.size > cap.ipcache)
    throw new MapCapacityError("ipcache", cap.ipcache, desired.ipcache.size);

  plan.result = {
    ipcache: new Map(desired.ipcache),
    endpoints: resultEndpoints,
    policy: resultPolicy,
    sources: resultSources,
  };
  return plan;
}

// Whether the endpoint, checked before and after, lost one of its own addresses.
function lostAddress(applied: AppliedState, d: DesiredEndpoint): boolean {
  const had = applied.sources.get(d.id);
  if (!had || !d.addresses) return false;
  for (const address of had) if (!d.addresses.has(address)) return true;
  return false;
}
