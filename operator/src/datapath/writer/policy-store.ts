// Policy entries as the maps hold them (bpf/include/sluice_shared.h): one record per (endpoint,
// generation, direction, identity) group in sl_pset with the group's entries inline, and for big
// groups the full-port entries in sl_pexact and, for the biggest, the other entries in sl_pol (LPM).
// arrangeGroup (group-arrangement.ts) decides where each goes.
// Reading turns the maps back into entries; writing turns entry-level changes of the planner into
// record changes of the groups they touch.
import { arrangeGroup, type GroupLayout } from "./group-arrangement.ts";
import { type PolicyEntry, policyEntryKey } from "../../policy/mapstate.ts";
import * as C from "../codec/codecs.ts";
import {
  dirOfCode,
  entryOfPolicy,
  ofRuleWord,
  portMask,
  sameStoredValue,
  valueFieldsOf,
} from "../codec/keys.ts";
import { enums } from "../codec/layout.generated.ts";
import type { DatapathMaps } from "../kernel/maps.ts";
import {
  encodeExactBatch,
  encodeLpmBatch,
  encodeSetBatch,
  type GroupRecord,
  INLINE,
  type PolicyBatch,
  type PolicyEntryRef,
  SetBatchWriter,
} from "./policy-encoder.ts";
import type { EntryChange, EntrySet, Generation } from "./sync-plan.ts";

// endpoint id -> entries of generation 0 and 1
export type PolicyByEndpoint = Map<number, [Map<string, PolicyEntry>, Map<string, PolicyEntry>]>;

// Spilled records the program cannot reach (their group does not point at them): what an interrupted
// write may leave behind.
export interface StrayRecords {
  exact: C.PolicyExactKey[];
  lpm: C.PolicyKey[];
}

// Records per policy map (sl_pset, sl_pexact, sl_pol): what the maps hold, or a change of it.
export interface PolicyRecordCounts {
  sets: number;
  exact: number;
  lpm: number;
}

const PSET_EXACT = enums.sl_policy_set_flags.SL_PSET_EXACT;
const PSET_LPM = enums.sl_policy_set_flags.SL_PSET_LPM;

function groupKey(epId: number, gen: number, dir: number, identity: number): string {
  return `${epId}|${gen}|${dir}|${identity}`;
}

function checkGen(epId: number, gen: number): Generation {
  if (gen !== 0 && gen !== 1)
    throw new Error(`policy entry of endpoint ${epId}: generation ${gen} is not 0 or 1`);
  return gen;
}

function prefixLenOfMask(mask: number, where: string): number {
  let len = 0;
  while (len < 16 && (mask & (0x8000 >>> len)) !== 0) len++;
  if (portMask(len) !== mask) throw new Error(`${where}: port mask ${mask} is not a prefix`);
  return len;
}

