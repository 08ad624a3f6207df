// The specialised policy batch encoders (the map writer's path) against the generic StructCodecs: the
// same bytes for random entries and groups, and the same refusals. No kernel.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import * as C from "../../operator/src/datapath/codec/codecs.ts";
import { canonicalEntry, policyKeyOf, policyValueOf } from "../../operator/src/datapath/codec/keys.ts";
import {
  encodeExactBatch,
  encodeLpmBatch,
  encodeSetBatch,
  type GroupRecord,
  INLINE,
  POLICY_KEY_SIZE,
  POLICY_VALUE_SIZE,
  type PolicyEntryRef,
} from "../../operator/src/datapath/writer/policy-encoder.ts";
import { PolicyWriteScratch, policyRecordBatches } from "../../operator/src/datapath/writer/policy-store.ts";
import { referenceSetRecord } from "../support/policy-reference.ts";
import { arrangeGroup, searchGroup } from "../../operator/src/datapath/writer/group-arrangement.ts";
import { lookupVerdict } from "../../operator/src/policy/lookup.ts";
import { type PolicyEntry, policyEntryKey } from "../../operator/src/policy/mapstate.ts";

// A valid entry that the refusal tests break one field at a time.
const base: PolicyEntry = {
  direction: "ingress",
  identity: 300,
  protocol: 6,
  port: 80,
  portPrefixLen: 16,
  verdict: "allow",
  ruleId: 1,
};

const u32 = fc.oneof(fc.nat({ max: 0xffffffff }), fc.constantFrom(0, 1, 255, 256, 0x7fffffff, 0xffffffff));

const entry: fc.Arbitrary<PolicyEntry> = fc.record({
  direction: fc.constantFrom<"ingress" | "egress">("ingress", "egress"),
  identity: u32,
  protocol: fc.oneof(fc.constantFrom(0, 1, 6, 17, 58, 132), fc.nat({ max: 255 })),
  port: fc.nat({ max: 0xffff }),
  portPrefixLen: fc.nat({ max: 16 }),
  verdict: fc.constantFrom<"allow" | "deny">("allow", "deny"),
  ruleId: u32,
});

const ref: fc.Arbitrary<PolicyEntryRef> = fc.record({ epId: u32, gen: fc.constantFrom(0, 1), entry });

function generic(refs: readonly PolicyEntryRef[]): { keys: Uint8Array; values: Uint8Array } {
  const keys = new Uint8Array(refs.length * C.policyKey.size);
  const values = new Uint8Array(refs.length * C.policyValue.size);
  refs.forEach((r, i) => {
    C.policyKey.encode(policyKeyOf(r.epId, r.gen, r.entry), keys, i * C.policyKey.size);
    C.policyValue.encode(policyValueOf(r.entry), values, i * C.policyValue.size);
  });
  return { keys, values };
}

test("encoder sizes are the codecs' (both from the generated layout)", () => {
  assert.equal(POLICY_KEY_SIZE, C.policyKey.size);
  assert.equal(POLICY_VALUE_SIZE, C.policyValue.size);
});

test("same bytes as the generic codec for random batches", () => {
  fc.assert(
    fc.property(fc.array(ref, { maxLength: 64 }), (refs) => {
      const want = generic(refs);
      const got = encodeLpmBatch(refs);
      assert.equal(got.count, refs.length);
      assert.deepEqual(got.keys, want.keys);
      assert.deepEqual(got.values, want.values);
      const keysOnly = encodeLpmBatch(refs, true);
      assert.deepEqual(keysOnly.keys, want.keys);
      assert.equal(keysOnly.values.length, 0);
    }),
    { numRuns: 500 },
  );
});

test("refuses what the generic path refuses, naming the field", () => {
  const bad: [Partial<PolicyEntry>, number, RegExp][] = [
    [{ protocol: 256 }, 1, /protocol 256/],
    [{ protocol: -1 }, 1, /protocol -1/],
    [{ portPrefixLen: 17 }, 1, /portPrefixLen/],
    [{ port: 65536 }, 1, /port 65536/],
    [{ identity: -1 }, 1, /identity -1/],
    [{ identity: 2 ** 32 }, 1, /identity/],
    [{ ruleId: 1.5 }, 1, /rule id 1.5/],
    [{}, -1, /endpoint id -1/],
  ];
  for (const [patch, epId, re] of bad) {
    const r = { epId, gen: 0, entry: { ...base, ...patch } };
    assert.throws(() => encodeLpmBatch([r]), re, JSON.stringify(patch));
    assert.throws(() => generic([r]));
  }
  assert.throws(() => encodeLpmBatch([{ epId: 1, gen: 2, entry: base }]), /generation 2/);
});

