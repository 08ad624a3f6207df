// A keyed, rate-limited work queue with controller-runtime's semantics:
// - a key queued twice is processed once (dedup while waiting);
// - a key is never processed concurrently with itself: adding it while it is being processed marks
//   it dirty, and done() puts it back in the queue;
// - addRateLimited() requeues after a per-key exponential backoff (forget() resets it on success),
//   capped, combined with an overall token bucket as client-go's default controller rate limiter;
// - shutDown() makes get() return undefined once the queue is drained of waiters.
// Informer callbacks run synchronously inside client-node: they only add keys here; reconciles run
// in workers (runWorkers) that read the informer caches.

export interface RateLimiterOptions {
  /** First per-key retry delay. Default 5 ms (client-go). */
  baseDelayMs?: number;
  /** Per-key delay cap. Default 60 s. */
  maxDelayMs?: number;
  /** Overall retries per second and burst (token bucket). Default 10/s, burst 100 (client-go). */
  qps?: number;
  burst?: number;
}

export class WorkQueue<K = string> {
  private readonly queue: K[] = [];
  private readonly dirty = new Set<K>();
  private readonly processing = new Set<K>();
  private readonly failures = new Map<K, number>();
  private readonly waitingTimers = new Map<K, { at: number; timer: NodeJS.Timeout }>();
  // How many waiting keys each delay timer still serves.
  private readonly timerUsers = new Map<NodeJS.Timeout, number>();
  private waiters: Array<(k: K | undefined) => void> = [];
  private shuttingDown = false;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly qps: number;
  private readonly burst: number;
  private tokens: number;
  private lastRefill = Date.now();
  /** Reserved token-bucket slots: when the next overall retry may happen. */
  private bucketNextFree = 0;

  constructor(opts: RateLimiterOptions = {}) {
    this.baseDelayMs = opts.baseDelayMs ?? 5;
    this.maxDelayMs = opts.maxDelayMs ?? 60_000;
    this.qps = opts.qps ?? 10;
    this.burst = opts.burst ?? 100;
    this.tokens = this.burst;
  }

  /** Queues a key now (no-op if it is already waiting in the queue). */
  add(key: K): void {
    if (this.shuttingDown) return;
    if (this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return; // done() requeues it
    const waiter = this.waiters.shift();
    if (waiter) {
      this.dirty.delete(key);
      this.processing.add(key);
      waiter(key);
      return;
    }
    this.queue.push(key);
  }

  /** Queues a key after a delay; an earlier pending delayed add for the key wins. */
  addAfter(key: K, delayMs: number): void {
    this.addAllAfter([key], delayMs);
  }

  /**
   * Queues keys after a delay, all from one timer: keys that become ready together arrive in one
   * timer callback, so a batch worker takes them in one pass (separate timers may fall a millisecond
   * apart and split them). An earlier pending delayed add of a key wins.
   */
  addAllAfter(keys: readonly K[], delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      for (const key of keys) this.add(key);
      return;
    }
    const at = Date.now() + delayMs;
    const due = keys.filter((key) => {
      const pending = this.waitingTimers.get(key);
      if (!pending) return true;
      if (pending.at <= at) return false;
      this.#release(pending.timer);
      return true;
    });
    if (due.length === 0) return;
    const timer = setTimeout(() => {
      for (const key of due) {
        if (this.waitingTimers.get(key)?.timer !== timer) continue; // moved to an earlier timer
        this.waitingTimers.delete(key);
        this.add(key);
      }
      this.timerUsers.delete(timer);
    }, delayMs);
    this.timerUsers.set(timer, due.length);
    for (const key of due) this.waitingTimers.set(key, { at, timer });
  }

