// The compiler keeps its own copies of the reserved identities and protocol numbers (it must not import
// the datapath layout; policy-boundary.test.ts), and bpf/include/sluice_shared.h defines them for the
// programs. This test holds every one of them to the BTF-generated layout (scripts/gen-layout.mjs ->
// layout.generated.ts), both ways, so a drift on either side fails here. No kernel.
import assert from "node:assert/strict";
import { test } from "node:test";
import { enums } from "../../operator/src/datapath/codec/layout.generated.ts";
import { Protocol, ReservedIdentity } from "../../operator/src/policy/mapstate.ts";

// Compiler name NAME <-> header name prefix + NAME.
function compare(what: string, ours: Record<string, number>, header: Record<string, number>, prefix: string) {
  const mine = Object.fromEntries(Object.entries(ours).map(([k, v]) => [prefix + k, v]));
  assert.deepEqual(mine, { ...header }, `${what}: policy/mapstate.ts and sluice_shared.h differ`);
}

test("reserved identities: policy/mapstate.ts ReservedIdentity = enum sl_identity", () => {
  compare("ReservedIdentity", ReservedIdentity, enums.sl_identity, "SL_ID_");
});

test("protocols: policy/mapstate.ts Protocol = enum sl_proto", () => {
  compare("Protocol", Protocol, enums.sl_proto, "SL_PROTO_");
});

test("the comparison notices a drift", () => {
  assert.throws(() => compare("x", { ...ReservedIdentity, WORLD: 7 }, enums.sl_identity, "SL_ID_"));
  assert.throws(() => compare("x", { ...Protocol, GRE: 47 }, enums.sl_proto, "SL_PROTO_"));
});
