// The daemons' collections (observe/heap-relief.ts): the agent's after a pass that rebuilt the
// universe, the operator's when the heap in use outgrew what the last collection left; at most one
// per interval and one at a time, asynchronous, and none without --expose-gc.
import assert from "node:assert/strict";
import { test } from "node:test";
import { HeapRelief } from "../../operator/src/observe/heap-relief.ts";

const MiB = 1024 * 1024;

function rig(o: { minIntervalMs?: number; used?: number } = {}) {
  let t = 0;
  let used = o.used ?? 100 * MiB;
  // What the heap holds once a collection ran.
  let live = used;
  const calls: unknown[] = [];
  const relief = new HeapRelief({
    gc: (opts) => {
      calls.push(opts);
      used = live;
      return Promise.resolve();
    },
    minIntervalMs: o.minIntervalMs ?? 1000,
    now: () => t,
    heapUsed: () => used,
  });
  return {
    relief,
    calls,
    advance: (ms: number) => (t += ms),
    grow: (bytes: number, liveAfter = live) => {
      used += bytes;
      live = liveAfter;
    },
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

test("a rebuild asks for one asynchronous major collection; other passes ask for none", async () => {
  const r = rig();
  assert.equal(r.relief.afterPass(false), false);
  assert.equal(r.relief.afterPass(true), true);
  await settle();
  assert.deepEqual(r.calls, [{ type: "major", execution: "async", flavor: "last-resort" }]);
});

test("the first collection after a quiet minute is the thorough kind, back-to-back ones the plain kind", async () => {
  const r = rig({ minIntervalMs: 1000 });
  const flavors = async (gapsMs: number[]) => {
    for (const gap of gapsMs) {
      r.advance(gap);
      r.relief.afterPass(true);
      await settle();
    }
    return r.calls.map((c) => (c as { flavor: string }).flavor);
  };
  assert.deepEqual(await flavors([0, 2000, 2000, 61_000, 1500]), [
    "last-resort",
    "regular",
    "regular",
    "last-resort",
    "regular",
  ]);
});

test("rebuilds within the interval share one collection", async () => {
  const r = rig({ minIntervalMs: 1000 });
  r.relief.afterPass(true);
  await settle();
  r.advance(400);
  assert.equal(r.relief.afterPass(true), false);
  r.advance(700);
  assert.equal(r.relief.afterPass(true), true);
  await settle();
  assert.equal(r.calls.length, 2);
  assert.equal(r.relief.requested, 2);
});

test("growth: a collection once the heap outgrows twice what the last one left, by 32 MiB or more", async () => {
  const r = rig({ used: 100 * MiB });
  r.grow(60 * MiB, 110 * MiB);
  assert.equal(await r.relief.checkGrowth(), false, "160 MiB in use: under 2 × 100");
  r.grow(50 * MiB);
  assert.equal(await r.relief.checkGrowth(), true, "210 MiB in use");
  assert.equal(r.calls.length, 1);
  // The next threshold is twice what that collection left (110 MiB).
  r.advance(5000);
  r.grow(100 * MiB, 120 * MiB);
  assert.equal(await r.relief.checkGrowth(), false, "210 MiB in use: under 2 × 110");
  r.grow(20 * MiB);
  assert.equal(await r.relief.checkGrowth(), true, "230 MiB in use");
  // A small heap tripling by a few MiB is not worth a collection.
  const small = rig({ used: 10 * MiB });
  small.grow(20 * MiB);
  assert.equal(await small.relief.checkGrowth(), false);
});

test("without --expose-gc nothing is asked for", async () => {
  const relief = new HeapRelief({ gc: undefined, now: () => 0, heapUsed: () => 1 });
  assert.equal(relief.enabled, false);
  assert.equal(relief.afterPass(true), false);
  assert.equal(await relief.checkGrowth({ factor: 0, minGrowthBytes: 0 }), false);
  assert.equal(relief.requested, 0);
});

test("a failing collection does not reach the caller, and the next one can run", async () => {
  let n = 0;
  const relief = new HeapRelief({
    gc: () => {
      n++;
      return Promise.reject(new Error("refused"));
    },
    minIntervalMs: 0,
    now: () => 0,
    heapUsed: () => 1,
  });
  assert.equal(relief.afterPass(true), true);
  await settle();
  assert.equal(relief.afterPass(true), true);
  await settle();
  assert.equal(n, 2);
});
