// The map writer against the real datapath maps (bpf/build/sluice.bpf.o), pinned under a unique root.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type BpfAddon, repoRoot } from "../../operator/src/datapath/kernel/bpf-addon.ts";
import { wildcardsMatch } from "../../operator/src/datapath/writer/endpoint-value.ts";
import { enums } from "../../operator/src/datapath/codec/layout.generated.ts";
import { counterIndex } from "../../operator/src/datapath/kernel/maps.ts";
import { verdictCounterIndex } from "../../operator/src/datapath/kernel/verdicts.ts";
import {
  encodeExactBatch,
  encodeLpmBatch,
  INLINE,
} from "../../operator/src/datapath/writer/policy-encoder.ts";
import { countPolicyEntries, writePolicyChanges } from "../../operator/src/datapath/writer/policy-store.ts";
import { type Datapath, loadDatapath } from "../../operator/src/datapath/kernel/programs.ts";
import {
  MapSync,
  readApplied,
  SCRATCH_KEPT_BYTES,
  viewApplied,
} from "../../operator/src/datapath/writer/sync.ts";
import type { EndpointState, MapState, PolicyEntry } from "../../operator/src/policy/mapstate.ts";
import { policyEntryKey } from "../../operator/src/policy/mapstate.ts";
import { privilegeProblem, requirePrivileged } from "../support/privileged.ts";
import { addon, pinRoot } from "./addon-rig.ts";

const IFINDEX_BASE = 900000; // endpoint keys only; no interface is needed to exercise the maps
const ifindexOf = (ep: EndpointState) => IFINDEX_BASE + ep.id;

function entry(
  direction: "ingress" | "egress",
  identity: number,
  protocol: number,
  port: number,
  portPrefixLen: number,
  verdict: "allow" | "deny",
  ruleId: number,
): PolicyEntry {
  return { direction, identity, protocol, port, portPrefixLen, verdict, ruleId };
}

function ep(
  id: number,
  identity: number,
  entries: PolicyEntry[],
  ingress = true,
  egress = false,
): EndpointState {
  return { key: `ns/pod-${id}`, id, identity, policy: { defaultDeny: { ingress, egress }, entries } };
}

const A: MapState = {
  ipcache: [
    { cidr: "10.0.0.0/24", identity: 300 },
    { cidr: "10.0.1.5/32", identity: 301 },
    { cidr: "fd00:1::/64", identity: 302 },
  ],
  endpoints: [
    ep(1, 300, [entry("ingress", 301, 6, 80, 16, "allow", 1), entry("ingress", 0, 17, 0, 0, "deny", 2)]),
    ep(2, 301, [entry("egress", 300, 0, 0, 0, "allow", 3)], false, true),
  ],
};

const B: MapState = {
  ipcache: [
    { cidr: "10.0.0.0/24", identity: 303 },
    { cidr: "fd00:1::/64", identity: 302 },
    { cidr: "192.168.0.0/16", identity: 304 },
  ],
  endpoints: [
    ep(1, 300, [
      entry("ingress", 301, 6, 80, 16, "allow", 1),
      entry("ingress", 303, 6, 8080, 13, "allow", 4),
      entry("egress", 2, 0, 0, 0, "deny", 5),
    ]),
    ep(3, 305, [entry("ingress", 304, 132, 9000, 16, "allow", 6)], true, true),
  ],
};

// What the maps must hold for a MapState, computed from the MapState alone.
function expected(s: MapState) {
  return {
    ipcache: s.ipcache
      .map((e) => ({ cidr: e.cidr, identity: e.identity }))
      .sort((x, y) => (x.cidr < y.cidr ? -1 : 1)),
    endpoints: s.endpoints
      .map((e) => ({
        ifindex: ifindexOf(e),
        id: e.id,
        identity: e.identity,
        defaultDeny: e.policy.defaultDeny,
        entries: [...e.policy.entries].sort((x, y) => (policyEntryKey(x) < policyEntryKey(y) ? -1 : 1)),
        inactiveMatches: true,
      }))
      .sort((x, y) => x.ifindex - y.ifindex),
    orphanPolicyIds: [],
  };
}