// Every generation of every endpoint in the maps, the stray spill records, and how many records the
// maps hold besides the strays.
export function readPolicyMaps(maps: DatapathMaps): {
  policy: PolicyByEndpoint;
  strays: StrayRecords;
  records: PolicyRecordCounts;
} {
  const policy: PolicyByEndpoint = new Map();
  const add = (epId: number, gen: Generation, e: PolicyEntry) => {
    let gens = policy.get(epId);
    if (!gens) {
      gens = [new Map(), new Map()];
      policy.set(epId, gens);
    }
    gens[gen].set(policyEntryKey(e), e);
  };
  const flagsOf = new Map<string, number>();
  const ruleSize = C.policyRule.size;
  const valueSize = C.policyValue.size;
  const records: PolicyRecordCounts = { sets: 0, exact: 0, lpm: 0 };
  for (const [k, v] of maps.policySets.entries()) {
    records.sets++;
    const gen = checkGen(k.ep_id, k.gen);
    const direction = dirOfCode(k.dir);
    const where = `policy group of endpoint ${k.ep_id} identity ${k.identity}`;
    if (v.count > INLINE) throw new Error(`${where}: ${v.count} inline entries, at most ${INLINE}`);
    flagsOf.set(groupKey(k.ep_id, gen, k.dir, k.identity), v.flags);
    for (let i = 0; i < v.count; i++) {
      const r = C.policyRule.decode(v.rules, i * ruleSize);
      const result = C.policyValue.decode(v.results, i * valueSize);
      const { port, proto } = ofRuleWord(r.match);
      const any = proto === 0;
      add(k.ep_id, gen, {
        direction,
        identity: k.identity,
        protocol: proto,
        port: any ? 0 : port,
        portPrefixLen: any ? 0 : prefixLenOfMask(ofRuleWord(r.mask).port, where),
        ...valueFieldsOf(result),
      });
    }
  }
  const strayExact: C.PolicyExactKey[] = [];
  for (const [k, v] of maps.policyExact.entries()) {
    const gen = checkGen(k.ep_id, k.gen);
    if (((flagsOf.get(groupKey(k.ep_id, gen, k.dir, k.identity)) ?? 0) & PSET_EXACT) === 0) {
      strayExact.push(k);
      continue;
    }
    records.exact++;
    add(k.ep_id, gen, {
      direction: dirOfCode(k.dir),
      identity: k.identity,
      protocol: k.proto,
      port: k.port,
      portPrefixLen: 16,
      ...valueFieldsOf(v),
    });
  }
  const strayLpm: C.PolicyKey[] = [];
  for (const [k, v] of maps.policyLpm.entries()) {
    const gen = checkGen(k.ep_id, k.gen);
    if (((flagsOf.get(groupKey(k.ep_id, gen, k.dir, k.identity)) ?? 0) & PSET_LPM) === 0) {
      strayLpm.push(k);
      continue;
    }
    records.lpm++;
    add(k.ep_id, gen, entryOfPolicy(k, v));
  }
  return {
    policy,
    strays: { exact: strayExact, lpm: strayLpm },
    records,
  };
}

export function deleteStrays(maps: DatapathMaps, s: StrayRecords): void {
  maps.policyExact.deleteMany(s.exact);
  maps.policyLpm.deleteMany(s.lpm);
}

// How many entries the maps hold (inline, exact and LPM), over all endpoints and generations.
export function countPolicyEntries(maps: DatapathMaps): number {
  let n = 0;
  for (const [, v] of maps.policySets.entries()) n += v.count;
  return n + maps.policyExact.count() + maps.policyLpm.count();
}

interface TouchedGroup {
  epId: number;
  gen: Generation;
  direction: PolicyEntry["direction"];
  identity: number;
  // What the group holds before the phase (filled only for generations that hold something).
  have: PolicyEntry[] | undefined;
  dels: PolicyEntry[] | undefined;
  puts: PolicyEntry[];
  layout: GroupLayout;
}

// Spill records to delete and to (re)write when a group goes from layout a to layout b.
function diffSpill(
  epId: number,
  gen: Generation,
  a: readonly PolicyEntry[],
  b: readonly PolicyEntry[],
  del: PolicyEntryRef[],
  put: PolicyEntryRef[],
): void {
  if (a.length === 0) {
    for (const e of b) put.push({ epId, gen, entry: e });
    return;
  }
  const before = new Map(a.map((e) => [policyEntryKey(e), e]));
  const after = new Set<string>();
  for (const e of b) {
    const k = policyEntryKey(e);
    after.add(k);
    const old = before.get(k);
    if (!old || !sameStoredValue(old, e)) put.push({ epId, gen, entry: e });
  }
  for (const [k, e] of before) if (!after.has(k)) del.push({ epId, gen, entry: e });
}

// The group's content after the phase. Without prior content or deletes it is the writes themselves
// (the planner writes a key at most once per generation and phase): the bulk case costs no string keys.
function wanted(g: TouchedGroup): PolicyEntry[] {
  if (!g.have && !g.dels) return g.puts;
  const want = new Map<string, PolicyEntry>();
  for (const e of g.have ?? []) want.set(policyEntryKey(e), e);
  for (const e of g.dels ?? []) want.delete(policyEntryKey(e));
  for (const e of g.puts) want.set(policyEntryKey(e), e);
  return [...want.values()];
}

