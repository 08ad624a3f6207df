// The map writer's planner: ordering, generations, deltas and capacity. No kernel.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  type AppliedState,
  type Capacities,
  desiredState,
  EMPTY_STATE,
  planSync,
  type SyncPlan,
} from "../../operator/src/datapath/writer/sync-plan.ts";
import { canonicalEntry } from "../../operator/src/datapath/codec/keys.ts";
import { enums } from "../../operator/src/datapath/codec/layout.generated.ts";
import { MapCapacityError } from "../../operator/src/datapath/kernel/typed-map.ts";
import {
  type EndpointState,
  type MapState,
  type PolicyEntry,
  policyEntryKey,
} from "../../operator/src/policy/mapstate.ts";

const CAP: Capacities = { ipcache: 1000, endpoints: 100, policy: 10000, sources: 100 };
const SOURCE_CHECK = enums.sl_endpoint_flags.SL_EP_SOURCE_CHECK;
const ifindexOf = (ep: EndpointState) => 100 + ep.id;

function ep(id: number, entries: PolicyEntry[], ingress = true): EndpointState {
  return {
    key: `ns/p${id}`,
    id,
    identity: 256 + id,
    policy: { defaultDeny: { ingress, egress: false }, entries },
  };
}
const allow = (identity: number, port: number): PolicyEntry => ({
  direction: "ingress",
  identity,
  protocol: 6,
  port,
  portPrefixLen: 16,
  verdict: "allow",
  ruleId: port,
});

// Applies a plan to a model of the maps, checking the phase order invariants on the way.
function simulate(applied: AppliedState, plan: SyncPlan): AppliedState {
  const gens = new Map<number, [Map<string, PolicyEntry>, Map<string, PolicyEntry>]>();
  for (const [id, g] of applied.policy) gens.set(id, [new Map(g[0]), new Map(g[1])]);
  const get = (id: number) => {
    let g = gens.get(id);
    if (!g) {
      g = [new Map(), new Map()];
      gens.set(id, g);
    }
    return g;
  };
  const active = new Map<number, number>();
  for (const r of applied.endpoints.values()) active.set(r.id, r.gen);
  for (const w of [...plan.phase1.delete, ...plan.phase1.write]) {
    assert.notEqual(active.get(w.epId), w.gen, "phase 1 must not touch an active generation");
  }
  // The writer diffs phase 3 against the applied state: it must not touch what phase 1 changed.
  const phase1 = new Set([...plan.phase1.delete, ...plan.phase1.write].map((w) => `${w.epId}|${w.gen}`));
  for (const w of [...plan.phase3.delete, ...plan.phase3.write])
    assert.ok(!phase1.has(`${w.epId}|${w.gen}`), "phase 3 must not touch a generation phase 1 touched");
  for (const w of plan.phase1.delete) get(w.epId)[w.gen].delete(policyEntryKey(w.entry));
  for (const w of plan.phase1.write) get(w.epId)[w.gen].set(policyEntryKey(w.entry), w.entry);
  const sources = new Map([...applied.sources].map(([id, s]) => [id, new Set(s)]));
  for (const w of plan.sources.deleteFirst) sources.get(w.epId)?.delete(w.address);
  for (const w of plan.sources.write)
    sources.set(w.epId, new Set([...(sources.get(w.epId) ?? []), w.address]));
  const endpoints = new Map(applied.endpoints);
  for (const i of plan.phase2.deleteEndpoints) endpoints.delete(i);
  for (const [i, r] of plan.phase2.writeEndpoints) endpoints.set(i, r);
  // From the switch on, a checked endpoint finds every address it had and will have: nothing it sends
  // from its own addresses is dropped in between.
  for (const r of endpoints.values()) {
    if (!(r.flags & SOURCE_CHECK)) continue;
    const held = sources.get(r.id) ?? new Set();
    for (const want of plan.result.sources.get(r.id) ?? [])
      assert.ok(held.has(want), `endpoint ${r.id}: ${want} written before its value checks it`);
  }
  for (const w of plan.sources.delete) sources.get(w.epId)?.delete(w.address);
  for (const [id, s] of sources) if (s.size === 0) sources.delete(id);
  for (const w of plan.phase3.delete) get(w.epId)[w.gen].delete(policyEntryKey(w.entry));
  for (const w of plan.phase3.write) get(w.epId)[w.gen].set(policyEntryKey(w.entry), w.entry);
  const ipcache = new Map(applied.ipcache);
  for (const c of plan.ipcache.delete) ipcache.delete(c);
  for (const [c, id] of plan.ipcache.write) ipcache.set(c, id);
  for (const [id, g] of gens) if (g[0].size === 0 && g[1].size === 0) gens.delete(id);
  return { ipcache, endpoints, policy: gens, sources };
}

