// Struct codecs driven by the BTF-generated layouts, and map key construction. No kernel.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  canonicalCidr,
  formatPrefix,
  hostKey,
  hostPrefix,
  parseCidr,
  parseIp,
} from "../../operator/src/policy/cidr.ts";
import * as C from "../../operator/src/datapath/codec/codecs.ts";
import {
  canonicalEntry,
  cidrOfIpcacheKey,
  entryOfPolicy,
  ipcacheKeyOf,
  policyKeyOf,
  policyValueOf,
} from "../../operator/src/datapath/codec/keys.ts";
import { enums, structs } from "../../operator/src/datapath/codec/layout.generated.ts";
import type { PolicyEntry } from "../../operator/src/policy/mapstate.ts";

test("generated layouts match the header's documented sizes", () => {
  assert.equal(structs.sl_policy_key.size, 20);
  assert.equal(structs.sl_policy_key.fields.port.offset, 15);
  assert.equal(structs.sl_ipcache_key.fields.addr.count, 16);
  assert.equal(structs.sl_counter_value.fields.bytes.size, 8);
  assert.equal(enums.sl_policy_prefix.SL_POLICY_PREFIX_PROTO, 88);
});

test("policy key: ids and port big endian, pad zeroed", () => {
  const buf = C.policyKey.encode({
    prefixlen: 104,
    ep_id: 0x01020304,
    identity: 256,
    gen: 1,
    dir: 1,
    proto: 6,
    port: 8080,
  });
  assert.deepEqual([...buf], [104, 0, 0, 0, 1, 2, 3, 4, 0, 0, 1, 0, 1, 1, 6, 0x1f, 0x90, 0, 0, 0]);
  assert.deepEqual(C.policyKey.decode(buf), {
    prefixlen: 104,
    ep_id: 0x01020304,
    identity: 256,
    gen: 1,
    dir: 1,
    proto: 6,
    port: 8080,
  });
});

test("little-endian scalars, u64 as bigint, byte arrays, offsets into a shared buffer", () => {
  const v = { packets: 2n ** 40n + 5n, bytes: 7n };
  const buf = new Uint8Array(40);
  C.counterValue.encode(v, buf, 16);
  assert.deepEqual(C.counterValue.decode(buf, 16), v);
  assert.equal(buf[16], 5);
  const k = ipcacheKeyOf("10.1.2.0/24");
  const kb = C.ipcacheKey.encode(k);
  assert.deepEqual([...kb.subarray(0, 12)], [56, 0, 0, 0, 2, 0, 0, 0, 10, 1, 2, 0]);
  assert.deepEqual(C.ipcacheKey.decode(kb), k);
});

test("encode refuses out-of-range values naming the field", () => {
  assert.throws(
    () =>
      C.endpointValue.encode({
        ep_id: 1,
        identity: 2,
        policy_rev: 3,
        gen: 256,
        flags: 0,
        slot: 0,
        audit_slot: new Uint8Array(4),
        any: new Uint8Array(224),
      }),
    /sl_endpoint_value\.gen/,
  );
  assert.throws(() => C.ipcacheValue.encode({ identity: -1, flags: 0 }), /sl_ipcache_value\.identity/);
  assert.throws(() => C.policyKey.decode(new Uint8Array(3)), /buffer too small/);
});

test("codecs round-trip arbitrary values", () => {
  fc.assert(
    fc.property(
      fc.record({
        ep_id: fc.nat({ max: 0xffffffff }),
        dir: fc.nat({ max: 255 }),
        proto: fc.nat({ max: 255 }),
        sport: fc.nat({ max: 0xffff }),
        dport: fc.nat({ max: 0xffff }),
        saddr: fc.uint8Array({ minLength: 16, maxLength: 16 }),
        daddr: fc.uint8Array({ minLength: 16, maxLength: 16 }),
      }),
      (k) => {
        assert.deepEqual(C.ct6Key.decode(C.ct6Key.encode(k)), { ...k });
        const k4 = { ...k, saddr: k.saddr.slice(0, 4), daddr: k.daddr.slice(0, 4) };
        assert.deepEqual(C.ct4Key.decode(C.ct4Key.encode(k4)), k4);
      },
    ),
  );
});