// A group's record through the generic codecs: key, then value with the rules encoded one by one.
function genericSet(g: GroupRecord): { key: Uint8Array; value: Uint8Array } {
  return referenceSetRecord(g.epId, g.gen, g.direction, g.identity, g.layout);
}

test("group records: same bytes as the generic codecs, for groups inline and spilled", () => {
  const group = fc
    .record({
      epId: u32,
      gen: fc.constantFrom(0, 1),
      direction: fc.constantFrom<"ingress" | "egress">("ingress", "egress"),
      identity: u32,
      entries: fc.array(entry, { minLength: 1, maxLength: 3 * INLINE }),
    })
    .map(
      (g): GroupRecord => ({
        epId: g.epId,
        gen: g.gen,
        direction: g.direction,
        identity: g.identity,
        layout: arrangeGroup(g.entries, INLINE),
      }),
    );
  fc.assert(
    fc.property(fc.array(group, { maxLength: 16 }), (groups) => {
      const got = encodeSetBatch(groups);
      const keys = encodeSetBatch(groups, true);
      groups.forEach((g, i) => {
        const want = genericSet(g);
        const ks = C.policySetKey.size;
        const vs = C.policySet.size;
        assert.deepEqual(got.keys.subarray(i * ks, (i + 1) * ks), want.key);
        assert.deepEqual(keys.keys.subarray(i * ks, (i + 1) * ks), want.key);
        assert.deepEqual(got.values.subarray(i * vs, (i + 1) * vs), want.value);
      });
    }),
    { numRuns: 300 },
  );
});

test("exact keys: same bytes as the generic codec; only full-port entries", () => {
  const full = ref
    .filter((r) => r.entry.protocol !== 0)
    .map((r) => ({ ...r, entry: { ...r.entry, portPrefixLen: 16 } }));
  fc.assert(
    fc.property(fc.array(full, { maxLength: 32 }), (refs) => {
      const got = encodeExactBatch(refs);
      refs.forEach((r, i) => {
        const ks = C.policyExactKey.size;
        const key = C.policyExactKey.encode({
          ep_id: r.epId,
          identity: r.entry.identity,
          gen: r.gen,
          dir: r.entry.direction === "ingress" ? 0 : 1,
          proto: r.entry.protocol,
          port: r.entry.port,
        });
        assert.deepEqual(got.keys.subarray(i * ks, (i + 1) * ks), key);
        const vs = C.policyValue.size;
        assert.deepEqual(
          got.values.subarray(i * vs, (i + 1) * vs),
          C.policyValue.encode(policyValueOf(r.entry)),
        );
      });
    }),
    { numRuns: 300 },
  );
  const e: PolicyEntry = {
    direction: "ingress",
    identity: 1,
    protocol: 6,
    port: 80,
    portPrefixLen: 8,
    verdict: "allow",
    ruleId: 1,
  };
  assert.throws(() => encodeExactBatch([{ epId: 1, gen: 0, entry: e }]), /not a full-port entry/);
});

// Records of a batch as a key -> value map, order aside.
function records(b: { keys: Uint8Array; values: Uint8Array; count: number }): Map<string, string> {
  const ks = b.keys.length / Math.max(1, b.count);
  const vs = b.values.length / Math.max(1, b.count);
  const out = new Map<string, string>();
  for (let i = 0; i < b.count; i++)
    out.set(
      Buffer.from(b.keys.subarray(i * ks, (i + 1) * ks)).toString("hex"),
      Buffer.from(b.values.subarray(i * vs, (i + 1) * vs)).toString("hex"),
    );
  return out;
}

test("bulk writes: the streaming path gives the records of the general one", () => {
  // Few identities, so that groups grow past the inline capacity and spill.
  const canonical = entry.map((e) => canonicalEntry({ ...e, identity: [0, 300, 301][e.identity % 3] }));
  const none = new Map<string, PolicyEntry>();
  let spilled = 0;
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.nat({ max: 3 }),
          fc.constantFrom<0 | 1>(0, 1),
          fc.array(canonical, { minLength: 4 * INLINE, maxLength: 8 * INLINE }),
        ),
        {
          maxLength: 4,
        },
      ),
      (runs) => {
        // One run per endpoint generation, unique keys within it, as the planner emits them.
        const seen = new Set<string>();
        const writes = runs.flatMap(([epId, gen, entries]) => {
          if (seen.has(`${epId}|${gen}`)) return [];
          seen.add(`${epId}|${gen}`);
          const unique = new Map(entries.map((e) => [policyEntryKey(e), e]));
          return [...unique.values()].map((e) => ({ epId, gen, entry: e }));
        });
        const bulk = policyRecordBatches(() => none, [], writes);
        const general = policyRecordBatches(() => none, [], writes, { bulk: false });
        for (const k of ["setPut", "exactPut", "lpmPut"] as const)
          assert.deepEqual(records(bulk[k]), records(general[k]), k);
        // Into empty generations every record is new: both paths count each put once.
        const puts = { sets: bulk.setPut.count, exact: bulk.exactPut.count, lpm: bulk.lpmPut.count };
        assert.deepEqual(bulk.added, puts, "bulk path's record count");
        assert.deepEqual(general.added, puts, "general path's record count");
        spilled += bulk.exactPut.count + bulk.lpmPut.count;
      },
    ),
    { numRuns: 200 },
  );
  assert.ok(spilled > 0, "some groups spilled");
});

