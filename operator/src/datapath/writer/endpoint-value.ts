// The endpoint value (bpf/include/sluice_shared.h, struct sl_endpoint_value) of a planned endpoint
// record: the record's fields and the wildcard groups of the generation it activates.
import type { PolicyEntry } from "../../policy/mapstate.ts";
import type { EndpointValue } from "../codec/codecs.ts";
import { encodeWildcardSets } from "./policy-encoder.ts";
import type { EndpointRecord } from "./sync-plan.ts";

// active: the entries of generation rec.gen, which the value switches the endpoint to.
export function endpointValueOf(rec: EndpointRecord, active: Iterable<PolicyEntry>): EndpointValue {
  return {
    ep_id: rec.id,
    identity: rec.identity,
    policy_rev: rec.policyRev,
    gen: rec.gen,
    flags: rec.flags,
    slot: rec.slot,
    audit_slot: auditSlotBytes(rec.auditSlot),
    any: encodeWildcardSets(rec.id, active),
  };
}

// sl_endpoint_value.audit_slot (__u16[2] by direction) as the codec holds it: its bytes, little-endian.
export function auditSlotBytes(slots: readonly [number, number]): Uint8Array {
  const out = new Uint8Array(4);
  const dv = new DataView(out.buffer);
  for (const [i, s] of slots.entries()) {
    if ((s & 0xffff) !== s)
      throw new RangeError(`endpoint audit counter slot ${s} is not a 16-bit unsigned integer`);
    dv.setUint16(i * 2, s, true);
  }
  return out;
}

export function auditSlotOfBytes(b: Uint8Array): [number, number] {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return [dv.getUint16(0, true), dv.getUint16(2, true)];
}

// Whether a value read back carries the wildcard groups of active (an older agent, or a write cut short,
// may have left others).
export function wildcardsMatch(v: EndpointValue, active: Iterable<PolicyEntry>): boolean {
  const want = encodeWildcardSets(v.ep_id, active);
  return want.length === v.any.length && want.every((b, i) => b === v.any[i]);
}