function normalize(s: AppliedState) {
  return {
    ipcache: [...s.ipcache].sort(),
    endpoints: [...s.endpoints].sort(([a], [b]) => a - b),
    policy: [...s.policy]
      .filter(([, g]) => g[0].size + g[1].size > 0)
      .sort(([a], [b]) => a - b)
      .map(([id, g]) => [id, [...g[0]].sort(), [...g[1]].sort()]),
    sources: [...s.sources].sort(([a], [b]) => a - b).map(([id, set]) => [id, [...set].sort()]),
  };
}

test("new endpoint: write gen 0, switch, mirror into gen 1", () => {
  const { desired } = desiredState(
    { ipcache: [{ cidr: "10.0.0.1", identity: 257 }], endpoints: [ep(1, [allow(257, 80)])] },
    ifindexOf,
  );
  const plan = planSync(EMPTY_STATE, desired, CAP);
  assert.equal(plan.flips, 1);
  assert.deepEqual(
    plan.phase1.write.map((w) => w.gen),
    [0],
  );
  assert.deepEqual(plan.phase2.writeEndpoints, [
    // Ingress default deny, audited alike (SL_EP_AUDIT_DENY_INGRESS): no Audit policy.
    [101, { id: 1, identity: 257, policyRev: 1, gen: 0, flags: 1 | 8, slot: 0, auditSlot: [0, 0] }],
  ]);
  assert.deepEqual(plan.phase2.zeroCounters, [0], "a slot new to its endpoint starts from zero");
  assert.deepEqual(
    plan.phase3.write.map((w) => w.gen),
    [1],
  );
  assert.deepEqual(plan.ipcache.write, [["10.0.0.1/32", 257]]);
  assert.deepEqual(normalize(simulate(EMPTY_STATE, plan)), normalize(plan.result));
});

test("counter slots: kept by an endpoint, not reused in the plan that frees them unless none is left", () => {
  const state = (ids: number[]) =>
    desiredState({ ipcache: [], endpoints: ids.map((id) => ep(id, [])) }, ifindexOf).desired;
  const p1 = planSync(EMPTY_STATE, state([1, 2]), CAP);
  const slotOf = (p: typeof p1, id: number) =>
    [...p.result.endpoints.values()].find((r) => r.id === id)?.slot;
  assert.deepEqual([slotOf(p1, 1), slotOf(p1, 2)], [0, 1]);
  // 1 goes, 3 comes: 3 takes a fresh slot (a packet may still count into 1's), 1's is zeroed after.
  const p2 = planSync(p1.result, state([2, 3]), CAP);
  assert.deepEqual([slotOf(p2, 2), slotOf(p2, 3)], [1, 2]);
  assert.deepEqual(p2.phase2.zeroCounters, [2]);
  assert.deepEqual(p2.phase3.zeroCounters, [0]);
  // At capacity the freed slot is handed out again (zeroed first, and not zeroed after).
  const small = { ...CAP, endpoints: 2 };
  const p3 = planSync(p1.result, state([2, 3]), small);
  assert.deepEqual([slotOf(p3, 2), slotOf(p3, 3)], [1, 0]);
  assert.deepEqual([p3.phase2.zeroCounters, p3.phase3.zeroCounters], [[0], []]);
});

test("a policy change is a delta into the inactive generation and one flip", () => {
  const s1 = desiredState(
    { ipcache: [], endpoints: [ep(1, [allow(257, 80), allow(258, 443)])] },
    ifindexOf,
  ).desired;
  const a1 = planSync(EMPTY_STATE, s1, CAP).result;
  const s2 = desiredState(
    { ipcache: [], endpoints: [ep(1, [allow(257, 80), allow(259, 22)])] },
    ifindexOf,
  ).desired;
  const plan = planSync(a1, s2, CAP);
  assert.equal(plan.flips, 1);
  assert.equal(plan.phase1.delete.length, 1);
  assert.equal(plan.phase1.write.length, 1);
  assert.equal(plan.phase2.writeEndpoints[0][1].gen, 1);
  assert.equal(plan.phase2.writeEndpoints[0][1].policyRev, 2);
  assert.ok(plan.barrier);
  // Flags only: no flip, but the revision moves.
  const s3 = desiredState(
    { ipcache: [], endpoints: [ep(1, [allow(257, 80), allow(259, 22)], false)] },
    ifindexOf,
  ).desired;
  const a2 = plan.result;
  const p3 = planSync(a2, s3, CAP);
  assert.equal(p3.flips, 0);
  assert.deepEqual(
    p3.phase2.writeEndpoints.map(([, r]) => [r.gen, r.policyRev, r.flags]),
    [[1, 3, 0]],
  );
  assert.equal(planSync(p3.result, s3, CAP).phase2.writeEndpoints.length, 0);
});

