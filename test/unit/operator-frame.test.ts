// The controller frame (controllers/frame.ts) with fake caches: nothing runs before every cache has
// synced, a failing key is retried with backoff and counted, the failure is logged with the key's
// fields, and an abort stops the workers and undoes the subscriptions.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import pino from "pino";
import { runController } from "../../operator/src/controllers/frame.ts";
import type { ControllerMetrics } from "../../operator/src/controllers/metrics.ts";
import { WorkQueue } from "../../operator/src/kube/workqueue.ts";
import { silentLogger } from "../../operator/src/observe/log.ts";

class FakeCache {
  synced = false;
  private waiters: Array<() => void> = [];
  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  sync(): void {
    this.synced = true;
    for (const w of this.waiters.splice(0)) w();
  }
}

class RecordingMetrics implements ControllerMetrics {
  readonly reconciles: Array<{ controller: string; ok: boolean }> = [];
  retries = 0;
  depth: (() => number) | undefined;
  depthSetTo: Array<"provider" | "none"> = [];
  reconciled(controller: string, _seconds: number, ok: boolean): void {
    this.reconciles.push({ controller, ok });
  }
  retried(): void {
    this.retries++;
  }
  queueDepth(_controller: string, depth: (() => number) | undefined): void {
    this.depth = depth;
    this.depthSetTo.push(depth ? "provider" : "none");
  }
}

async function until(what: string, fn: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe("runController", () => {
  it("starts and reconciles only once every cache has synced", async () => {
    const a = new FakeCache();
    const b = new FakeCache();
    const queue = new WorkQueue<string>();
    const seen: string[] = [];
    let started = 0;
    const ctl = new AbortController();
    const done = runController(
      {
        name: "t",
        caches: [a, b],
        queue,
        start: () => {
          started++;
          queue.add("k1");
          return () => {};
        },
        reconcile: async (key) => {
          seen.push(key);
          return undefined;
        },
        log: silentLogger(),
      },
      ctl.signal,
    );
    a.sync();
    await sleep(20);
    assert.equal(started, 0, "one cache still unsynced: nothing started");
    assert.deepEqual(seen, []);
    b.sync();
    await until("k1 reconciled", () => seen.length === 1);
    assert.equal(started, 1);
    ctl.abort();
    await done;
  });

  it("retries a failing key with backoff, counts it and logs the key's fields", async () => {
    const cache = new FakeCache();
    cache.sync();
    const queue = new WorkQueue<string>({ baseDelayMs: 1 });
    const metrics = new RecordingMetrics();
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: "info" }, { write: (s: string) => lines.push(JSON.parse(s)) });
    let calls = 0;
    const ctl = new AbortController();
    const done = runController(
      {
        name: "status",
        caches: [cache],
        queue,
        start: () => {
          queue.add("SecurityPolicy/ns/p");
          return () => {};
        },
        reconcile: async () => {
          calls++;
          if (calls < 3) throw new Error(`transient ${calls}`);
          return undefined;
        },
        log,
        metrics,
        describeKey: (key) => ({ policy: key }),
      },
      ctl.signal,
    );
    await until("third attempt succeeds", () => calls === 3 && metrics.reconciles.length === 3);
    assert.equal(metrics.retries, 2);
    assert.deepEqual(
      metrics.reconciles.map((r) => r.ok),
      [false, false, true],
    );
    assert.equal(lines.length, 2, "one warning per failed attempt");
    assert.equal(lines[0]?.controller, "status");
    assert.equal(lines[0]?.policy, "SecurityPolicy/ns/p");
    assert.equal(lines[0]?.retries, 1);
    assert.equal(lines[1]?.retries, 2);
    assert.match(String(lines[0]?.err), /transient 1/);
    assert.equal(queue.numRequeues("SecurityPolicy/ns/p"), 0, "success forgets the failures");
    ctl.abort();
    await done;
  });

  it("an abort stops the workers, unsubscribes and drops the depth provider", async () => {
    const cache = new FakeCache();
    cache.sync();
    const queue = new WorkQueue<string>();
    const metrics = new RecordingMetrics();
    let unsubscribed = 0;
    const ctl = new AbortController();
    const done = runController(
      {
        name: "identity",
        caches: [cache],
        queue,
        start: () => {
          queue.addAfter("later", 60_000);
          return () => {
            unsubscribed++;
          };
        },
        reconcile: async () => undefined,
        log: silentLogger(),
        metrics,
      },
      ctl.signal,
    );
    await until("running", () => metrics.depth !== undefined);
    assert.equal(metrics.depth?.(), 0, "a delayed key is not waiting yet");
    ctl.abort();
    await done;
    assert.equal(unsubscribed, 1);
    assert.deepEqual(metrics.depthSetTo, ["provider", "none"]);
    assert.ok(queue.isShuttingDown);
  });

  it("aborted before the caches sync: never starts", async () => {
    const cache = new FakeCache();
    let started = false;
    const ctl = new AbortController();
    const done = runController(
      {
        name: "t",
        caches: [cache],
        queue: new WorkQueue<string>(),
        start: () => {
          started = true;
          return () => {};
        },
        reconcile: async () => undefined,
        log: silentLogger(),
      },
      ctl.signal,
    );
    ctl.abort();
    await done;
    cache.sync();
    await sleep(10);
    assert.equal(started, false);
  });
});