test("policy key prefix lengths: any protocol, protocol only, port blocks", () => {
  const P = enums.sl_policy_prefix;
  const e = (protocol: number, port: number, portPrefixLen: number): PolicyEntry => ({
    direction: "ingress",
    identity: 300,
    protocol,
    port,
    portPrefixLen,
    verdict: "allow",
    ruleId: 9,
  });
  assert.equal(policyKeyOf(1, 0, e(0, 80, 16)).prefixlen, P.SL_POLICY_PREFIX_FIXED);
  assert.equal(policyKeyOf(1, 0, e(0, 80, 16)).port, 0);
  assert.equal(policyKeyOf(1, 0, e(6, 0, 0)).prefixlen, P.SL_POLICY_PREFIX_PROTO);
  assert.equal(policyKeyOf(1, 0, e(6, 80, 16)).prefixlen, P.SL_POLICY_PREFIX_FULL);
  const block = policyKeyOf(7, 1, e(17, 8191, 13));
  assert.deepEqual([block.prefixlen, block.port, block.ep_id, block.gen, block.dir], [101, 8184, 7, 1, 0]);
  assert.throws(() => policyKeyOf(1, 0, e(6, 80, 17)), /portPrefixLen/);
  fc.assert(
    fc.property(
      fc.constantFrom(0, 1, 6, 17, 58, 132),
      fc.nat({ max: 0xffff }),
      fc.nat({ max: 16 }),
      fc.constantFrom<"allow" | "deny">("allow", "deny"),
      (protocol, port, len, verdict) => {
        const entry = { ...e(protocol, port, len), verdict };
        const k = policyKeyOf(3, 0, entry);
        assert.deepEqual(
          entryOfPolicy(C.policyKey.decode(C.policyKey.encode(k)), policyValueOf(entry)),
          canonicalEntry(entry),
        );
      },
    ),
  );
});

test("hostKey: the host prefix text of an address, as parseIp and formatPrefix give it, without them for dotted quads", () => {
  const slow = (t: string) => {
    const ip = parseIp(t);
    return ip && formatPrefix(hostPrefix(ip));
  };
  for (const t of [
    "10.1.2.3",
    "0.0.0.0",
    "255.255.255.255",
    "010.1.2.3",
    "1.2.3.256",
    "1.2.3",
    "1.2.3.4.5",
    "1..2.3",
    ".1.2.3",
    "1.2.3.",
    "",
    "1.2.3.4 ",
    "fd00::1",
    "FD00:0::1",
    "::ffff:1.2.3.4",
    "x",
  ])
    assert.equal(hostKey(t), slow(t), t);
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.integer({ min: 0, max: 300 }), fc.constantFrom("00", "01", "")), {
        minLength: 3,
        maxLength: 5,
      }),
      (parts) => {
        const t = parts.join(".");
        assert.equal(hostKey(t), slow(t), t);
      },
    ),
  );
});

test("CIDRs: parse, canonicalize, ipcache key round trip", () => {
  assert.equal(canonicalCidr("10.1.2.3/8"), "10.0.0.0/8");
  assert.equal(canonicalCidr("10.1.2.3"), "10.1.2.3/32");
  assert.equal(canonicalCidr("FD00:0:0:0::1/64"), "fd00::/64");
  assert.equal(canonicalCidr("::ffff:1.2.3.4/128"), "::ffff:102:304/128");
  assert.equal(canonicalCidr("2001:db8::1:0:0:1"), "2001:db8::1:0:0:1/128");
  assert.equal(canonicalCidr("0.0.0.0/0"), "0.0.0.0/0");
  assert.throws(() => parseCidr("10.0.0.0/33"), /prefix length/);
  assert.throws(() => parseCidr("10.0.0/8"), /bad address/);
  assert.throws(() => parseCidr("10.0.0.0/8x"), /prefix length/);
  for (const c of ["10.0.0.0/8", "fd00:1::/64", "::/0", "1.2.3.4/32", "2001:db8::/32"])
    assert.equal(cidrOfIpcacheKey(C.ipcacheKey.decode(C.ipcacheKey.encode(ipcacheKeyOf(c)))), c);
  assert.equal(ipcacheKeyOf("fd00::/64").prefixlen, 96);
  assert.equal(formatPrefix(parseCidr("1:2:3:4:5:6:7:8/128")), "1:2:3:4:5:6:7:8/128");
});