test("capacity is checked before anything is planned for writing", () => {
  const many = Array.from({ length: 3000 }, (_, i) => allow(256 + i, 80));
  const { desired } = desiredState({ ipcache: [], endpoints: [ep(1, many), ep(2, many)] }, ifindexOf);
  assert.throws(
    () => planSync(EMPTY_STATE, desired, CAP),
    (e: unknown) => e instanceof MapCapacityError && e.required === 12000,
  );
  const d2 = desiredState(
    { ipcache: [], endpoints: Array.from({ length: 101 }, (_, i) => ep(i + 1, [])) },
    ifindexOf,
  );
  assert.throws(() => planSync(EMPTY_STATE, d2.desired, CAP), /endpoints/);
});

test("bad input is refused naming the endpoint", () => {
  assert.throws(
    () => desiredState({ ipcache: [], endpoints: [ep(1, []), { ...ep(1, []), key: "ns/other" }] }, () => 5),
    /ns\/other: ifindex 5/,
  );
  assert.throws(
    () =>
      desiredState(
        { ipcache: [], endpoints: [ep(1, [allow(257, 80), { ...allow(257, 80), verdict: "deny" }])] },
        ifindexOf,
      ),
    /conflicting/,
  );
  assert.throws(
    () => desiredState({ ipcache: [{ cidr: "10.0.0.0/33", identity: 1 }], endpoints: [] }, ifindexOf),
    /invalid CIDR/,
  );
  // planSync relies on one desired endpoint per id, also when the DesiredState was not built by desiredState.
  const one = desiredState({ ipcache: [], endpoints: [ep(1, [])] }, ifindexOf).desired;
  const [d1] = one.endpoints.values();
  const twice = {
    ipcache: one.ipcache,
    endpoints: new Map([...one.endpoints, [999, { ...d1, key: "ns/twin", ifindex: 999 }]]),
  };
  assert.throws(() => planSync(EMPTY_STATE, twice, CAP), /ns\/twin: id 1/);
  const { pending } = desiredState({ ipcache: [], endpoints: [ep(1, [])] }, () => undefined);
  assert.deepEqual(pending, ["ns/p1"]);
});

test("own addresses: written before the value that checks them, removed after the barrier", () => {
  const withAddresses = (addresses?: string[]) =>
    desiredState({ ipcache: [], endpoints: [{ ...ep(1, []), ...(addresses && { addresses }) }] }, ifindexOf)
      .desired;
  // Unknown addresses: no check, nothing in sl_src.
  const p0 = planSync(EMPTY_STATE, withAddresses(), CAP);
  assert.equal(p0.phase2.writeEndpoints[0][1].flags & SOURCE_CHECK, 0);
  assert.deepEqual(p0.sources, { write: [], deleteFirst: [], delete: [] });
  // Known: the check turns on, with a new policy revision (flows tracked without the check revalidate:
  // the datapath looks addresses up only where conntrack does not decide).
  const p1 = planSync(p0.result, withAddresses(["10.0.0.1", "FD00:0::1"]), CAP);
  assert.deepEqual(
    p1.phase2.writeEndpoints.map(([, r]) => [r.flags & SOURCE_CHECK, r.policyRev]),
    [[SOURCE_CHECK, (p0.result.endpoints.get(101)?.policyRev ?? 0) + 1]],
  );
  assert.deepEqual(
    p1.sources.write.map((w) => w.address),
    ["10.0.0.1", "fd00::1"],
    "canonical text",
  );
  assert.deepEqual(normalize(simulate(p0.result, p1)), normalize(p1.result));
  // An address changes: the new one written and the old one deleted before the value, whose revision
  // goes up (a flow tracked from the old address revalidates, and fails).
  const p2 = planSync(p1.result, withAddresses(["10.0.0.2", "fd00::1"]), CAP);
  assert.deepEqual(
    p2.phase2.writeEndpoints.map(([, r]) => r.policyRev),
    [(p1.result.endpoints.get(101)?.policyRev ?? 0) + 1],
  );
  assert.deepEqual(p2.sources, {
    write: [{ epId: 1, address: "10.0.0.2" }],
    deleteFirst: [{ epId: 1, address: "10.0.0.1" }],
    delete: [],
  });
  assert.deepEqual(normalize(simulate(p1.result, p2)), normalize(p2.result));
  // The endpoint goes: its value in phase 2, its addresses after the barrier.
  const p3 = planSync(p2.result, desiredState({ ipcache: [], endpoints: [] }, ifindexOf).desired, CAP);
  assert.deepEqual(p3.phase2.deleteEndpoints, [101]);
  assert.equal(p3.sources.delete.length, 2);
  assert.ok(p3.barrier);
  assert.throws(
    () => planSync(p0.result, withAddresses(["10.0.0.1", "fd00::1"]), { ...CAP, sources: 1 }),
    /sources/,
  );
  assert.throws(() => withAddresses(["10.0.0.0/8"]), /not an IP address/);
});

