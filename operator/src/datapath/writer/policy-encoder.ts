// The map writer's hot path: policy records straight into the contiguous key/value buffers of one batch
// call, with no per-entry objects. Offsets come from the BTF-generated layout (checked once, here, at
// load); byte order and canonical form are those of codec/keys.ts and the generic StructCodec, which
// the unit test holds these encoders to (same bytes for random entries).
import { arrangeGroup, type GroupLayout } from "./group-arrangement.ts";
import type { Direction, PolicyEntry } from "../../policy/mapstate.ts";
import { dirCode, portMask, ruleWord, type StoredEntry, verdictCode } from "../codec/keys.ts";
import { enums, type StructLayout, structs } from "../codec/layout.generated.ts";

function offsetOf(struct: string, layout: StructLayout, field: string, size: number): number {
  const f = layout.fields[field];
  if (!f || f.size !== size)
    throw new Error(
      `${struct}.${field}: the encoder expects a ${size}-byte field, the layout has ${f?.size}`,
    );
  return f.offset;
}

const KL = structs.sl_policy_key;
const VL = structs.sl_policy_value;
export const POLICY_KEY_SIZE = KL.size;
export const POLICY_VALUE_SIZE = VL.size;
const K_PREFIXLEN = offsetOf("sl_policy_key", KL, "prefixlen", 4);
const K_EP_ID = offsetOf("sl_policy_key", KL, "ep_id", 4);
const K_IDENTITY = offsetOf("sl_policy_key", KL, "identity", 4);
const K_GEN = offsetOf("sl_policy_key", KL, "gen", 1);
const K_DIR = offsetOf("sl_policy_key", KL, "dir", 1);
const K_PROTO = offsetOf("sl_policy_key", KL, "proto", 1);
const K_PORT = offsetOf("sl_policy_key", KL, "port", 2);
const V_VERDICT = offsetOf("sl_policy_value", VL, "verdict", 1);
const V_RULE_ID = offsetOf("sl_policy_value", VL, "rule_id", 4);
const V_AUDIT_VERDICT = offsetOf("sl_policy_value", VL, "audit_verdict", 1);
const V_SLOT = offsetOf("sl_policy_value", VL, "slot", 2);
const V_AUDIT_RULE_ID = offsetOf("sl_policy_value", VL, "audit_rule_id", 4);
const V_AUDIT_SLOT = offsetOf("sl_policy_value", VL, "audit_slot", 2);
const VERDICT_NONE = enums.sl_verdict.SL_VERDICT_NONE;

const SKL = structs.sl_policy_set_key;
const SL = structs.sl_policy_set;
const RL = structs.sl_policy_rule;
const XL = structs.sl_policy_exact_key;
export const SET_KEY_SIZE = SKL.size;
export const SET_SIZE = SL.size;
export const EXACT_KEY_SIZE = XL.size;
const SK_EP_ID = offsetOf("sl_policy_set_key", SKL, "ep_id", 4);
const SK_IDENTITY = offsetOf("sl_policy_set_key", SKL, "identity", 4);
const SK_GEN = offsetOf("sl_policy_set_key", SKL, "gen", 1);
const SK_DIR = offsetOf("sl_policy_set_key", SKL, "dir", 1);
export const INLINE = enums.sl_policy_inline.SL_POLICY_INLINE;
const S_COUNT = offsetOf("sl_policy_set", SL, "count", 1);
const S_FLAGS = offsetOf("sl_policy_set", SL, "flags", 1);
const S_RULES = offsetOf("sl_policy_set", SL, "rules", RL.size * INLINE);
const S_RESULTS = offsetOf("sl_policy_set", SL, "results", VL.size * INLINE);
const S_FILTER = offsetOf("sl_policy_set", SL, "exact_filter", 8);
const R_SIZE = RL.size;
const R_MATCH = offsetOf("sl_policy_rule", RL, "match", 4);
const R_MASK = offsetOf("sl_policy_rule", RL, "mask", 4);
const X_EP_ID = offsetOf("sl_policy_exact_key", XL, "ep_id", 4);
const X_IDENTITY = offsetOf("sl_policy_exact_key", XL, "identity", 4);
const X_GEN = offsetOf("sl_policy_exact_key", XL, "gen", 1);
const X_DIR = offsetOf("sl_policy_exact_key", XL, "dir", 1);
const X_PROTO = offsetOf("sl_policy_exact_key", XL, "proto", 1);
const X_PORT = offsetOf("sl_policy_exact_key", XL, "port", 2);
const PSET_EXACT = enums.sl_policy_set_flags.SL_PSET_EXACT;
const PSET_LPM = enums.sl_policy_set_flags.SL_PSET_LPM;

