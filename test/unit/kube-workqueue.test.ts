import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { runWorkers, WorkQueue } from "../../operator/src/kube/workqueue.ts";

describe("WorkQueue", () => {
  it("dedups a key while it is queued", async () => {
    const q = new WorkQueue<string>();
    q.add("a");
    q.add("b");
    q.add("a");
    assert.equal(q.length, 2);
    assert.equal(await q.get(), "a");
    assert.equal(await q.get(), "b");
    q.done("a");
    q.done("b");
    assert.ok(q.idle);
  });

  it("never hands out a key being processed; re-adds it after done()", async () => {
    const q = new WorkQueue<string>();
    q.add("a");
    const k = await q.get();
    assert.equal(k, "a");
    q.add("a"); // while processing: marked dirty, not queued
    assert.equal(q.length, 0);
    let second: string | undefined;
    const p = q.get().then((x) => {
      second = x;
    });
    await sleep(5);
    assert.equal(second, undefined, "a second worker must not get the key while it is processed");
    q.done("a");
    await p;
    assert.equal(second, "a");
  });

  it("a waiting worker receives a key added later", async () => {
    const q = new WorkQueue<string>();
    const got = q.get();
    q.add("x");
    assert.equal(await got, "x");
  });

  it("per-key exponential backoff, forget() resets it", async () => {
    const q = new WorkQueue<string>({ baseDelayMs: 20, maxDelayMs: 1000 });
    const times: number[] = [];
    const t0 = Date.now();
    q.addRateLimited("k"); // 20 ms
    assert.equal(q.numRequeues("k"), 1);
    let k = await q.get();
    times.push(Date.now() - t0);
    q.done(k!);
    q.addRateLimited("k"); // 40 ms
    k = await q.get();
    times.push(Date.now() - t0);
    q.done(k!);
    assert.ok(times[0] >= 18, `first retry after ${times[0]} ms`);
    assert.ok(times[1] - times[0] >= 38, `second retry after ${times[1] - times[0]} ms`);
    q.forget("k");
    assert.equal(q.numRequeues("k"), 0);
  });

  it("the token bucket spaces retries once the burst is used", () => {
    const q = new WorkQueue<string>({ baseDelayMs: 0, qps: 10, burst: 2 });
    // Burst of 2 retries is immediate, the third must wait ~100 ms: observable as a delayed key.
    q.addRateLimited("a");
    q.addRateLimited("b");
    q.addRateLimited("c");
    assert.equal(q.length, 2);
    assert.equal(q.idle, false);
    q.shutDown();
  });

  it("shutDown releases waiting workers with undefined", async () => {
    const q = new WorkQueue<string>();
    const w = q.get();
    q.shutDown();
    assert.equal(await w, undefined);
    q.add("late");
    assert.equal(await q.get(), undefined);
  });

  it("runWorkers: concurrency across keys, never within one; errors requeue; success forgets", async () => {
    const q = new WorkQueue<string>({ baseDelayMs: 1 });
    const active = new Set<string>();
    let maxParallel = 0;
    let parallelNow = 0;
    const attempts = new Map<string, number>();
    let violations = 0;
    const done = new Set<string>();
    const run = runWorkers(q, 4, async (key) => {
      if (active.has(key)) violations++;
      active.add(key);
      parallelNow++;
      maxParallel = Math.max(maxParallel, parallelNow);
      await sleep(5);
      parallelNow--;
      active.delete(key);
      const n = (attempts.get(key) ?? 0) + 1;
      attempts.set(key, n);
      if (key === "flaky" && n < 3) throw new Error("transient");
      done.add(key);
      return undefined;
    });
    for (let i = 0; i < 20; i++) {
      q.add(`k${i % 8}`);
      q.add("flaky");
      await sleep(1);
    }
    while (done.size < 9) await sleep(5);
    while (!q.idle) await sleep(5);
    q.shutDown();
    await run;
    assert.equal(violations, 0);
    assert.ok(maxParallel > 1, "workers should run different keys in parallel");
    assert.ok((attempts.get("flaky") ?? 0) >= 3);
    assert.equal(q.numRequeues("flaky"), 0, "forgotten after success");
  });

  it("addAfter keeps the earliest pending time", async () => {
    const q = new WorkQueue<string>();
    q.addAfter("a", 200);
    q.addAfter("a", 10);
    q.addAfter("a", 500);
    const t0 = Date.now();
    await q.get();
    assert.ok(Date.now() - t0 < 150);
    q.shutDown();
  });
});