test("property: any sequence of states converges, and phase 1 never touches an active generation", () => {
  const entryArb = fc.record({
    direction: fc.constantFrom<"ingress" | "egress">("ingress", "egress"),
    identity: fc.constantFrom(0, 256, 257, 258),
    protocol: fc.constantFrom(0, 6, 17),
    port: fc.constantFrom(0, 53, 80, 8080),
    portPrefixLen: fc.constantFrom(0, 8, 16),
    verdict: fc.constantFrom<"allow" | "deny">("allow", "deny"),
    ruleId: fc.nat({ max: 3 }),
  });
  const stateArb: fc.Arbitrary<MapState> = fc.record({
    ipcache: fc.uniqueArray(
      fc.record({
        cidr: fc.constantFrom("10.0.0.0/8", "10.1.0.0/16", "fd00::/8", "1.2.3.4/32"),
        identity: fc.nat({ max: 3 }),
      }),
      { selector: (e) => e.cidr },
    ),
    endpoints: fc
      .uniqueArray(
        fc.record({
          id: fc.integer({ min: 1, max: 4 }),
          entries: fc.array(entryArb, { maxLength: 6 }),
          addresses: fc.option(fc.subarray(["10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2"]), {
            nil: undefined,
          }),
        }),
        { selector: (e) => e.id },
      )
      .map((eps) => {
        return eps.map((e) => {
          const byKey = new Map<string, PolicyEntry>();
          for (const x of e.entries.map(canonicalEntry)) byKey.set(policyEntryKey(x), x);
          return {
            key: `ns/p${e.id}`,
            id: e.id,
            identity: 256 + e.id,
            policy: { defaultDeny: { ingress: true, egress: false }, entries: [...byKey.values()] },
            ...(e.addresses && { addresses: e.addresses }),
          };
        });
      }),
  });
  fc.assert(
    fc.property(fc.array(stateArb, { minLength: 1, maxLength: 5 }), fc.nat({ max: 4 }), (states, shift) => {
      let applied: AppliedState = EMPTY_STATE;
      for (const s of states) {
        // The same endpoint id may move between interfaces from one state to the next.
        const slot = new Map(s.endpoints.map((e, i) => [e.id, 200 + ((i + shift) % 5)]));
        const { desired } = desiredState(s, (e) => slot.get(e.id));
        const plan = planSync(applied, desired, CAP);
        const next = simulate(applied, plan);
        assert.deepEqual(normalize(next), normalize(plan.result));
        for (const [, r] of next.endpoints) {
          const g = next.policy.get(r.id) ?? [new Map(), new Map()];
          assert.equal(g[0].size, g[1].size, "both generations equal after a sync");
        }
        // Counter slots: one per endpoint, below the capacity, kept by an id that stays.
        const slots = [...next.endpoints.values()].map((r) => r.slot);
        assert.equal(new Set(slots).size, slots.length, "no two endpoints share a counter slot");
        assert.ok(slots.every((x) => x >= 0 && x < CAP.endpoints));
        for (const r of next.endpoints.values()) {
          const before = [...applied.endpoints.values()].find((a) => a.id === r.id);
          if (before) assert.equal(r.slot, before.slot, `endpoint ${r.id} keeps its counter slot`);
          else assert.ok(plan.phase2.zeroCounters.includes(r.slot), "a new endpoint's counters are zeroed");
        }
        applied = next;
      }
    }),
  );
});