  // One key no longer waits on a timer: the timer goes when no key does.
  #release(timer: NodeJS.Timeout): void {
    const users = (this.timerUsers.get(timer) ?? 1) - 1;
    if (users > 0) {
      this.timerUsers.set(timer, users);
      return;
    }
    clearTimeout(timer);
    this.timerUsers.delete(timer);
  }

  /** Requeues a failed key with backoff: max(per-key exponential, overall token bucket). */
  addRateLimited(key: K): void {
    this.addAfter(key, this.#retryDelay(key));
  }

  /** Requeues a failed batch together, after the longest backoff among its keys. */
  addAllRateLimited(keys: readonly K[]): void {
    let delay = 0;
    for (const key of keys) delay = Math.max(delay, this.#retryDelay(key));
    this.addAllAfter(keys, delay);
  }

  // Counts the failure and returns the key's retry delay.
  #retryDelay(key: K): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const perKey = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.min(n, 40));
    return Math.max(perKey, this.bucketDelay());
  }

  private bucketDelay(): number {
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.lastRefill) / 1000) * this.qps);
    this.lastRefill = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    // Out of tokens: reserve the next slot, spaced 1/qps apart.
    this.bucketNextFree = Math.max(this.bucketNextFree, now) + 1000 / this.qps;
    return this.bucketNextFree - now;
  }

  /** Clears the key's failure history (call after a successful reconcile). */
  forget(key: K): void {
    this.failures.delete(key);
  }

  numRequeues(key: K): number {
    return this.failures.get(key) ?? 0;
  }

  /** Next key to process; undefined after shutDown(). Pair every key with done(key). */
  get(): Promise<K | undefined> {
    const key = this.queue.shift();
    if (key !== undefined) {
      this.dirty.delete(key);
      this.processing.add(key);
      return Promise.resolve(key);
    }
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /**
   * Every key waiting (at least one: waits like get()), up to max; undefined after shutDown().
   * Pair every key with done(key). Lets a reconciler coalesce a burst into one pass.
   */
  async getBatch(max = Number.POSITIVE_INFINITY): Promise<K[] | undefined> {
    const first = await this.get();
    if (first === undefined) return undefined;
    const out: K[] = [first];
    while (out.length < max) {
      const key = this.queue.shift();
      if (key === undefined) break;
      this.dirty.delete(key);
      this.processing.add(key);
      out.push(key);
    }
    return out;
  }

  /** Marks the key processed; if it was added meanwhile, it goes back into the queue. */
  done(key: K): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) {
      this.dirty.delete(key);
      this.add(key);
    }
  }

  /** Keys waiting (not processing, not delayed). */
  get length(): number {
    return this.queue.length;
  }

  /** Nothing queued, nothing processing, nothing delayed. */
  get idle(): boolean {
    return this.queue.length === 0 && this.processing.size === 0 && this.waitingTimers.size === 0;
  }

  get isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  shutDown(): void {
    this.shuttingDown = true;
    for (const { timer } of this.waitingTimers.values()) clearTimeout(timer);
    this.waitingTimers.clear();
    this.timerUsers.clear();
    this.queue.length = 0;
    this.dirty.clear();
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w(undefined);
  }
}

export interface ReconcileResult {
  /** Process the key again after this delay even though it succeeded (periodic checks). */
  requeueAfterMs?: number;
}

export type Reconciler<K> = (key: K) => Promise<ReconcileResult | undefined>;

/**
 * Runs `concurrency` workers until the queue shuts down. Success forgets the key's failures;
 * a throw requeues it rate-limited and reports the error. Resolves when every worker has exited.
 */
export async function runWorkers<K>(
  queue: WorkQueue<K>,
  concurrency: number,
  reconcile: Reconciler<K>,
  onError?: (key: K, err: unknown) => void,
): Promise<void> {
  const worker = async () => {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      try {
        const result = await reconcile(key);
        queue.forget(key);
        if (result?.requeueAfterMs !== undefined) queue.addAfter(key, result.requeueAfterMs);
      } catch (err) {
        onError?.(key, err);
        queue.addRateLimited(key);
      } finally {
        queue.done(key);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
}

export interface BatchResult<K> {
  /** Keys to process again after a delay even though the pass succeeded (e.g. not ready yet). */
  requeueAfterMs?: ReadonlyMap<K, number>;
}

/**
 * One worker that reconciles every ready key in one pass: after the first key arrives it lets
 * already-received I/O run once (setImmediate), so events delivered together land in one batch.
 * Success forgets the keys' failures; a throw requeues every key of the batch rate-limited.
 *
 * `paceMs(passMs)`: after a pass that took passMs, the next one starts no sooner than that much
 * later (a worker that is idle meanwhile starts at once). Keys arriving in the gap wait in the queue
 * and land in one batch: under a steady stream of events a pass of p ms runs at most every
 * p + paceMs(p) ms, instead of back to back on a whole core.
 */
export async function runBatchWorker<K>(
  queue: WorkQueue<K>,
  reconcile: (keys: K[]) => Promise<BatchResult<K> | undefined>,
  onError?: (keys: readonly K[], err: unknown) => void,
  maxBatch?: number,
  paceMs?: (passMs: number) => number,
): Promise<void> {
  let notBefore = 0;
  for (;;) {
    const first = await queue.getBatch(1);
    if (first === undefined) return;
    const wait = notBefore - performance.now();
    if (wait > 0 && !queue.isShuttingDown) await new Promise((r) => setTimeout(r, wait));
    await new Promise((r) => setImmediate(r));
    const rest = queue.length > 0 && !queue.isShuttingDown ? await queue.getBatch(maxBatch) : [];
    const keys = [...first, ...(rest ?? [])];
    const started = performance.now();
    try {
      const result = await reconcile(keys);
      for (const k of keys) queue.forget(k);
      for (const [k, ms] of result?.requeueAfterMs ?? []) queue.addAfter(k, ms);
    } catch (err) {
      onError?.(keys, err);
      queue.addAllRateLimited(keys);
    } finally {
      for (const k of keys) queue.done(k);
      const ended = performance.now();
      notBefore = ended + (paceMs?.(ended - started) ?? 0);
    }
  }
}
