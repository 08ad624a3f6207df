// Policy records encoded the slow, obvious way: through the generic StructCodecs of the generated
// layout, one field at a time. The fast encoder's tests and the map-sync benchmark compare against it.
import * as C from "../../operator/src/datapath/codec/codecs.ts";
import { policyValueOf } from "../../operator/src/datapath/codec/keys.ts";
import type { GroupLayout } from "../../operator/src/datapath/writer/group-arrangement.ts";
import { exactFilterBit, INLINE } from "../../operator/src/datapath/writer/policy-encoder.ts";
import type { PolicyEntry } from "../../operator/src/policy/mapstate.ts";

export function portMask(e: PolicyEntry): number {
  return e.protocol === 0 || e.portPrefixLen === 0 ? 0 : (0xffff << (16 - e.portPrefixLen)) & 0xffff;
}

/** The sl_pset record of one group (epId, gen, direction, identity) arranged as layout. */
export function referenceSetRecord(
  epId: number,
  gen: number,
  direction: "ingress" | "egress",
  identity: number,
  layout: GroupLayout,
): { key: Uint8Array; value: Uint8Array } {
  const key = C.policySetKey.encode({ ep_id: epId, identity, gen, dir: direction === "ingress" ? 0 : 1 });
  const rules = new Uint8Array(INLINE * C.policyRule.size);
  const results = new Uint8Array(INLINE * C.policyValue.size);
  // A rule word's bytes: port (network order), protocol, 0; read as the host's little-endian u32.
  const word = (port: number, proto: number) =>
    new DataView(new Uint8Array([port >> 8, port & 0xff, proto, 0]).buffer).getUint32(0, true);
  layout.inline.forEach((e, i) => {
    const mask = portMask(e);
    C.policyRule.encode(
      { match: word(e.port & mask, e.protocol), mask: word(mask, e.protocol === 0 ? 0 : 0xff) },
      rules,
      i * C.policyRule.size,
    );
    C.policyValue.encode(policyValueOf(e), results, i * C.policyValue.size);
  });
  const flags = (layout.exact.length > 0 ? 1 : 0) | (layout.lpm.length > 0 ? 2 : 0);
  let filter = 0n;
  for (const e of layout.exact) filter |= 1n << BigInt(exactFilterBit(e.protocol, e.port));
  return {
    key,
    value: C.policySet.encode({ count: layout.inline.length, flags, exact_filter: filter, rules, results }),
  };
}