const P = enums.sl_policy_prefix;

const EL = structs.sl_endpoint_value;
// Checked, not used: the codec hands the field over as its own bytes.
offsetOf("sl_endpoint_value", EL, "any", SET_SIZE * 2);
const ID_ANY = enums.sl_identity.SL_ID_ANY;

// One policy map write: the entry of generation gen of endpoint epId.
export interface PolicyEntryRef {
  epId: number;
  gen: number;
  entry: PolicyEntry;
}

export interface PolicyBatch {
  keys: Uint8Array;
  // Empty when only keys were asked for (deletes).
  values: Uint8Array;
  count: number;
}

function isU32(v: number): boolean {
  return v >>> 0 === v;
}

function bad(epId: number, e: PolicyEntry, what: string): never {
  throw new RangeError(`policy entry of endpoint ${epId} (identity ${e.identity}): ${what}`);
}

// Writes one LPM key at byte offset o of keys (zeroed beforehand: pads are left alone).
function writeKey(
  dv: DataView,
  keys: Uint8Array,
  o: number,
  epId: number,
  gen: number,
  e: PolicyEntry,
): void {
  checkEntry(epId, gen, e);
  const proto = e.protocol;
  let prefixlen: number = P.SL_POLICY_PREFIX_FIXED;
  let port = 0;
  if (proto !== 0) {
    prefixlen = P.SL_POLICY_PREFIX_PROTO + e.portPrefixLen;
    port = e.port & portMask(e.portPrefixLen);
  }
  dv.setUint32(o + K_PREFIXLEN, prefixlen, true);
  dv.setUint32(o + K_EP_ID, epId, false);
  dv.setUint32(o + K_IDENTITY, e.identity, false);
  keys[o + K_GEN] = gen;
  keys[o + K_DIR] = dirCode(e.direction);
  keys[o + K_PROTO] = proto;
  keys[o + K_PORT] = port >>> 8;
  keys[o + K_PORT + 1] = port & 0xff;
}

function checkEntry(epId: number, gen: number, e: PolicyEntry): void {
  const proto = e.protocol;
  if (!Number.isInteger(proto) || proto < 0 || proto > 255) bad(epId, e, `protocol ${proto} out of range`);
  if (!isU32(epId)) bad(epId, e, `endpoint id ${epId} is not a 32-bit unsigned integer`);
  if (!isU32(e.identity)) bad(epId, e, `identity ${e.identity} is not a 32-bit unsigned integer`);
  if (gen !== 0 && gen !== 1) bad(epId, e, `generation ${gen} is not 0 or 1`);
  if (proto !== 0) {
    const len = e.portPrefixLen;
    if (!Number.isInteger(len) || len < 0 || len > 16) bad(epId, e, `portPrefixLen ${len} must be 0..16`);
    if (!Number.isInteger(e.port) || e.port < 0 || e.port > 0xffff)
      bad(epId, e, `port ${e.port} out of range`);
  }
}

function writeExactKey(
  dv: DataView,
  keys: Uint8Array,
  o: number,
  epId: number,
  gen: number,
  e: PolicyEntry,
): void {
  checkEntry(epId, gen, e);
  if (e.protocol === 0 || e.portPrefixLen !== 16) bad(epId, e, "not a full-port entry");
  dv.setUint32(o + X_EP_ID, epId, true);
  dv.setUint32(o + X_IDENTITY, e.identity, true);
  keys[o + X_GEN] = gen;
  keys[o + X_DIR] = dirCode(e.direction);
  keys[o + X_PROTO] = e.protocol;
  keys[o + X_PORT] = e.port >>> 8;
  keys[o + X_PORT + 1] = e.port & 0xff;
}

function writeValue(dv: DataView, values: Uint8Array, o: number, epId: number, e: StoredEntry): void {
  if (!isU32(e.ruleId)) bad(epId, e, `rule id ${e.ruleId} is not a 32-bit unsigned integer`);
  writeValueFields(dv, values, o, epId, e);
}

