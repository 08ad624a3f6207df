// The agent's pure observability pieces: the policy implementation-delay tracker, the health checks
// behind /readyz and /healthz, and the pass summary's log fields.
import assert from "node:assert/strict";
import { test } from "node:test";
import { AgentHealth } from "../../operator/src/agent/agent-health.ts";
import { PassClock, passLogFields, passWroteNothing } from "../../operator/src/agent/pass-report.ts";
import { PolicyDelayTracker, type PolicyRef } from "../../operator/src/agent/policy-delay.ts";
import type { SyncReport } from "../../operator/src/datapath/writer/sync.ts";

const np = (name: string): PolicyRef => ({ kind: "NetworkPolicy", namespace: "shop", name });
const held =
  (m: Record<string, number>) =>
  (p: PolicyRef): number | undefined =>
    m[p.name];

test("policy delay: a generation counts once, when the maps hold it or a newer one", () => {
  const d = new PolicyDelayTracker();
  d.delivered("a", np("a"), 2, 1000);
  d.delivered("a", np("a"), 3, 1010);
  d.delivered("b", np("b"), 1, 1005);
  // The pass wrote a's generation 2 only: 3 and b wait.
  assert.deepEqual(d.written(held({ a: 2 }), 1020), [0.02]);
  assert.equal(d.size, 2);
  assert.deepEqual(d.written(held({ a: 3, b: 1 }), 1030), [0.02, 0.025]);
  assert.equal(d.size, 0);
  assert.deepEqual(d.written(held({ a: 3, b: 1 }), 1040), [], "nothing twice");
});

test("policy delay: an overtaken generation is implemented with the newer one; deletions", () => {
  const d = new PolicyDelayTracker();
  d.delivered("a", np("a"), 4, 0);
  d.delivered("a", np("a"), 5, 5);
  assert.deepEqual(d.written(held({ a: 5 }), 10), [0.01, 0.005]);
  d.delivered("a", np("a"), undefined, 20);
  assert.deepEqual(d.written(held({ a: 5 }), 25), [], "still held: the deletion is not written");
  assert.deepEqual(d.written(held({}), 30), [0.01]);
  // Deleted and created again: generation 1 after 5 implements both deliveries.
  d.delivered("a", np("a"), undefined, 40);
  d.delivered("a", np("a"), 1, 41);
  assert.deepEqual(d.written(held({ a: 1 }), 50), [0.01, 0.009]);
});

test("health: not ready before sync, before the first write, while passes fail", () => {
  let now = 0;
  const h = new AgentHealth({ wedgedAfterMs: 1000, now: () => now });
  assert.equal(h.ready.check(), "the API caches have not synced yet");
  h.cachesSynced();
  assert.equal(h.ready.check(), "the datapath has not been written yet");
  h.passStarted();
  h.passSucceeded();
  assert.equal(h.ready.check(), undefined);
  h.passStarted();
  h.passFailed("map full");
  assert.equal(h.ready.check(), "last reconcile failed: map full");
  h.passStarted();
  h.passSucceeded();
  assert.equal(h.ready.check(), undefined);
  assert.equal(h.live.check(), undefined);
  now = 10;
  h.keysQueued();
  now = 500;
  h.keysQueued(); // a later key does not move the mark
  now = 1011;
  assert.match(h.live.check() ?? "", /^queued keys have waited 1 s/);
  h.passStarted();
  assert.equal(h.live.check(), undefined);
  now = 2100;
  assert.match(h.live.check() ?? "", /^a reconcile pass has been running for 1 s/);
  h.passSucceeded();
  assert.equal(h.live.check(), undefined);
});

const sync = (o: Partial<SyncReport> = {}): SyncReport => ({
  flips: 0,
  policyWritten: 0,
  policyDeleted: 0,
  endpointsWritten: 0,
  endpointsDeleted: 0,
  ipcacheWritten: 0,
  ipcacheDeleted: 0,
  pending: [],
  failedClosed: [],
  refused: [],
  durationMs: 0,
  ...o,
});

test("pass clock and summary fields: phases add up, durations in ms", async () => {
  let now = 100;
  const clock = new PassClock(7.123456, () => now);
  clock.time("resolve", () => {
    now += 2;
  });
  await clock.timeAsync("resolve", async () => {
    now += 3;
  });
  assert.throws(() =>
    clock.time("compile", () => {
      now += 4;
      throw new Error("x");
    }),
  );
  now += 1;
  assert.equal(clock.ms("resolve"), 5);
  assert.equal(clock.ms("compile"), 4, "a throwing phase is timed too");
  assert.equal(clock.elapsedMs(), 10);
  const fields = passLogFields({
    keys: 3,
    full: false,
    recompiled: 1,
    universeRebuilt: false,
    peersChanged: false,
    endpoints: 2,
    sync: sync({ policyWritten: 4, pending: ["shop/x"] }),
    queuedMs: clock.queuedMs,
    compileMs: clock.ms("compile"),
    resolveMs: clock.ms("resolve"),
    syncMs: clock.ms("sync"),
    totalMs: clock.elapsedMs(),
  });
  assert.equal(fields.queued_ms, 7.12);
  assert.equal(fields.policy_written, 4);
  assert.equal(fields.pending, 1);
  assert.equal(fields.total_ms, 10);
  assert.equal(passWroteNothing(sync()), true);
  assert.equal(passWroteNothing(sync({ ipcacheDeleted: 1 })), false);
});