// Writes as the planner emits them: one run per endpoint generation, unique keys within it.
function plannerWrites(
  runs: [number, 0 | 1, PolicyEntry[]][],
): { epId: number; gen: 0 | 1; entry: PolicyEntry }[] {
  const seen = new Set<string>();
  return runs.flatMap(([epId, gen, entries]) => {
    if (seen.has(`${epId}|${gen}`)) return [];
    seen.add(`${epId}|${gen}`);
    const unique = new Map(entries.map((e) => [policyEntryKey(e), e]));
    return [...unique.values()].map((e) => ({ epId, gen, entry: e }));
  });
}

const BATCHES = ["setDel", "exactDel", "lpmDel", "setPut", "exactPut", "lpmPut"] as const;

test("bulk writes with a reused scratch: the bytes of a fresh one, the records of the general path", () => {
  // From one identity (big groups that spill) to many (many small groups, the hash grows).
  const run = fc.tuple(
    fc.nat({ max: 3 }),
    fc.constantFrom<0 | 1>(0, 1),
    fc.integer({ min: 1, max: 400 }),
    fc.array(entry, { minLength: 1, maxLength: 300 }),
  );
  const scratch = new PolicyWriteScratch();
  const none = new Map<string, PolicyEntry>();
  let grouped = 0;
  fc.assert(
    fc.property(fc.array(run, { minLength: 1, maxLength: 4 }), (runs) => {
      const writes = plannerWrites(
        runs.map(([epId, gen, identities, entries]) => [
          epId,
          gen,
          entries.map((e) => canonicalEntry({ ...e, identity: 300 + (e.identity % identities) })),
        ]),
      );
      const fresh = policyRecordBatches(() => none, [], writes);
      const general = policyRecordBatches(() => none, [], writes, { bulk: false });
      const reused = policyRecordBatches(() => none, [], writes, { scratch });
      for (const k of BATCHES) {
        assert.deepEqual(reused[k].keys, fresh[k].keys, k);
        assert.deepEqual(reused[k].values, fresh[k].values, k);
        assert.equal(reused[k].count, fresh[k].count, k);
        assert.deepEqual(records(reused[k]), records(general[k]), k);
      }
      grouped += reused.setPut.count;
    }),
    { numRuns: 150 },
  );
  assert.ok(grouped > 1000, "many groups written");
});

test("bulk writes with a reused scratch: runs of hundreds of groups, bigger and smaller than the last", () => {
  const scratch = new PolicyWriteScratch();
  const none = new Map<string, PolicyEntry>();
  for (const [groups, port] of [
    [600, 80],
    [300, 443],
    [900, 8080],
    [5, 53],
  ]) {
    const entries: PolicyEntry[] = [];
    for (let g = 0; g < groups; g++)
      for (let k = 0; k < 1 + ((g + port) % 3); k++)
        entries.push(
          canonicalEntry({
            direction: "ingress",
            identity: 1000 + g,
            protocol: 6,
            port: port + k,
            portPrefixLen: 16 - k,
            verdict: "allow",
            ruleId: g,
          }),
        );
    const writes = plannerWrites([[1, 0, entries]]);
    const fresh = policyRecordBatches(() => none, [], writes);
    const reused = policyRecordBatches(() => none, [], writes, { scratch });
    assert.equal(reused.setPut.count, groups);
    for (const k of BATCHES) assert.deepEqual(reused[k], fresh[k], `${groups} groups: ${k}`);
  }
});