// The value fields of a checked entry (its rule id is): verdict and rule, audit outcome, counter slots.
// Every field is written: an inline slot may hold a shifted entry's bytes.
function writeValueFields(dv: DataView, values: Uint8Array, o: number, epId: number, e: StoredEntry): void {
  values[o + V_VERDICT] = verdictCode(e.verdict);
  dv.setUint32(o + V_RULE_ID, e.ruleId, true);
  const slot = e.slot ?? 0;
  if ((slot & 0xffff) !== slot) bad(epId, e, `counter slot ${slot} is not a 16-bit unsigned integer`);
  dv.setUint16(o + V_SLOT, slot, true);
  const a = e.audit;
  if (a !== undefined && !isU32(a.ruleId))
    bad(epId, e, `audit rule id ${a.ruleId} is not a 32-bit unsigned integer`);
  values[o + V_AUDIT_VERDICT] = a ? verdictCode(a.verdict) : VERDICT_NONE;
  dv.setUint32(o + V_AUDIT_RULE_ID, a ? a.ruleId : 0, true);
  const as = a ? (e.auditSlot ?? 0) : 0;
  if ((as & 0xffff) !== as) bad(epId, e, `audit counter slot ${as} is not a 16-bit unsigned integer`);
  dv.setUint16(o + V_AUDIT_SLOT, as, true);
}

// The bit of sl_policy_set.exact_filter for a full-port entry (as sl_policy_group in bpf/sluice.bpf.c
// computes it; a bit missing here would hide the entry, which the kernel tests would catch).
export function exactFilterBit(proto: number, port: number): number {
  return (port ^ (port >>> 6) ^ (port >>> 12) ^ proto) & 63;
}

function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

type KeyWriter = typeof writeKey;

// Keys (and values unless keysOnly) of all refs, back to back, as the batch map calls take them.
function encodeEntryBatch(
  refs: readonly PolicyEntryRef[],
  keysOnly: boolean,
  keySize: number,
  write: KeyWriter,
): PolicyBatch {
  const n = refs.length;
  const keys = new Uint8Array(n * keySize);
  const values = new Uint8Array(keysOnly ? 0 : n * POLICY_VALUE_SIZE);
  const kv = view(keys);
  const vv = view(values);
  for (let i = 0; i < n; i++) {
    const r = refs[i];
    write(kv, keys, i * keySize, r.epId, r.gen, r.entry);
    if (!keysOnly) writeValue(vv, values, i * POLICY_VALUE_SIZE, r.epId, r.entry);
  }
  return { keys, values, count: n };
}

// LPM trie records of entries that are neither inline nor exact.
export function encodeLpmBatch(refs: readonly PolicyEntryRef[], keysOnly = false): PolicyBatch {
  return encodeEntryBatch(refs, keysOnly, POLICY_KEY_SIZE, writeKey);
}

// Exact-hash records of full-port entries.
export function encodeExactBatch(refs: readonly PolicyEntryRef[], keysOnly = false): PolicyBatch {
  return encodeEntryBatch(refs, keysOnly, EXACT_KEY_SIZE, writeExactKey);
}

// One group record: the entries of (epId, gen, direction, identity), arranged by arrangeGroup.
export interface GroupRecord {
  epId: number;
  gen: number;
  direction: Direction;
  identity: number;
  layout: GroupLayout;
}

// The per-entry checks of an inline rule (the group's ids are checked once, with its key); integer and
// range in one comparison each, this runs once per entry on the bulk path.
function checkRule(epId: number, e: PolicyEntry): void {
  const p = e.protocol;
  if ((p & 0xff) !== p) bad(epId, e, `protocol ${p} out of range`);
  if (p !== 0) {
    const len = e.portPrefixLen;
    if ((len & 0x1f) !== len || len > 16) bad(epId, e, `portPrefixLen ${len} must be 0..16`);
    if ((e.port & 0xffff) !== e.port) bad(epId, e, `port ${e.port} out of range`);
  }
  if (!isU32(e.ruleId)) bad(epId, e, `rule id ${e.ruleId} is not a 32-bit unsigned integer`);
}

