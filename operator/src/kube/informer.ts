// A watch-backed cache that survives errors. client-node's ListWatch relists on 410 Gone and
// resumes after a normal close, but on any other error (a failed list, a 404 when a CRD is gone,
// a refused connection) it fires `error` and stops for good; start() even resolves when the first
// list fails. This wrapper registers the error handler before starting and restarts the same
// ListWatch with exponential backoff, so the cache (last good state) is kept while the server is
// unreachable and the resume uses the last resourceVersion (a relist happens only on 410).
// OptionalInformer is the same cache for a resource whose CRD the cluster may lack (SIG Network's
// policy kinds): absent, it counts as synced and empty, and it starts or empties itself when
// discovery sees the resource appear or go, so a missing CRD never holds back a first pass.
import {
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  ListWatch,
  Watch,
} from "@kubernetes/client-node";
import { cacheView, withKind } from "./cache-view.ts";
import { describeError, isNotFound } from "./errors.ts";
import { rawList, rawRequest } from "./raw.ts";
import { collectionPath, type Resource } from "./resources.ts";

export type InformerEvent = "add" | "update" | "delete";

export interface InformerOptions {
  labelSelector?: string;
  fieldSelector?: string;
  /** Only this namespace (namespaced resources). Default: all namespaces. */
  namespace?: string;
  /** First restart delay after an error; doubles up to maxBackoffMs. Default 500 ms. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Called with a loggable description of each error (never the raw message). */
  onError?: (description: string, consecutiveFailures: number) => void;
  /** What the cache keeps of each object; default cacheView(resource) (cache-view.ts). Either way
   *  the cached object carries the resource's kind. */
  view?: <T extends KubernetesObject>(obj: T) => T;
}

// client-node's Watch, handing each event's object through the cache view before ListWatch sees it.
class ViewWatch extends Watch {
  private readonly view: <T extends KubernetesObject>(obj: T) => T;

  constructor(kc: KubeConfig, view: <T extends KubernetesObject>(obj: T) => T) {
    super(kc);
    this.view = view;
  }

  override watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    return super.watch(
      path,
      queryParams,
      (phase, apiObj, watchObj) =>
        // ERROR and BOOKMARK events carry a Status or a bare object: passed on as they are.
        callback(
          phase,
          phase === "ADDED" || phase === "MODIFIED" || phase === "DELETED"
            ? this.view(apiObj as KubernetesObject)
            : apiObj,
          watchObj,
        ),
      done,
    );
  }
}

/** What the agent and the controllers read from an informer, required or optional. */
export interface WatchCache<T extends KubernetesObject> {
  readonly resource: Resource;
  on(event: InformerEvent, cb: (obj: T) => void): void;
  off(event: InformerEvent, cb: (obj: T) => void): void;
  start(): void;
  stop(): Promise<void>;
  hasSynced(): boolean;
  waitForSync(timeoutMs?: number): Promise<void>;
  list(namespace?: string): ReadonlyArray<T>;
  get(name: string, namespace?: string): T | undefined;
}

export class Informer<T extends KubernetesObject> implements WatchCache<T> {
  readonly resource: Resource;
  private readonly lw: ListWatch<T>;
  private readonly opts: InformerOptions;
  private started = false;
  private stopped = false;
  private listReturned = false;
  private synced = false;
  private failures = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private syncWaiters: Array<() => void> = [];
  private frozen: T[] | undefined;
  /** Number of restarts after errors (observability and tests). */
  restarts = 0;
  /** Description of the latest error, if any. */
  lastError: string | undefined;

  constructor(kc: KubeConfig, resource: Resource, opts: InformerOptions = {}) {
    this.resource = resource;
    this.opts = opts;
    const path = collectionPath(resource, opts.namespace);
    const view = withKind(resource, opts.view ?? cacheView(resource));
    const listFn = async (): Promise<KubernetesListObject<T>> => {
      const list = await rawList<T>(
        kc,
        path,
        { labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector },
        view,
      );
      this.listReturned = true;
      return list;
    };
    this.lw = new ListWatch<T>(
      path,
      new ViewWatch(kc, view),
      listFn,
      false,
      opts.labelSelector,
      opts.fieldSelector,
    );
    // Registered before any start(): an error during the first list must not go unheard.
    this.lw.on("error", (err?: unknown) => this.onError(err));
    // Any delivered event proves the connection works: reset the backoff.
    const healthy = () => {
      this.failures = 0;
      this.checkSynced();
    };
    this.lw.on("add", healthy);
    this.lw.on("update", healthy);
    this.lw.on("delete", healthy);
  }

  on(event: InformerEvent, cb: (obj: T) => void): void {
    this.lw.on(event, cb);
  }

  off(event: InformerEvent, cb: (obj: T) => void): void {
    this.lw.off(event, cb);
  }

