// The batch side of the work queue: a burst of keys becomes one reconcile pass, a key added while its
// pass runs comes back in a later pass, and a failed pass requeues every key of its batch.
import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { runBatchWorker, WorkQueue } from "../../operator/src/kube/workqueue.ts";

test("getBatch takes every waiting key at once, each marked processing", async () => {
  const q = new WorkQueue<string>();
  for (const k of ["a", "b", "a", "c"]) q.add(k);
  assert.deepEqual(await q.getBatch(), ["a", "b", "c"]);
  q.add("b"); // processing: comes back after done()
  assert.equal(q.length, 0);
  for (const k of ["a", "b", "c"]) q.done(k);
  assert.deepEqual(await q.getBatch(2), ["b"]);
  q.done("b");
  assert.ok(q.idle);
});

test("runBatchWorker: a burst is one pass; keys added during a pass form the next", async () => {
  const q = new WorkQueue<string>();
  const passes: string[][] = [];
  let release: () => void = () => {};
  const worker = runBatchWorker(q, async (keys) => {
    passes.push([...keys].sort());
    if (passes.length === 1) await new Promise<void>((r) => (release = r));
    return undefined;
  });
  for (const k of ["ep:a", "ep:b", "node"]) q.add(k);
  await sleep(10);
  assert.deepEqual(passes, [["ep:a", "ep:b", "node"]]);
  q.add("ep:a");
  q.add("ep:c");
  release();
  await sleep(10);
  assert.deepEqual(passes[1], ["ep:a", "ep:c"]);
  q.shutDown();
  await worker;
});

test("runBatchWorker: a failed pass requeues its keys with backoff and reports them", async () => {
  const q = new WorkQueue<string>({ baseDelayMs: 5 });
  const passes: string[][] = [];
  const errors: string[][] = [];
  const worker = runBatchWorker(
    q,
    async (keys) => {
      passes.push([...keys].sort());
      if (passes.length === 1) throw new Error("maps full");
      return { requeueAfterMs: new Map([["ep:x", 20]]) };
    },
    (keys) => errors.push([...keys].sort()),
  );
  q.add("ep:a");
  q.add("ep:b");
  await sleep(60);
  assert.deepEqual(errors, [["ep:a", "ep:b"]]);
  assert.deepEqual(passes[1], ["ep:a", "ep:b"], "retried together");
  assert.equal(q.numRequeues("ep:a"), 0, "success forgets the failures");
  assert.ok(
    passes.some((p) => p.includes("ep:x")),
    "requeueAfterMs brings a key back",
  );
  q.shutDown();
  await worker;
});

test("runBatchWorker pacing: under a steady stream, a pass of p ms is followed by p ms without one; an idle worker starts at once", async () => {
  const passesOver = async (paceMs?: (ms: number) => number) => {
    const q = new WorkQueue<string>();
    const starts: number[] = [];
    const worker = runBatchWorker(
      q,
      async () => {
        starts.push(performance.now());
        await sleep(20);
        return undefined;
      },
      undefined,
      undefined,
      paceMs,
    );
    const t0 = performance.now();
    for (let i = 0; performance.now() - t0 < 300; i++) {
      q.add(`ep:${i}`);
      await sleep(2);
    }
    await sleep(100);
    const n = starts.length;
    // Idle past the gap: the next key starts its pass without waiting.
    const added = performance.now();
    q.add("ep:late");
    await sleep(10);
    const lateStart = starts[n] - added;
    q.shutDown();
    await worker;
    return { n, lateStart, gaps: starts.slice(1, n).map((s, i) => s - starts[i]) };
  };
  const free = await passesOver();
  const paced = await passesOver((ms) => ms);
  // Back to back: a pass every ~20 ms; paced: a 20 ms pass, then at least 20 ms without one.
  assert.ok(Math.min(...free.gaps) < 38, `unpaced gaps ${free.gaps.map(Math.round)}`);
  assert.ok(Math.min(...paced.gaps) >= 38, `paced gaps ${paced.gaps.map(Math.round)}`);
  assert.ok(paced.n < free.n, `paced ${paced.n} passes vs unpaced ${free.n}`);
  assert.ok(paced.lateStart < 15, `an idle paced worker waited ${paced.lateStart} ms`);
});