function checkGroupIds(epId: number, gen: number, identity: number): void {
  if (!isU32(epId))
    throw new RangeError(`policy group of endpoint ${epId}: endpoint id is not a 32-bit unsigned integer`);
  if (!isU32(identity))
    throw new RangeError(
      `policy group of endpoint ${epId}: identity ${identity} is not a 32-bit unsigned integer`,
    );
  if (gen !== 0 && gen !== 1)
    throw new RangeError(`policy group of endpoint ${epId}: generation ${gen} is not 0 or 1`);
}

// Writes the key of group (epId, gen, direction, identity) at byte offset o of keys.
function writeSetKeyAt(
  dv: DataView,
  keys: Uint8Array,
  o: number,
  epId: number,
  gen: number,
  direction: Direction,
  identity: number,
): void {
  checkGroupIds(epId, gen, identity);
  dv.setUint32(o + SK_EP_ID, epId, true);
  dv.setUint32(o + SK_IDENTITY, identity, true);
  keys[o + SK_GEN] = gen;
  keys[o + SK_DIR] = dirCode(direction);
}

// Writes e as inline rule i of the group record at byte offset o of values: its match words and result.
function writeRule(
  dv: DataView,
  values: Uint8Array,
  o: number,
  i: number,
  epId: number,
  e: PolicyEntry,
): void {
  checkRule(epId, e);
  const any = e.protocol === 0;
  const pm = any ? 0 : portMask(e.portPrefixLen);
  const at = o + S_RULES + i * R_SIZE;
  dv.setUint32(at + R_MATCH, ruleWord(e.port & pm, e.protocol), true);
  dv.setUint32(at + R_MASK, ruleWord(pm, any ? 0 : 0xff), true);
  // checkRule checked the rule id.
  writeValueFields(dv, values, o + S_RESULTS + i * POLICY_VALUE_SIZE, epId, e);
}

function writeSet(dv: DataView, values: Uint8Array, o: number, g: GroupRecord): void {
  const { inline, exact, lpm } = g.layout;
  if (inline.length > INLINE)
    throw new RangeError(
      `policy group of endpoint ${g.epId}: ${inline.length} inline entries, at most ${INLINE}`,
    );
  values[o + S_COUNT] = inline.length;
  values[o + S_FLAGS] = (exact.length > 0 ? PSET_EXACT : 0) | (lpm.length > 0 ? PSET_LPM : 0);
  let lo = 0;
  let hi = 0;
  for (const e of exact) {
    const bit = exactFilterBit(e.protocol, e.port);
    if (bit < 32) lo |= 1 << bit;
    else hi |= 1 << (bit - 32);
  }
  dv.setUint32(o + S_FILTER, lo >>> 0, true);
  dv.setUint32(o + S_FILTER + 4, hi >>> 0, true);
  for (let i = 0; i < inline.length; i++) writeRule(dv, values, o, i, g.epId, inline[i]);
}

// Group keys (and values unless keysOnly).
export function encodeSetBatch(groups: readonly GroupRecord[], keysOnly = false): PolicyBatch {
  const n = groups.length;
  const keys = new Uint8Array(n * SET_KEY_SIZE);
  const values = new Uint8Array(keysOnly ? 0 : n * SET_SIZE);
  const kv = view(keys);
  const vv = view(values);
  for (let i = 0; i < n; i++) {
    const g = groups[i];
    writeSetKeyAt(kv, keys, i * SET_KEY_SIZE, g.epId, g.gen, g.direction, g.identity);
    if (!keysOnly) writeSet(vv, values, i * SET_SIZE, g);
  }
  return { keys, values, count: n };
}

// Records zeroed at a time when reused (about 70 KB of group records: within the L2 cache).
const ZERO_CHUNK = 256;

// Group records written into buffers that grow by doubling, for the map writer's bulk path: a group's
// record opens at its first entry and takes each entry inline as it comes, so no per-group object is
// made. reset() makes a writer reusable (the map writer keeps one across syncs), so a sync touches no
// fresh memory; batches from finish() are views of its buffers, valid until the next reset().
export class SetBatchWriter {
  #keys: Uint8Array;
  #values: Uint8Array;
  #kv: DataView;
  #vv: DataView;
  #count = 0;
  // Records below this index may hold bytes of an earlier run; those from #count up to #clean are zero.
  #dirty = 0;
  #clean = 0;

  // expected: a guess of the record count (growing past it costs a copy).
  constructor(expected: number) {
    this.#keys = new Uint8Array(Math.max(16, expected) * SET_KEY_SIZE);
    this.#values = new Uint8Array(Math.max(16, expected) * SET_SIZE);
    this.#kv = view(this.#keys);
    this.#vv = view(this.#values);
  }