// The record batches of one phase: deletes (keys only) and writes per map.
export interface PolicyRecordBatches {
  setDel: PolicyBatch;
  exactDel: PolicyBatch;
  lpmDel: PolicyBatch;
  setPut: PolicyBatch;
  exactPut: PolicyBatch;
  lpmPut: PolicyBatch;
  // Records each map gains (negative: loses) once the batches are applied; a put may rewrite a record.
  added: PolicyRecordCounts;
}

const EMPTY: GroupLayout = { inline: [], exact: [], lpm: [] };

// Touched groups by (endpoint, generation, direction, identity): one numeric key where the ids allow
// (identities are below 2^24, endpoint ids in practice below 2^26), a string otherwise.
type GroupIndex = Map<number | string, TouchedGroup>;

const TWO24 = 16777216;

function groupId(
  epId: number,
  gen: number,
  direction: PolicyEntry["direction"],
  identity: number,
): number | string {
  const slot = epId * 4 + gen * 2 + (direction === "ingress" ? 0 : 1);
  return identity < TWO24 && epId < 67108864 ? slot * TWO24 + identity : `${slot}|${identity}`;
}

// Turns the planner's entry deletes and writes of one phase into encoded record batches, group by
// group. current gives what each endpoint generation holds before the phase. Pure: no kernel. With
// o.scratch the batches may be views of its buffers, valid until it is used again.
export function policyRecordBatches(
  current: (epId: number, gen: Generation) => EntrySet,
  deletes: readonly EntryChange[],
  writes: readonly EntryChange[],
  o: { bulk?: boolean; scratch?: PolicyWriteScratch } = {},
): PolicyRecordBatches {
  if (deletes.length === 0 && o.bulk !== false) {
    const b = bulkRecordBatches(current, writes, o.scratch ?? new PolicyWriteScratch());
    if (b) return b;
  }
  const index: GroupIndex = new Map();
  const generations = new Map<number, [number, Generation]>();
  const touch = (c: EntryChange): TouchedGroup => {
    const e = c.entry;
    const id = groupId(c.epId, c.gen, e.direction, e.identity);
    let g = index.get(id);
    if (!g) {
      g = {
        epId: c.epId,
        gen: c.gen,
        direction: e.direction,
        identity: e.identity,
        have: undefined,
        dels: undefined,
        puts: [],
        layout: EMPTY,
      };
      index.set(id, g);
      generations.set(c.epId * 2 + c.gen, [c.epId, c.gen]);
    }
    return g;
  };
  for (const c of deletes) {
    const g = touch(c);
    if (g.dels) g.dels.push(c.entry);
    else g.dels = [c.entry];
  }
  for (const c of writes) touch(c).puts.push(c.entry);

  // What the touched groups hold now: one pass over each touched endpoint generation.
  for (const [epId, gen] of generations.values()) {
    const have = current(epId, gen);
    if (have.size === 0) continue;
    for (const e of have.values()) {
      const g = index.get(groupId(epId, gen, e.direction, e.identity));
      if (!g) continue;
      if (g.have) g.have.push(e);
      else g.have = [e];
    }
  }

  const setDel: GroupRecord[] = [];
  const setPut: GroupRecord[] = [];
  const exactDel: PolicyEntryRef[] = [];
  const exactPut: PolicyEntryRef[] = [];
  const lpmDel: PolicyEntryRef[] = [];
  const lpmPut: PolicyEntryRef[] = [];
  const added: PolicyRecordCounts = { sets: 0, exact: 0, lpm: 0 };
  for (const g of index.values()) {
    const want = wanted(g);
    const a = g.have ? arrangeGroup(g.have, INLINE) : EMPTY;
    const b = want.length > 0 ? arrangeGroup(want, INLINE) : EMPTY;
    g.layout = b;
    // A group has its record while it has entries.
    added.sets += (want.length > 0 ? 1 : 0) - (g.have ? 1 : 0);
    added.exact += b.exact.length - a.exact.length;
    added.lpm += b.lpm.length - a.lpm.length;
    if (want.length > 0) setPut.push(g);
    else if (g.have) setDel.push(g);
    if (a.exact.length + b.exact.length > 0) diffSpill(g.epId, g.gen, a.exact, b.exact, exactDel, exactPut);
    if (a.lpm.length + b.lpm.length > 0) diffSpill(g.epId, g.gen, a.lpm, b.lpm, lpmDel, lpmPut);
  }
  return {
    setDel: encodeSetBatch(setDel, true),
    exactDel: encodeExactBatch(exactDel, true),
    lpmDel: encodeLpmBatch(lpmDel, true),
    setPut: encodeSetBatch(setPut),
    exactPut: encodeExactBatch(exactPut),
    lpmPut: encodeLpmBatch(lpmPut),
    added,
  };
}