function comparable(dp: Datapath) {
  const v = viewApplied(readApplied(dp.maps));
  return { ...v, endpoints: v.endpoints.map(({ gen: _g, policyRev: _r, ...rest }) => rest) };
}

function endpointValue(dp: Datapath, id: number) {
  return dp.maps.endpoints.get({ ifindex: IFINDEX_BASE + id });
}

const skip = privilegeProblem() !== undefined && process.env.CI !== "true";

describe("map sync", { skip: skip ? privilegeProblem() : false }, () => {
  let root: ReturnType<typeof pinRoot>;
  let dp: Datapath;
  let a: BpfAddon;

  before(() => {
    a = addon();
    root = pinRoot();
    dp = loadDatapath({ pinRoot: root.path, addon: a });
  });
  after(() => {
    dp?.close();
    root?.remove();
  });

  test("apply A, then B: read back equals the state, one flip per changed endpoint", (t) => {
    if (!requirePrivileged(t)) return;
    const sync = MapSync.adopt(a, dp.maps);
    assert.equal(sync.applied.endpoints.size, 0);
    const r1 = sync.apply(A, ifindexOf);
    assert.equal(r1.flips, 2);
    assert.deepEqual(comparable(dp), expected(A));
    const e1 = endpointValue(dp, 1)!;
    // Default deny, and the audited default alike (no Audit policy): SL_EP_AUDIT_DENY_* = DEFAULT_DENY_* << 3.
    assert.deepEqual([e1.gen, e1.policy_rev, e1.flags], [0, 1, 1 | 8]);
    assert.equal(endpointValue(dp, 2)!.flags, 2 | 16);
    // Both generations hold the policy: 2 x entries.
    assert.equal(countPolicyEntries(dp.maps), 2 * 3);

    const r2 = sync.apply(B, ifindexOf);
    assert.equal(r2.flips, 2, "endpoint 1 changed, endpoint 3 is new");
    assert.equal(r2.endpointsDeleted, 1);
    assert.deepEqual(comparable(dp), expected(B));
    const e1b = endpointValue(dp, 1)!;
    assert.deepEqual(
      [e1b.gen, e1b.policy_rev],
      [1, 2],
      "generation flipped exactly once, revision bumped once",
    );
    assert.equal(endpointValue(dp, 2), undefined);
    assert.equal(countPolicyEntries(dp.maps), 2 * 4);

    const r3 = sync.apply(B, ifindexOf);
    assert.deepEqual(
      [
        r3.flips,
        r3.policyWritten,
        r3.policyDeleted,
        r3.endpointsWritten,
        r3.ipcacheWritten,
        r3.ipcacheDeleted,
      ],
      [0, 0, 0, 0, 0, 0],
    );
    assert.deepEqual([endpointValue(dp, 1)!.gen, endpointValue(dp, 1)!.policy_rev], [1, 2]);
  });

  test("a restarted agent adopts the maps and computes a delta, not a rewrite", (t) => {
    if (!requirePrivileged(t)) return;
    const second = loadDatapath({ pinRoot: root.path, addon: a });
    try {
      const before = viewApplied(readApplied(dp.maps));
      const sync = MapSync.adopt(a, second.maps);
      assert.deepEqual(viewApplied(sync.applied), before);
      const r = sync.apply(B, ifindexOf);
      assert.deepEqual([r.flips, r.policyWritten, r.policyDeleted, r.endpointsWritten], [0, 0, 0, 0]);
      // A change after adoption is a single flip from the adopted generation.
      const B2: MapState = {
        ...B,
        endpoints: [B.endpoints[0], { ...B.endpoints[1], policy: { ...B.endpoints[1].policy, entries: [] } }],
      };
      const r2 = sync.apply(B2, ifindexOf);
      assert.equal(r2.flips, 1);
      assert.deepEqual(comparable(second), expected(B2));
      sync.apply(B, ifindexOf);
      assert.deepEqual(comparable(dp), expected(B));
    } finally {
      second.close();
    }
  });

  test("an inactive generation left stale by an interrupted sync is repaired without a flip", (t) => {
    if (!requirePrivileged(t)) return;
    const e1 = endpointValue(dp, 1)!;
    const inactive = e1.gen === 0 ? 1 : 0;
    const stray = entry("ingress", 999, 6, 22, 16, "allow", 77);
    const held = readApplied(dp.maps).policy;
    const none = new Map<string, PolicyEntry>();
    writePolicyChanges(
      dp.maps,
      (id, g) => held.get(id)?.[g] ?? none,
      [],
      [{ epId: 1, gen: inactive, entry: stray }],
    );
    // And a spilled record no group points at, as a write interrupted half way leaves it.
    const unreachable = entry("ingress", 998, 6, 23, 16, "allow", 78);
    const x = encodeExactBatch([{ epId: 1, gen: inactive, entry: unreachable }]);
    dp.maps.policyExact.setManyRaw(x.keys, x.values, 1);
    const unreachableLpm = entry("ingress", 997, 6, 1024, 6, "allow", 79);
    const l = encodeLpmBatch([{ epId: 1, gen: inactive, entry: unreachableLpm }]);
    dp.maps.policyLpm.setManyRaw(l.keys, l.values, 1);
    assert.equal(dp.maps.policyLpm.count(), 1);
    const sync = MapSync.adopt(a, dp.maps);
    assert.equal(dp.maps.policyExact.count(), 0, "the unreachable record was removed on adoption");
    assert.equal(dp.maps.policyLpm.count(), 0, "the unreachable LPM record was removed on adoption");
    const r = sync.apply(B, ifindexOf);
    assert.equal(r.flips, 0);
    assert.equal(r.policyDeleted, 1);
    assert.deepEqual(comparable(dp), expected(B));
    assert.equal(endpointValue(dp, 1)!.gen, e1.gen);
  });

  test("big groups spill to the exact hash and the LPM trie, and come back inline when they shrink", (t) => {
    if (!requirePrivileged(t)) return;
    const sync = MapSync.adopt(a, dp.maps);
    const exact = (n: number) =>
      Array.from({ length: n }, (_, i) => entry("ingress", 310, 6, 1000 + i, 16, "allow", 10 + i));
    const blocks = (n: number) =>
      Array.from({ length: n }, (_, i) => entry("ingress", 310, 17, i * 256, 8, "deny", 40 + i));
    const withGroup = (entries: PolicyEntry[]): MapState => ({
      ipcache: B.ipcache,
      endpoints: [ep(1, 300, [...B.endpoints[0].policy.entries, ...entries]), B.endpoints[1]],
    });
    const counts = () => [dp.maps.policyExact.count(), dp.maps.policyLpm.count()];
    // More full-port entries than fit inline and 3 blocks: the full-port ones spill, the blocks stay inline.
    const many = INLINE + 4;
    sync.apply(withGroup([...exact(many), ...blocks(3)]), ifindexOf);
    assert.deepEqual(comparable(dp), expected(withGroup([...exact(many), ...blocks(3)])));
    assert.deepEqual(counts(), [2 * many, 0]);
    // More blocks than fit inline: those spill to the LPM trie too.
    sync.apply(withGroup([...exact(many), ...blocks(many)]), ifindexOf);
    assert.deepEqual(comparable(dp), expected(withGroup([...exact(many), ...blocks(many)])));
    assert.deepEqual(counts(), [2 * many, 2 * many]);
    // A restarted writer reads the spilled groups back as they are: no change.
    const again = MapSync.adopt(a, dp.maps).apply(withGroup([...exact(many), ...blocks(many)]), ifindexOf);
    assert.deepEqual([again.flips, again.policyWritten, again.policyDeleted], [0, 0, 0]);
    // Shrunk to 5 entries: inline again, no spill left behind.
    sync.apply(withGroup([...exact(3), ...blocks(2)]), ifindexOf);
    assert.deepEqual(comparable(dp), expected(withGroup([...exact(3), ...blocks(2)])));
    assert.deepEqual(counts(), [0, 0]);
    sync.apply(B, ifindexOf);
    assert.deepEqual(comparable(dp), expected(B));
  });

  test("a big write's working memory is not kept: the syncs after it start small and write correctly", (t) => {
    if (!requirePrivileged(t)) return;
    const sync = MapSync.adopt(a, dp.maps);
    // 4 endpoints × 2,000 peer identities: 8,000 records, about 3.3 MB of record buffers alone.
    const wide = (n: number): MapState => ({
      ipcache: A.ipcache,
      endpoints: [1, 2, 3, 4].map((id) =>
        ep(
          id,
          300 + id,
          Array.from({ length: n }, (_, i) => entry("ingress", 1000 + i, 6, 443, 16, "allow", 100 + i)),
        ),
      ),
    });
    sync.apply(wide(2000), ifindexOf);
    assert.deepEqual(comparable(dp), expected(wide(2000)));
    assert.ok(
      sync.scratchBytes <= SCRATCH_KEPT_BYTES,
      `${sync.scratchBytes} bytes of scratch kept after the big write (at most ${SCRATCH_KEPT_BYTES})`,
    );
    sync.apply(wide(3), ifindexOf);
    assert.deepEqual(comparable(dp), expected(wide(3)));
    sync.apply(wide(2000), ifindexOf);
    assert.deepEqual(comparable(dp), expected(wide(2000)));
    sync.apply(B, ifindexOf);
    assert.deepEqual(comparable(dp), expected(B));
  });

  test("usage(): each map's entries, from the writer's bookkeeping, equal what the map holds", (t) => {
    if (!requirePrivileged(t)) return;
    const m = dp.maps;
    const held = () =>
      [
        m.ipHosts4,
        m.ipHosts6,
        m.ipcache,
        m.endpoints,
        m.policySets,
        m.policyExact,
        m.policyLpm,
        ...(m.sources ? [m.sources] : []),
      ].map((x) => ({
        map: x.name,
        entries: x.count(),
        capacity: x.maxEntries,
      }));
    const sync = MapSync.adopt(a, m);
    assert.deepEqual(sync.usage(), held(), "after adoption");
    const exact = (n: number) =>
      Array.from({ length: n }, (_, i) => entry("ingress", 310, 6, 2000 + i, 16, "allow", 100 + i));
    const blocks = (n: number) =>
      Array.from({ length: n }, (_, i) => entry("ingress", 310, 17, i * 256, 8, "deny", 200 + i));
    const many = INLINE + 3;
    const states: [string, MapState][] = [
      ["A", A],
      ["B: prefixes and endpoints added, removed and changed", B],
      [
        "a spilled group, v6 hosts",
        {
          ipcache: [
            ...B.ipcache,
            { cidr: "fd00:2::7/128", identity: 306 },
            { cidr: "10.0.9.9/32", identity: 307 },
          ],
          endpoints: [
            { ...ep(1, 300, [...exact(many), ...blocks(many)]), addresses: ["10.0.0.1", "fd00::1"] },
            B.endpoints[1],
          ],
        },
      ],
      [
        "the group shrunk, a host's identity changed",
        {
          ipcache: [...B.ipcache, { cidr: "10.0.9.9/32", identity: 308 }],
          endpoints: [
            { ...ep(1, 300, [...exact(many), ...blocks(2)]), addresses: ["10.0.0.2"] },
            { ...B.endpoints[1], addresses: ["10.0.0.3"] },
          ],
        },
      ],
      ["back to B", B],
    ];
    let spilled = false;
    for (const [what, state] of states) {
      sync.apply(state, ifindexOf);
      const want = held();
      assert.deepEqual(sync.usage(), want, what);
      spilled ||= want[5].entries > 0 && want[6].entries > 0;
    }
    assert.ok(spilled, "some state used the exact hash and the LPM trie");
    assert.deepEqual(MapSync.adopt(a, m).usage(), held(), "a restarted writer");
  });

  test("capacity: an endpoint past the endpoint map is refused alone; a policy that cannot fit fails closed", (t) => {
    if (!requirePrivileged(t)) return;
    const sync = MapSync.adopt(a, dp.maps);
    const max = dp.maps.endpoints.maxEntries;
    const tooManyEndpoints: MapState = {
      ipcache: [{ cidr: "172.16.0.0/12", identity: 400 }],
      endpoints: Array.from({ length: max + 1 }, (_, i) => ep(1000 + i, 400, [])),
    };
    const over = sync.apply(tooManyEndpoints, ifindexOf);
    assert.deepEqual(over.refused, [{ key: `ns/pod-${1000 + max}`, wanted: max + 1, capacity: max }]);
    assert.equal(dp.maps.endpoints.entries().length, max, "every other endpoint is written");
    sync.apply(B, ifindexOf);
    assert.deepEqual(comparable(dp), expected(B));

    // Two generations per endpoint: half the policy map's capacity, plus one, cannot fit.
    const n = Math.floor(dp.maps.policySets.maxEntries / 2) + 1;
    const big = Array.from({ length: n }, (_, i) =>
      entry("ingress", 256 + Math.floor(i / 256), 6, (i % 256) * 256, 8, "allow", i),
    );
    const tooManyRules: MapState = { ipcache: B.ipcache, endpoints: [ep(1, 300, big), B.endpoints[1]] };
    // Endpoint 1's policy does not fit: it fails closed (deny both ways; the state has no allow-localhost
    // entry to keep), endpoint 3 keeps its policy. Never the old policy, never a partial one.
    const r = sync.apply(tooManyRules, ifindexOf);
    const cap = dp.maps.policySets.maxEntries;
    assert.deepEqual(r.failedClosed, [{ key: "ns/pod-1", needed: 2 * n, available: cap - 2, capacity: cap }]);
    assert.deepEqual(
      comparable(dp),
      expected({
        ...B,
        endpoints: [
          { ...B.endpoints[0], policy: { defaultDeny: { ingress: true, egress: true }, entries: [] } },
          B.endpoints[1],
        ],
      }),
    );
    assert.equal(countPolicyEntries(dp.maps), 2 * 1);
    // Capacity returns (the policy shrinks back): endpoint 1 gets its own again.
    assert.deepEqual(sync.apply(B, ifindexOf).failedClosed, []);
    assert.deepEqual(comparable(dp), expected(B));
    assert.equal(countPolicyEntries(dp.maps), 2 * 4);
  });

  test("endpoint values carry the active generation's wildcard groups; adoption repairs a stale copy", (t) => {
    if (!requirePrivileged(t)) return;
    const sync = MapSync.adopt(a, dp.maps);
    sync.apply(A, ifindexOf);
    // The entries as written: the compiler's, with their rule counter slots.
    const active = (id: number) => {
      const r = [...sync.applied.endpoints.values()].find((e) => e.id === id);
      return r ? [...(sync.applied.policy.get(id)?.[r.gen].values() ?? [])] : [];
    };
    const v1 = endpointValue(dp, 1);
    assert.ok(v1 && wildcardsMatch(v1, active(1)));
    assert.ok(
      v1.any.some((b) => b !== 0),
      "endpoint 1 has a wildcard entry: its copy is not empty",
    );
    // A copy that disagrees with the policy maps (no writer of this layout leaves one): repaired on
    // adoption, in place, with no flip.
    dp.maps.endpoints.set({ ifindex: IFINDEX_BASE + 1 }, { ...v1, any: new Uint8Array(v1.any.length) });
    MapSync.adopt(a, dp.maps);
    const repaired = endpointValue(dp, 1);
    assert.ok(repaired && wildcardsMatch(repaired, active(1)));
    assert.deepEqual([repaired.gen, repaired.policy_rev], [v1.gen, v1.policy_rev]);
  });

  test("counters: each endpoint has its own slot, zeroed when the endpoint goes", (t) => {
    if (!requirePrivileged(t)) return;
    const sync = MapSync.adopt(a, dp.maps);
    sync.apply(A, ifindexOf);
    const slot2 = endpointValue(dp, 2)?.slot;
    assert.ok(slot2 !== undefined && slot2 !== endpointValue(dp, 1)?.slot);
    dp.maps.counters.set(counterIndex(slot2, 0, 1), { packets: 5n, bytes: 500n });
    sync.apply(B, ifindexOf); // endpoint 2 goes
    assert.deepEqual(dp.maps.counters.total(slot2, 0, 1), { packets: 0n, bytes: 0n });
    const slot3 = endpointValue(dp, 3)?.slot;
    assert.ok(slot3 !== undefined && slot3 !== slot2, "a slot freed by this sync is not handed out by it");
  });

  test("`sluice datapath show -o json`: endpoints, their counters and the node's verdicts, read from the pins", (t) => {
    if (!requirePrivileged(t)) return;
    const sync = MapSync.adopt(a, dp.maps);
    sync.apply(A, ifindexOf);
    const slot1 = endpointValue(dp, 1)?.slot;
    assert.ok(slot1 !== undefined);
    dp.maps.counters.zero(slot1);
    dp.maps.counters.set(counterIndex(slot1, 1, 2), { packets: 3n, bytes: 300n });
    const verdicts = dp.maps.verdicts;
    assert.ok(verdicts, "the loaded datapath has its verdict counters");
    const ctReply = enums.sl_reason.SL_REASON_CT_REPLY;
    verdicts.set(verdictCounterIndex(enums.sl_dir.SL_DIR_INGRESS, false, ctReply), {
      packets: 2n,
      bytes: 20n,
    });
    const out = execFileSync(
      join(repoRoot(), "bin/sluice"),
      ["datapath", "show", "--bpffs-root", root.path, "-o", "json"],
      {
        encoding: "utf8",
      },
    );
    const shown = JSON.parse(out) as {
      endpoints: { id: number; ifindex: number }[];
      counters: { epId: number; dir: string; verdict: string; packets: number; bytes: number }[];
      verdicts: { direction: string; verdict: string; reason: string; packets: number; bytes: number }[];
    };
    assert.deepEqual(
      shown.endpoints.map((e) => [e.id, e.ifindex]),
      A.endpoints.map((e) => [e.id, ifindexOf(e)]),
    );
    // PerCpuMap.set writes the value on every CPU: the total is that times the CPU count.
    const cpus = dp.maps.counters.cpus;
    assert.deepEqual(
      shown.counters.filter((c) => c.epId === 1),
      [{ epId: 1, dir: "egress", verdict: "deny", packets: 3 * cpus, bytes: 300 * cpus }],
    );
    // No program ran on these maps: the one node-wide counter set here is the only one shown.
    assert.deepEqual(shown.verdicts, [
      { direction: "ingress", verdict: "allowed", reason: "ct-reply", packets: 2 * cpus, bytes: 20 * cpus },
    ]);
  });

  test("removing every endpoint clears the policy and endpoint maps", (t) => {
    if (!requirePrivileged(t)) return;
    const sync = MapSync.adopt(a, dp.maps);
    sync.apply({ ipcache: [], endpoints: [] }, ifindexOf);
    assert.equal(countPolicyEntries(dp.maps), 0);
    assert.equal(dp.maps.endpoints.count(), 0);
    assert.equal(dp.maps.ipcache.count() + dp.maps.ipHosts4.count() + dp.maps.ipHosts6.count(), 0);
  });
});
