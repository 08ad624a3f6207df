// The frame every operator controller runs in, after controller-runtime's: wait until the caches
// the controller reads have synced (deciding from a partial cache would allocate duplicates or
// delete identities still in use), let the controller subscribe to its informers and seed its
// queue, then run workers that call reconcile(key) with per-key backoff on failure, until the
// signal aborts (leadership lost or shutdown). Controllers only say what they watch and how one
// key is reconciled; timing, retries, logging of failures and queue metrics live here once.
import { describeError } from "../kube/errors.ts";
import { type Reconciler, runWorkers, type WorkQueue } from "../kube/workqueue.ts";
import type { Logger } from "../observe/log.ts";
import type { ControllerMetrics } from "./metrics.ts";

export interface Syncable {
  waitForSync(): Promise<void>;
}

export interface ControllerFrame<K> {
  /** Metrics label and log field: a fixed word such as "identity". */
  name: string;
  /** Every cache reconcile reads; nothing runs before all of them have synced. */
  caches: ReadonlyArray<Syncable>;
  queue: WorkQueue<K>;
  /**
   * Runs once, after the sync and before any worker: subscribe to events and queue the initial
   * keys. Returns what undoes the subscriptions (called when the frame ends).
   */
  start: () => () => void;
  reconcile: Reconciler<K>;
  workers?: number;
  log: Logger;
  metrics?: ControllerMetrics;
  /** Log fields naming a key (e.g. { policy: "SecurityPolicy/ns/name" }); default { key }. */
  describeKey?: (key: K) => Record<string, unknown>;
}

/** Runs the controller until the signal aborts; resolves once every worker has exited. */
export async function runController<K>(f: ControllerFrame<K>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  const t0 = performance.now();
  const aborted = new Promise<void>((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true }),
  );
  await Promise.race([Promise.all(f.caches.map((c) => c.waitForSync())), aborted]);
  if (signal.aborted) return;
  const log = f.log.child({ controller: f.name });
  log.debug({ sync_ms: Math.round(performance.now() - t0) }, "caches synced");
  const unsubscribe = f.start();
  signal.addEventListener("abort", () => f.queue.shutDown(), { once: true });
  f.metrics?.queueDepth(f.name, () => f.queue.length);
  const fields = f.describeKey ?? ((key: K) => ({ key }));
  const timed: Reconciler<K> = async (key) => {
    const start = performance.now();
    let ok = false;
    try {
      const result = await f.reconcile(key);
      ok = true;
      return result;
    } finally {
      f.metrics?.reconciled(f.name, (performance.now() - start) / 1000, ok);
    }
  };
  try {
    await runWorkers(f.queue, f.workers ?? 4, timed, (key, err) => {
      f.metrics?.retried(f.name);
      // A write refused because leadership just ended is the expected way a term stops.
      if (signal.aborted) return;
      log.warn(
        { ...fields(key), retries: f.queue.numRequeues(key) + 1, err: describeError(err) },
        "reconcile failed; retrying with backoff",
      );
    });
  } finally {
    f.metrics?.queueDepth(f.name, undefined);
    unsubscribe();
  }
}