const NO_BATCH: PolicyBatch = { keys: new Uint8Array(0), values: new Uint8Array(0), count: 0 };

// Working memory of the bulk path, kept by the map writer across syncs so that grouping allocates
// nothing per entry or group: a hash of the groups of the current endpoint generation (open addressing,
// slots stamped with the run they belong to, so a new run clears nothing), per group its record, size
// and the sort fields of its inline entries, and the group record buffers. Batches returned while using
// it are views of its buffers: valid until its next use.
export class PolicyWriteScratch {
  readonly sets = new SetBatchWriter(1024);
  // Slot h at 3h: stamp of the run that filled it, group key, group number (one cache line per probe).
  slots = new Int32Array(3 * 1024);
  stamp = 0;
  // Group -> key, record index, size.
  groupKey = new Int32Array(512);
  record = new Int32Array(512);
  size = new Int32Array(512);
  // Group g's inline entry j at g * INLINE + j: the fields of arrangeGroup's precedence.
  spec = new Float64Array(512 * INLINE);
  proto = new Float64Array(512 * INLINE);
  port = new Float64Array(512 * INLINE);
  // Groups of the current run with more entries than fit inline.
  big: number[] = [];

  // Bytes of its buffers: what a writer keeps between syncs (MapSync trims it).
  get bytes(): number {
    const arrays = [this.slots, this.groupKey, this.record, this.size, this.spec, this.proto, this.port];
    return this.sets.bytes + arrays.reduce((n, a) => n + a.byteLength, 0);
  }

  // Ready for a call.
  begin(): void {
    this.sets.reset();
  }

  // A stamp for a new run (the table is cleared only when stamps wrap).
  nextRun(): number {
    if (this.stamp === 0x7fffffff) {
      this.slots.fill(0);
      this.stamp = 0;
    }
    this.big.length = 0;
    return ++this.stamp;
  }

  // The group of key k in run run, or -1.
  groupOf(k: number, run: number): number {
    const mask = this.slots.length / 3 - 1;
    for (let h = hashSlot(k) & mask; this.slots[3 * h] === run; h = (h + 1) & mask)
      if (this.slots[3 * h + 1] === k) return this.slots[3 * h + 2];
    return -1;
  }

  // Doubles the hash (rehashing the run's groups) and the per-group arrays.
  grow(groups: number, run: number): void {
    const cap = (this.slots.length / 3) * 2;
    const slots = new Int32Array(3 * cap);
    const mask = cap - 1;
    for (let g = 0; g < groups; g++) {
      const k = this.groupKey[g];
      let h = hashSlot(k) & mask;
      while (slots[3 * h] === run) h = (h + 1) & mask;
      slots[3 * h] = run;
      slots[3 * h + 1] = k;
      slots[3 * h + 2] = g;
    }
    this.slots = slots;
    const grown = <T extends Int32Array | Float64Array>(a: T, make: (n: number) => T, per = 1): T => {
      const b = make((cap / 2) * per);
      b.set(a);
      return b;
    };
    const i32 = (n: number) => new Int32Array(n);
    const f64 = (n: number) => new Float64Array(n);
    this.groupKey = grown(this.groupKey, i32);
    this.record = grown(this.record, i32);
    this.size = grown(this.size, i32);
    this.spec = grown(this.spec, f64, INLINE);
    this.proto = grown(this.proto, f64, INLINE);
    this.port = grown(this.port, f64, INLINE);
  }
}

