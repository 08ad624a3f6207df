import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  CLUSTER_ID_MIN,
  IDENTITY_TOMBSTONE_LABEL,
  IdentityIndex,
  identityRecord,
  labelSetHash,
  nextCandidate,
  resolveIdentity,
} from "../../operator/src/identity/allocator.ts";
import { planGc } from "../../operator/src/identity/gc.ts";

const set = (app: string, ns = "a") => ({ app, "io.kubernetes.pod.namespace": ns });
const obj = (id: number, labels: Record<string, string>, tombstone = false) => ({
  metadata: {
    name: String(id),
    labels: (tombstone ? { [IDENTITY_TOMBSTONE_LABEL]: "true" } : {}) as Record<string, string>,
  },
  spec: { labels },
});
const rec = (id: number, labels: Record<string, string>, tombstone = false) =>
  identityRecord(obj(id, labels, tombstone))!;

describe("identity allocator", () => {
  it("hash is order independent and fits a label value", () => {
    const h = labelSetHash({ b: "2", a: "1" });
    assert.equal(h, labelSetHash({ a: "1", b: "2" }));
    assert.notEqual(h, labelSetHash({ a: "1", b: "3" }));
    assert.equal(h.length, 40);
  });

  it("rejects names that are not cluster identity numbers", () => {
    assert.equal(identityRecord({ metadata: { name: "12" }, spec: { labels: {} } }), undefined);
    assert.equal(identityRecord({ metadata: { name: "0256" }, spec: { labels: {} } }), undefined);
    assert.equal(identityRecord({ metadata: { name: "abc" } }), undefined);
    assert.equal(identityRecord({ metadata: { name: "256" }, spec: { labels: {} } })?.id, 256);
  });

  it("resolves a label set to its lowest live number (the failover tiebreak)", () => {
    const idx = new IdentityIndex([
      rec(300, set("x")),
      rec(280, set("x")),
      rec(270, set("x"), true),
      rec(290, set("y")),
    ]);
    assert.equal(resolveIdentity(idx, set("x")), 280);
    assert.equal(resolveIdentity(idx, set("y")), 290);
    assert.equal(resolveIdentity(idx, set("z")), undefined);
    assert.deepEqual(idx.duplicatedHashes(), [labelSetHash(set("x"))]);
  });

  it("next number is above every object, tombstone and floor", () => {
    assert.equal(nextCandidate(new IdentityIndex(), []), CLUSTER_ID_MIN);
    const idx = new IdentityIndex([rec(300, set("x")), rec(400, set("y"), true)]);
    assert.equal(nextCandidate(idx, []), 401);
    assert.equal(nextCandidate(idx, [500, 10]), 501);
    idx.remove(400);
    assert.equal(idx.maxId, 300);
  });

  it("GC: unused identities retire after the grace; the highest number becomes a tombstone", () => {
    const idx = new IdentityIndex([rec(256, set("a")), rec(257, set("b")), rec(258, set("c"))]);
    const used = new Set([labelSetHash(set("b"))]);
    const since = new Map<number, number>();
    let plan = planGc(idx, (h) => used.has(h), since, 1000, 5000);
    assert.deepEqual(plan.actions, []);
    assert.equal(plan.nextDueMs, 5000);
    plan = planGc(idx, (h) => used.has(h), since, 6000, 5000);
    assert.deepEqual(
      plan.actions.sort((x, y) => x.id - y.id),
      [
        { id: 256, action: "delete", why: "unused" },
        { id: 258, action: "tombstone", why: "unused" },
      ],
    );
  });

  it("GC: a used identity resets its clock; duplicates and old tombstones go at once", () => {
    const idx = new IdentityIndex([
      rec(256, set("a")),
      rec(257, set("a")),
      rec(258, set("z"), true),
      rec(259, set("q")),
    ]);
    const since = new Map<number, number>();
    const plan = planGc(idx, () => true, since, 0, 60_000);
    assert.deepEqual(
      plan.actions.sort((x, y) => x.id - y.id),
      [
        { id: 257, action: "delete", why: "duplicate" },
        { id: 258, action: "delete", why: "obsolete-tombstone" },
      ],
    );
    assert.equal(since.size, 0);
  });

  it("property: after GC and allocation, numbers are never reused and each set has one live identity", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom("a", "b", "c", "d"), fc.boolean()), {
          minLength: 1,
          maxLength: 60,
        }),
        (ops) => {
          const idx = new IdentityIndex();
          const used = new Set<string>();
          const since = new Map<number, number>();
          const everIssued = new Map<number, string>();
          let now = 0;
          for (const [app, add] of ops) {
            now += 1000;
            const h = labelSetHash(set(app));
            if (add) used.add(h);
            else used.delete(h);
            if (add && idx.live(h).length === 0) {
              const id = nextCandidate(idx, []);
              assert.ok(!everIssued.has(id), `number ${id} reused`);
              everIssued.set(id, h);
              idx.upsert(rec(id, set(app)));
            }
            const plan = planGc(idx, (x) => used.has(x), since, now, 2500);
            for (const a of plan.actions) {
              if (a.action === "delete") idx.remove(a.id);
              else idx.upsert({ ...idx.get(a.id)!, tombstone: true });
            }
            for (const u of used) assert.equal(idx.live(u).length, 1);
          }
        },
      ),
    );
  });
});
