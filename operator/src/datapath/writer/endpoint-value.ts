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
    any: encodeWildcardSets(rec.id, active),
  };
}

// Whether a value read back carries the wildcard groups of active (an older agent, or a write cut short,
// may have left others).
export function wildcardsMatch(v: EndpointValue, active: Iterable<PolicyEntry>): boolean {
  const want = encodeWildcardSets(v.ep_id, active);
  return want.length === v.any.length && want.every((b, i) => b === v.any[i]);
}
