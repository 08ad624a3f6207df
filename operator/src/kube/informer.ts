// A watch-backed cache that survives errors. client-node's ListWatch relists on 410 Gone and
// resumes after a normal close, but on any other error (a failed list, a 404 when a CRD is gone,
// a refused connection) it fires `error` and stops for good; start() even resolves when the first
// list fails. This wrapper registers the error handler before starting and restarts the same
// ListWatch with exponential backoff, so the cache (last good state) is kept while the server is
// unreachable and the resume uses the last resourceVersion (a relist happens only on 410).
import {
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  ListWatch,
  Watch,
} from "@kubernetes/client-node";
import { describeError } from "./errors.ts";
import { rawList } from "./raw.ts";
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
}

export class Informer<T extends KubernetesObject> {
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
    const listFn = async (): Promise<KubernetesListObject<T>> => {
      const list = await rawList<T>(kc, path, {
        labelSelector: opts.labelSelector,
        fieldSelector: opts.fieldSelector,
      });
      this.listReturned = true;
      return list;
    };
    this.lw = new ListWatch<T>(path, new Watch(kc), listFn, false, opts.labelSelector, opts.fieldSelector);
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