  // Forgets the records written. Their bytes are zeroed again as records are reopened, a chunk ahead:
  // pads and unused inline slots must read as zeroes, as in fresh buffers, and zeroing just before
  // writing touches each cache line once instead of twice.
  reset(): void {
    this.#count = 0;
    this.#clean = 0;
  }

  // Opens the record of a group (epId, gen, direction, identity) whose entries are then put inline one by
  // one (putRule), with no spill so far; returns its index. Together: the bytes encodeSetBatch writes
  // for arrangeGroup's layout, without a layout object.
  open(epId: number, gen: number, direction: Direction, identity: number): number {
    if (this.#count * SET_KEY_SIZE === this.#keys.length) this.#grow();
    const r = this.#count;
    if (r >= this.#clean) {
      const end = Math.min(this.#dirty, r + ZERO_CHUNK);
      if (end > r) {
        this.#keys.fill(0, r * SET_KEY_SIZE, end * SET_KEY_SIZE);
        this.#values.fill(0, r * SET_SIZE, end * SET_SIZE);
        this.#clean = end;
      } else this.#clean = this.#keys.length / SET_KEY_SIZE;
    }
    writeSetKeyAt(this.#kv, this.#keys, r * SET_KEY_SIZE, epId, gen, direction, identity);
    if (this.#dirty <= r) this.#dirty = r + 1;
    return this.#count++;
  }

  // Writes e as inline rule slot of record r, which then holds count rules (slot < count <= INLINE).
  putRule(r: number, slot: number, count: number, epId: number, e: PolicyEntry): void {
    const o = r * SET_SIZE;
    writeRule(this.#vv, this.#values, o, slot, epId, e);
    this.#values[o + S_COUNT] = count;
  }

  // Moves inline rule slot of record r one slot up (room for a more specific entry before it).
  shiftRule(r: number, slot: number): void {
    const rule = r * SET_SIZE + S_RULES + slot * R_SIZE;
    this.#values.copyWithin(rule + R_SIZE, rule, rule + R_SIZE);
    const result = r * SET_SIZE + S_RESULTS + slot * POLICY_VALUE_SIZE;
    this.#values.copyWithin(result + POLICY_VALUE_SIZE, result, result + POLICY_VALUE_SIZE);
  }

  // Rewrites record r (its key stays) as g says: for a group that outgrew the inline rules.
  rewrite(r: number, g: GroupRecord): void {
    const o = r * SET_SIZE;
    this.#values.fill(0, o, o + SET_SIZE);
    writeSet(this.#vv, this.#values, o, g);
  }

  #grow(): void {
    const n = this.#count * 2;
    const keys = new Uint8Array(n * SET_KEY_SIZE);
    const values = new Uint8Array(n * SET_SIZE);
    keys.set(this.#keys);
    values.set(this.#values);
    this.#keys = keys;
    this.#values = values;
    this.#kv = view(keys);
    this.#vv = view(values);
  }

  // Bytes of its buffers (PolicyWriteScratch.bytes).
  get bytes(): number {
    return this.#keys.byteLength + this.#values.byteLength;
  }

  finish(): PolicyBatch {
    return {
      keys: this.#keys.subarray(0, this.#count * SET_KEY_SIZE),
      values: this.#values.subarray(0, this.#count * SET_SIZE),
      count: this.#count,
    };
  }
}

// sl_endpoint_value.any: the wildcard group of each direction among entries (the generation the endpoint
// value activates), the same record sl_pset holds for it.
export function encodeWildcardSets(epId: number, entries: Iterable<PolicyEntry>): Uint8Array {
  const groups: [PolicyEntry[], PolicyEntry[]] = [[], []];
  for (const e of entries) if (e.identity === ID_ANY) groups[dirCode(e.direction)].push(e);
  const out = new Uint8Array(SET_SIZE * 2);
  const dv = view(out);
  for (const direction of ["ingress", "egress"] as const) {
    const d = dirCode(direction);
    if (groups[d].length === 0) continue;
    const layout = arrangeGroup(groups[d], INLINE);
    writeSet(dv, out, d * SET_SIZE, { epId, gen: 0, direction, identity: ID_ANY, layout });
  }
  return out;
}