  /** Starts listing and watching; returns at once (use waitForSync to wait for the first list). */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.stopped = false;
    void this.run();
  }

  private async run(): Promise<void> {
    if (this.stopped) return;
    let failedDuringStart = false;
    const before = this.failures;
    try {
      await this.lw.start();
    } catch (err) {
      // ListWatch reports through `error`, but do not trust that for every path.
      failedDuringStart = true;
      this.onError(err);
    }
    if (this.failures > before) failedDuringStart = true;
    if (!failedDuringStart) this.failures = 0;
    this.checkSynced();
  }

  private onError(err: unknown): void {
    if (this.stopped) return; // stop() aborts the watch, which surfaces as an error
    this.failures++;
    this.lastError = describeError(err);
    this.opts.onError?.(this.lastError, this.failures);
    if (this.restartTimer) return;
    const min = this.opts.minBackoffMs ?? 500;
    const max = this.opts.maxBackoffMs ?? 30_000;
    const base = Math.min(max, min * 2 ** Math.min(this.failures - 1, 20));
    const delay = base / 2 + Math.random() * (base / 2);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopped) return;
      this.restarts++;
      void this.run();
    }, delay);
  }

  private checkSynced(): void {
    // latestResourceVersion is set only after ListWatch has put the list's items in its cache.
    if (!this.synced && this.listReturned && this.lw.latestResourceVersion() !== "") {
      this.synced = true;
      const waiters = this.syncWaiters;
      this.syncWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** True once the first list has been fully loaded into the cache; stays true afterwards. */
  hasSynced(): boolean {
    this.checkSynced();
    return this.synced;
  }

  /** Resolves when hasSynced(); rejects after timeoutMs (default: never) or when stopped. */
  waitForSync(timeoutMs?: number): Promise<void> {
    if (this.hasSynced()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const poll = setInterval(() => {
        if (this.stopped) finish(new Error(`informer ${this.resource.plural}: stopped before sync`));
        else if (this.hasSynced()) finish();
      }, 20);
      const finish = (err?: Error) => {
        clearInterval(poll);
        if (timer) clearTimeout(timer);
        this.syncWaiters = this.syncWaiters.filter((w) => w !== done);
        if (err) reject(err);
        else resolve();
      };
      const done = () => finish();
      this.syncWaiters.push(done);
      if (timeoutMs !== undefined) {
        timer = setTimeout(
          () =>
            finish(
              new Error(
                `informer ${this.resource.plural}: not synced within ${timeoutMs} ms${this.lastError ? ` (last error: ${this.lastError})` : ""}`,
              ),
            ),
          timeoutMs,
        );
      }
    });
  }

  list(namespace?: string): ReadonlyArray<T> {
    if (this.frozen)
      return namespace ? this.frozen.filter((o) => o.metadata?.namespace === namespace) : this.frozen;
    return this.lw.list(namespace);
  }

  get(name: string, namespace?: string): T | undefined {
    if (this.frozen)
      return this.frozen.find(
        (o) => o.metadata?.name === name && (namespace === undefined || o.metadata?.namespace === namespace),
      );
    return this.lw.get(name, namespace);
  }

  /** Consecutive failures since the last healthy moment. */
  get consecutiveFailures(): number {
    return this.failures;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    // The cache as of stop: ListWatch can still apply events from a watch whose request was in
    // flight when it stopped (it only aborts a request it already holds).
    this.frozen = [...this.lw.list()];
    await this.lw.stop();
    // ...so abort again once such a late watch has been established.
    for (const ms of [250, 1000, 3000]) setTimeout(() => void this.lw.stop(), ms).unref();
  }
}

/** Waits until every informer has synced (or throws after timeoutMs). */
export async function waitForCacheSync(
  informers: ReadonlyArray<{ waitForSync(timeoutMs?: number): Promise<void> }>,
  timeoutMs?: number,
): Promise<void> {
  await Promise.all(informers.map((i) => i.waitForSync(timeoutMs)));
}

/**
 * Is the resource served? Asks the API server's discovery for its group/version (allowed to every
 * authenticated user by the default system:discovery role, so no RBAC beyond the resource's own).
 * A 404 means the group/version is not served; another error is thrown (unknown, not absent).
 */