test("bulk writes: thousands of groups in one run, in random order, grow the hash", () => {
  const entries: PolicyEntry[] = [];
  for (let id = 0; id < 3000; id++)
    for (let p = 0; p < 1 + (id % (3 * INLINE)); p++)
      entries.push({
        direction: p % 3 === 0 ? "egress" : "ingress",
        identity: 1000 + id,
        protocol: p % 4 === 0 ? 17 : 6,
        port: 8000 - 7 * p,
        portPrefixLen: 16,
        verdict: p % 2 === 0 ? "allow" : "deny",
        ruleId: id * 16 + p,
      });
  // A fixed shuffle (no Math.random: a failure must be reproducible).
  let x = 12345;
  for (let i = entries.length - 1; i > 0; i--) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const j = x % (i + 1);
    [entries[i], entries[j]] = [entries[j], entries[i]];
  }
  const writes = plannerWrites([[7, 1, entries]]);
  const none = new Map<string, PolicyEntry>();
  const scratch = new PolicyWriteScratch();
  const bulk = policyRecordBatches(() => none, [], writes, { scratch });
  const general = policyRecordBatches(() => none, [], writes, { bulk: false });
  assert.ok(bulk.setPut.count > 4000);
  assert.ok(bulk.exactPut.count > 0);
  for (const k of BATCHES) assert.deepEqual(records(bulk[k]), records(general[k]), k);
});

test("bulk writes refuse what the general path refuses; identities past the numeric key take it", () => {
  const none = new Map<string, PolicyEntry>();
  const bad: [Partial<PolicyEntry>, number, RegExp][] = [
    [{ protocol: 256 }, 1, /protocol 256/],
    [{ portPrefixLen: 17 }, 1, /portPrefixLen/],
    [{ port: 65536 }, 1, /port 65536/],
    [{ identity: 2 ** 32 }, 1, /identity/],
    [{ ruleId: -1 }, 1, /rule id -1/],
    [{}, -1, /endpoint -1/],
  ];
  const scratch = new PolicyWriteScratch();
  for (const [patch, epId, re] of bad) {
    const writes = [
      { epId, gen: 0 as const, entry: { ...base, port: 81 } },
      { epId, gen: 0 as const, entry: { ...base, ...patch } },
    ];
    assert.throws(() => policyRecordBatches(() => none, [], writes, { scratch }), re, JSON.stringify(patch));
    assert.throws(() => policyRecordBatches(() => none, [], writes, { bulk: false }), re);
  }
  const big = [{ epId: 1, gen: 0 as const, entry: { ...base, identity: 2 ** 24 + 5 } }];
  const a = policyRecordBatches(() => none, [], big, { scratch });
  const b = policyRecordBatches(() => none, [], big, { bulk: false });
  assert.deepEqual(records(a.setPut), records(b.setPut));
});

// The longest-prefix answer over a group, by brute force: the oracle the arrangement must keep.
function longest(entries: readonly PolicyEntry[], proto: number, port: number): PolicyEntry | undefined {
  let best: PolicyEntry | undefined;
  let bestLen = -1;
  for (const e of entries) {
    const len = e.protocol === 0 ? 0 : 1 + e.portPrefixLen;
    const mask = e.protocol === 0 || e.portPrefixLen === 0 ? 0 : (0xffff << (16 - e.portPrefixLen)) & 0xffff;
    const hit = e.protocol === 0 || (e.protocol === proto && (port & mask) === (e.port & mask));
    if (hit && len > bestLen) {
      best = e;
      bestLen = len;
    }
  }
  return best;
}

test("group arrangement (inline, exact spill, LPM spill) keeps the longest-prefix answer", () => {
  const groupEntry = fc.record({
    direction: fc.constant<"ingress">("ingress"),
    identity: fc.constant(300),
    protocol: fc.constantFrom(0, 6, 17),
    port: fc.integer({ min: 990, max: 1040 }),
    portPrefixLen: fc.constantFrom(0, 10, 12, 14, 15, 16, 16, 16),
    verdict: fc.constantFrom<"allow" | "deny">("allow", "deny"),
    ruleId: fc.nat({ max: 1000 }),
  });
  fc.assert(
    fc.property(
      fc.array(groupEntry, { maxLength: 4 * INLINE }),
      fc.array(fc.integer({ min: 980, max: 1050 }), { minLength: 1, maxLength: 20 }),
      (raw, ports) => {
        const unique = [
          ...new Map(raw.map((e) => canonicalEntry(e)).map((e) => [policyEntryKey(e), e])).values(),
        ];
        const policy = { defaultDeny: { ingress: true, egress: false }, entries: unique };
        for (const proto of [6, 17, 1])
          for (const port of ports) {
            const want = longest(unique, proto, port);
            const got = lookupVerdict(policy, "ingress", 300, proto, port);
            assert.equal(got.entry, want, `${proto}/${port}`);
            // The maps' arrangement of the group, searched as the program searches it.
            const arranged = searchGroup(arrangeGroup(unique, INLINE), proto, port);
            assert.equal(arranged, want, `arranged ${proto}/${port}`);
          }
      },
    ),
    { numRuns: 300 },
  );
});