function hashSlot(k: number): number {
  return Math.imul(k, 0x9e3779b1) >>> 7;
}

function groupKeyOf(e: PolicyEntry): number {
  return e.identity * 2 + (e.direction === "ingress" ? 0 : 1);
}

// The bulk case, as a first sync or a generation rewritten from scratch produces it: only writes, into
// endpoint generations that hold nothing, each generation's writes in one run (the planner emits them
// endpoint by endpoint). Groups are then complete at the end of their run. Returns undefined when the
// input is not of that shape.
function bulkRecordBatches(
  current: (epId: number, gen: Generation) => EntrySet,
  writes: readonly EntryChange[],
  s: PolicyWriteScratch,
): PolicyRecordBatches | undefined {
  s.begin();
  const exactPut: PolicyEntryRef[] = [];
  const lpmPut: PolicyEntryRef[] = [];
  const done = new Set<number>();
  for (let from = 0; from < writes.length; ) {
    const { epId, gen } = writes[from];
    const r = epId * 2 + gen;
    if (done.has(r) || current(epId, gen).size > 0) return undefined;
    done.add(r);
    const to = encodeRun(s, writes, from);
    if (to < 0) return undefined;
    if (s.big.length > 0) spillGroups(s, writes, from, to, exactPut, lpmPut);
    from = to;
  }
  const setPut = s.sets.finish();
  return {
    setDel: NO_BATCH,
    exactDel: NO_BATCH,
    lpmDel: NO_BATCH,
    setPut,
    exactPut: encodeExactBatch(exactPut),
    lpmPut: encodeLpmBatch(lpmPut),
    // Every generation written held nothing: each record is new.
    added: { sets: setPut.count, exact: exactPut.length, lpm: lpmPut.length },
  };
}

// The run of writes that starts at from (the writes of its endpoint generation), in one pass: each
// write finds its group in the hash; a new group opens its record (records in order of first
// appearance), and while a group fits inline each entry goes straight into its record, in
// arrangeGroup's order (specificity down, then protocol, then port; stable, as arrangeGroup's sort).
// Groups that outgrow the inline rules are listed in s.big for spillGroups. Returns where the run ends,
// or -1 for an identity the numeric group key cannot hold. Apart from the per-run logic so that this
// loop, the hot one, is optimised as a whole function.
function encodeRun(s: PolicyWriteScratch, writes: readonly EntryChange[], from: number): number {
  const run = s.nextRun();
  const sets = s.sets;
  const { epId, gen } = writes[from];
  let slots = s.slots;
  let groupKey = s.groupKey;
  let record = s.record;
  let size = s.size;
  let spec = s.spec;
  let proto = s.proto;
  let port = s.port;
  let mask = slots.length / 3 - 1;
  let groups = 0;
  const n = writes.length;
  let i = from;
  for (; i < n; i++) {
    const c = writes[i];
    if (c.epId !== epId || c.gen !== gen) break;
    const e = c.entry;
    const identity = e.identity;
    if (!(identity >= 0 && identity < TWO24)) return -1;
    const k = identity * 2 + (e.direction === "ingress" ? 0 : 1);
    let h = hashSlot(k) & mask;
    while (slots[3 * h] === run && slots[3 * h + 1] !== k) h = (h + 1) & mask;
    let g: number;
    let m: number;
    if (slots[3 * h] === run) {
      g = slots[3 * h + 2];
      m = size[g]++;
      if (m >= INLINE) {
        if (m === INLINE) s.big.push(g);
        continue;
      }
    } else {
      // A new group; the hash stays at most half full.
      if (2 * (groups + 1) > mask + 1) {
        s.grow(groups, run);
        slots = s.slots;
        groupKey = s.groupKey;
        record = s.record;
        size = s.size;
        spec = s.spec;
        proto = s.proto;
        port = s.port;
        mask = slots.length / 3 - 1;
        h = hashSlot(k) & mask;
        while (slots[3 * h] === run) h = (h + 1) & mask;
      }
      g = groups++;
      slots[3 * h] = run;
      slots[3 * h + 1] = k;
      slots[3 * h + 2] = g;
      groupKey[g] = k;
      record[g] = sets.open(epId, gen, e.direction, identity);
      size[g] = 1;
      m = 0;
    }
    // Insertion of the group's m-th entry among its first m, sorted.
    const pr = e.protocol;
    const sp = pr === 0 ? 0 : 1 + e.portPrefixLen;
    const po = e.port;
    const base = g * INLINE;
    const r = record[g];
    let j = base + m - 1;
    while (j >= base && (sp - spec[j] || proto[j] - pr || port[j] - po) > 0) {
      spec[j + 1] = spec[j];
      proto[j + 1] = proto[j];
      port[j + 1] = port[j];
      sets.shiftRule(r, j - base);
      j--;
    }
    spec[j + 1] = sp;
    proto[j + 1] = pr;
    port[j + 1] = po;
    sets.putRule(r, j + 1 - base, m + 1, epId, e);
  }
  return i;
}

