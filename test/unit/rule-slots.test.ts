// The map writer's rule counter slots (datapath/writer/rule-slots.ts), pure: a (endpoint, direction,
// rule, audit) pair keeps its slot from write to write, whether its endpoint is handed over again as
// the same object (not walked) or rebuilt; a pair gone gives its slot up one write later, zeroed when
// handed out again; when the slots run out a pair is uncounted, and counted once one is free.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { StoredEntry } from "../../operator/src/datapath/codec/keys.ts";
import { RuleSlots } from "../../operator/src/datapath/writer/rule-slots.ts";
import type { DesiredEndpoint, DesiredState } from "../../operator/src/datapath/writer/sync-plan.ts";

function entry(ruleId: number, port: number, auditRule?: number): StoredEntry {
  return {
    direction: "ingress",
    identity: 100,
    protocol: 6,
    port,
    portPrefixLen: 16,
    verdict: "allow",
    ruleId,
    ...(auditRule !== undefined ? { audit: { verdict: "deny", ruleId: auditRule } } : {}),
  };
}

function endpoint(id: number, entries: StoredEntry[]): DesiredEndpoint {
  return {
    key: `ns/pod-${id}`,
    ifindex: 10 + id,
    id,
    identity: 200 + id,
    flags: 0,
    entries: new Map(entries.map((e) => [`${e.ruleId}:${e.port}`, e])),
  };
}

function state(...eps: DesiredEndpoint[]): DesiredState {
  return { ipcache: new Map(), endpoints: new Map(eps.map((e) => [e.ifindex, e])) };
}

// Every (endpoint id, rule, audit) → slot of an assignment's entries.
function slotsOf(d: DesiredState): Map<string, number> {
  const out = new Map<string, number>();
  for (const ep of d.endpoints.values())
    for (const e of ep.entries.values() as Iterable<StoredEntry>) {
      out.set(`${ep.id}/${e.ruleId}`, e.slot ?? -1);
      if (e.audit) out.set(`${ep.id}/${e.audit.ruleId}/audit`, e.auditSlot ?? -1);
    }
  return out;
}

test("rule slots: a pair keeps its slot across writes, kept or rebuilt endpoint alike", () => {
  const slots = new RuleSlots(100);
  const a = endpoint(1, [entry(7, 80), entry(7, 81), entry(8, 443, 9)]);
  const b = endpoint(2, [entry(7, 80)]);
  const first = slots.assign(state(a, b));
  const s1 = slotsOf(first.desired);
  // Entries of one rule share its slot; the audit pair has its own; every slot is new and zeroed first.
  const ofA = [...(first.desired.endpoints.get(a.ifindex)?.entries.values() ?? [])] as StoredEntry[];
  assert.equal(ofA[0].slot, ofA[1].slot);
  assert.equal(new Set(s1.values()).size, 4);
  assert.deepEqual([...first.zero].sort(), [...s1.values()].sort());
  assert.equal(first.uncounted, 0);

  // a handed over as the same object, b rebuilt with the same rules: nothing new, the same slots.
  const b2 = endpoint(2, [entry(7, 80), entry(7, 90)]);
  const second = slots.assign(state(a, b2));
  assert.deepEqual(second.zero, []);
  assert.deepEqual(slotsOf(second.desired), s1);
  assert.equal(second.desired.endpoints.get(a.ifindex), first.desired.endpoints.get(a.ifindex));
  assert.deepEqual(
    slots
      .table()
      .map((r) => [r.epId, r.ruleId, r.audit, r.endpointKey, r.slot])
      .sort((x, y) => Number(x[0]) - Number(y[0]) || Number(x[1]) - Number(y[1])),
    [
      [1, 7, false, "ns/pod-1", s1.get("1/7")],
      [1, 8, false, "ns/pod-1", s1.get("1/8")],
      [1, 9, true, "ns/pod-1", s1.get("1/9/audit")],
      [2, 7, false, "ns/pod-2", s1.get("2/7")],
    ],
  );
});

test("rule slots: a slot given up is handed out again one write later, zeroed", () => {
  const slots = new RuleSlots(100);
  const a = endpoint(1, [entry(7, 80), entry(8, 81)]);
  const s1 = slotsOf(slots.assign(state(a)).desired);
  // Rule 8 gone: its slot is retired, not reused by this write (the old generation may point at it).
  const withNew = slots.assign(state(endpoint(1, [entry(7, 80), entry(5, 82)])));
  assert.notEqual(slotsOf(withNew.desired).get("1/5"), s1.get("1/8"));
  // The next write may hand it out, and zeroes it first.
  const again = slots.assign(state(endpoint(1, [entry(7, 80), entry(5, 82), entry(6, 83)])));
  assert.equal(slotsOf(again.desired).get("1/6"), s1.get("1/8"));
  assert.deepEqual(again.zero, [s1.get("1/8")]);
});

test("rule slots: out of slots, a pair is uncounted (slot 0) and counted once a slot is free", () => {
  // Capacity 3: slots 1 and 2 (0 means none).
  const slots = new RuleSlots(3);
  const a = endpoint(1, [entry(7, 80), entry(8, 81)]);
  const b = endpoint(2, [entry(9, 80)]);
  const full = slots.assign(state(a, b));
  assert.equal(full.uncounted, 1);
  assert.equal(slotsOf(full.desired).get("2/9"), 0);
  // Still uncounted while a holds both, though b is handed over as the same object.
  assert.equal(slots.assign(state(a, b)).uncounted, 1);
  // a loses rule 8: one write retires its slot, the next counts b's rule (b walked again, same object).
  const a2 = endpoint(1, [entry(7, 80)]);
  assert.equal(slots.assign(state(a2, b)).uncounted, 1);
  const counted = slots.assign(state(a2, b));
  assert.equal(counted.uncounted, 0);
  assert.ok((slotsOf(counted.desired).get("2/9") ?? 0) > 0);
});