export async function resourceServed(kc: KubeConfig, r: Resource): Promise<boolean> {
  const path = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  try {
    const list = await rawRequest<{ resources?: Array<{ name?: string }> }>(kc, "GET", path, undefined, {
      timeoutMs: 10_000,
    });
    return (list.resources ?? []).some((x) => x.name === r.plural);
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

export interface OptionalInformerOptions extends InformerOptions {
  /**
   * How often discovery is asked again whether the resource is served, ±25 % so that the agents of
   * a large cluster spread their requests. Default 15 s: one small GET per kind per process, and a
   * CRD installed later is enforced within that.
   */
  discoveryIntervalMs?: number;
  /** Called when discovery finds the resource newly served (true) or gone (false). */
  onServedChange?: (served: boolean) => void;
  /** Replaces resourceServed (tests). */
  served?: () => Promise<boolean>;
}

/**
 * An informer on a resource that may not be served (an optional CRD). Until discovery first answers
 * it is not synced; while the resource is not served it is synced and empty. When discovery (on
 * start, every discoveryIntervalMs, and at once after any list or watch error, such as the 404 of a
 * deleted CRD) finds the resource served, a plain Informer starts and its events are passed on; when
 * the resource goes, that informer stops and every object it held is delivered as a delete (the
 * API server deletes a CRD's objects with it anyway), so consumers drop them like any deletion.
 */
export class OptionalInformer<T extends KubernetesObject> implements WatchCache<T> {
  readonly resource: Resource;
  readonly #kc: KubeConfig;
  readonly #opts: OptionalInformerOptions;
  readonly #listeners: Record<InformerEvent, Set<(obj: T) => void>> = {
    add: new Set(),
    update: new Set(),
    delete: new Set(),
  };
  #inner: Informer<T> | undefined;
  // undefined until discovery first answers.
  #served: boolean | undefined;
  #synced = false;
  #started = false;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  #discovering: Promise<void> | undefined;
  #again = false;
  #discoveryFailures = 0;
  /** Times the resource appeared or went (tests, observability). */
  transitions = 0;

  constructor(kc: KubeConfig, resource: Resource, opts: OptionalInformerOptions = {}) {
    this.#kc = kc;
    this.resource = resource;
    this.#opts = opts;
  }

  /** Whether discovery last found the resource served (undefined before its first answer). */
  get served(): boolean | undefined {
    return this.#served;
  }

  on(event: InformerEvent, cb: (obj: T) => void): void {
    this.#listeners[event].add(cb);
  }

  off(event: InformerEvent, cb: (obj: T) => void): void {
    this.#listeners[event].delete(cb);
  }

  start(): void {
    if (this.#started) return;
    this.#started = true;
    void this.discover();
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped) return;
    const every = this.#opts.discoveryIntervalMs ?? 15_000;
    this.#timer = setTimeout(
      () => {
        void this.discover();
        this.#schedule();
      },
      every * (0.75 + Math.random() * 0.5),
    );
    this.#timer.unref();
  }

  /** Asks discovery now (coalesced with a check already running); resolves when it was applied. */
  discover(): Promise<void> {
    if (this.#discovering) {
      this.#again = true;
      return this.#discovering;
    }
    this.#discovering = (async () => {
      try {
        do {
          this.#again = false;
          await this.#discoverOnce();
        } while (this.#again && !this.#stopped);
      } finally {
        this.#discovering = undefined;
      }
    })();
    return this.#discovering;
  }

  async #discoverOnce(): Promise<void> {
    if (this.#stopped) return;
    let served: boolean;
    try {
      served = await (this.#opts.served ?? (() => resourceServed(this.#kc, this.resource)))();
      this.#discoveryFailures = 0;
    } catch (err) {
      // Unknown is not absent: keep the current state (and the cache) until discovery answers.
      this.#discoveryFailures++;
      this.#opts.onError?.(`discovery: ${describeError(err)}`, this.#discoveryFailures);
      return;
    }
    if (this.#stopped) return;
    const before = this.#served;
    this.#served = served;
    if (served && !this.#inner) this.#startInner();
    else if (!served && this.#inner) await this.#dropInner();
    if (before !== undefined && before !== served) {
      this.transitions++;
      this.#opts.onServedChange?.(served);
    }
    this.hasSynced();
  }

  #startInner(): void {
    const inner: Informer<T> = new Informer<T>(this.#kc, this.resource, {
      ...this.#opts,
      onError: (d, n) => {
        this.#opts.onError?.(d, n);
        // A 404 here is most likely the CRD going away: ask discovery now, not at the next tick.
        if (this.#inner === inner) void this.discover();
      },
    });
    for (const ev of ["add", "update", "delete"] as const)
      inner.on(ev, (obj) => {
        // A stopped informer's late watch events must not reach consumers.
        if (this.#inner !== inner) return;
        for (const cb of [...this.#listeners[ev]]) cb(obj);
      });
    this.#inner = inner;
    inner.start();
  }

  async #dropInner(): Promise<void> {
    const inner = this.#inner;
    if (!inner) return;
    this.#inner = undefined;
    await inner.stop();
    for (const obj of inner.list()) for (const cb of [...this.#listeners.delete]) cb(obj);
  }

  hasSynced(): boolean {
    if (!this.#synced && (this.#served === false || (this.#inner?.hasSynced() ?? false))) this.#synced = true;
    return this.#synced;
  }

  waitForSync(timeoutMs?: number): Promise<void> {
    if (this.hasSynced()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const poll = setInterval(() => {
        if (this.#stopped) finish(new Error(`informer ${this.resource.plural}: stopped before sync`));
        else if (this.hasSynced()) finish();
      }, 20);
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(
              () => finish(new Error(`informer ${this.resource.plural}: not synced within ${timeoutMs} ms`)),
              timeoutMs,
            );
      const finish = (err?: Error) => {
        clearInterval(poll);
        if (timer) clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
    });
  }

  list(namespace?: string): ReadonlyArray<T> {
    return this.#inner?.list(namespace) ?? [];
  }

  get(name: string, namespace?: string): T | undefined {
    return this.#inner?.get(name, namespace);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#discovering?.catch(() => {});
    // Keep the inner informer's frozen cache readable after stop, as Informer.stop does.
    await this.#inner?.stop();
  }
}