// Re-encodes the groups of the run [from, to) that outgrew the inline rules (s.big), as arrangeGroup
// arranges them, and lists their spill. Rare: their entries are collected by a second pass over the run.
function spillGroups(
  s: PolicyWriteScratch,
  writes: readonly EntryChange[],
  from: number,
  to: number,
  exactPut: PolicyEntryRef[],
  lpmPut: PolicyEntryRef[],
): void {
  const { epId, gen } = writes[from];
  const run = s.stamp;
  const entries = new Map<number, PolicyEntry[]>(s.big.map((g) => [g, []]));
  for (let i = from; i < to; i++) {
    const e = writes[i].entry;
    entries.get(s.groupOf(groupKeyOf(e), run))?.push(e);
  }
  for (const [g, es] of entries) {
    const e0 = es[0];
    const layout = arrangeGroup(es, INLINE);
    s.sets.rewrite(s.record[g], { epId, gen, direction: e0.direction, identity: e0.identity, layout });
    for (const e of layout.exact) exactPut.push({ epId, gen, entry: e });
    for (const e of layout.lpm) lpmPut.push({ epId, gen, entry: e });
  }
}

// Writes record batches. The generation written is one no program reads (the planner's invariant), so
// any order is safe; deletes go first so a full map never refuses a write.
export function applyPolicyRecords(maps: DatapathMaps, b: PolicyRecordBatches): void {
  if (b.exactDel.count > 0) maps.policyExact.deleteManyRaw(b.exactDel.keys, b.exactDel.count);
  if (b.lpmDel.count > 0) maps.policyLpm.deleteManyRaw(b.lpmDel.keys, b.lpmDel.count);
  if (b.setDel.count > 0) maps.policySets.deleteManyRaw(b.setDel.keys, b.setDel.count);
  if (b.exactPut.count > 0) maps.policyExact.setManyRaw(b.exactPut.keys, b.exactPut.values, b.exactPut.count);
  if (b.lpmPut.count > 0) maps.policyLpm.setManyRaw(b.lpmPut.keys, b.lpmPut.values, b.lpmPut.count);
  if (b.setPut.count > 0) maps.policySets.setManyRaw(b.setPut.keys, b.setPut.values, b.setPut.count);
}

// Applies the planner's entry deletes and writes of one phase to the maps. Returns the records each
// map gained (negative: lost).
export function writePolicyChanges(
  maps: DatapathMaps,
  current: (epId: number, gen: Generation) => EntrySet,
  deletes: readonly EntryChange[],
  writes: readonly EntryChange[],
  scratch?: PolicyWriteScratch,
): PolicyRecordCounts {
  const b = policyRecordBatches(current, deletes, writes, { scratch });
  applyPolicyRecords(maps, b);
  return b.added;
}
