// Major garbage collections asked of V8 where a daemon knows it left much garbage behind. At issue 14's
// scale both daemons allocate in bursts whose objects live long enough to be promoted (an agent pass
// that rebuilds the peer universe holds 50,000 addresses, their groups, the ipcache and its diff for
// the whole pass; the operator lists 50,000 pods and writes thousands of identities), and V8 grew the
// old generation faster than it collected it: after the scale rig's churn the agent was at 700–900
// MiB resident against a live heap near 120 MiB (the chart's limit is 1 GiB) and the operator at
// 550–750 MiB (docs/performance.md, Scale). Two triggers:
// - afterPass(rebuilt): the agent, after a pass that rebuilt its universe;
// - watchGrowth(): the operator, whose bursts have no single end, every few seconds when the heap
//   in use has grown past a multiple of what the last collection left.
// The collection is V8's own (`gc`, installed by --expose-gc, which the chart's nodeOptions give both
// daemons), asked for asynchronously so it runs between tasks, never inside a pass; without the flag
// nothing happens. At most one per minIntervalMs. The first after a quiet minute (the agent's initial
// sync, the operator's first allocation, a burst after calm) is V8's thorough kind ("last-resort":
// repeated collections that compact and hand free pages back to the system; ~270 ms for a 150 MiB heap
// here, against ~90 ms), which brought a test heap's RSS from 360 to 210 MiB where a plain collection
// left it at 360; collections back to back, as under churn, are the plain kind.
import { getHeapStatistics } from "node:v8";

type GcFlavor = "regular" | "last-resort";
type GcFunction = (options: { type: "major"; execution: "async"; flavor: GcFlavor }) => unknown;

export interface HeapReliefOptions {
  // V8's gc function (undefined: none); left out, the one --expose-gc installs, if any.
  gc?: GcFunction;
  minIntervalMs?: number;
  // A collection this long after the previous one is the thorough kind (default 60 s).
  quietMs?: number;
  now?: () => number;
  // Bytes of heap in use (default V8's used_heap_size).
  heapUsed?: () => number;
}

export interface GrowthOptions {
  intervalMs?: number;
  // A collection once the heap in use exceeds this multiple of what the last one left...
  factor?: number;
  // ...and has grown by at least this many bytes since.
  minGrowthBytes?: number;
}

const DEFAULT_MIN_INTERVAL_MS = 1000;
const DEFAULT_QUIET_MS = 60_000;

export class HeapRelief {
  readonly #gc: GcFunction | undefined;
  readonly #minIntervalMs: number;
  readonly #quietMs: number;
  readonly #now: () => number;
  readonly #heapUsed: () => number;
  #last = Number.NEGATIVE_INFINITY;
  #running = false;
  // What the last collection left (bytes in use after it); at first, what was in use at start.
  #left: number;
  // Collections asked for (tests).
  requested = 0;

  constructor(o: HeapReliefOptions = {}) {
    this.#gc = "gc" in o ? o.gc : (globalThis as { gc?: GcFunction }).gc;
    this.#minIntervalMs = o.minIntervalMs ?? DEFAULT_MIN_INTERVAL_MS;
    this.#quietMs = o.quietMs ?? DEFAULT_QUIET_MS;
    this.#now = o.now ?? (() => performance.now());
    this.#heapUsed = o.heapUsed ?? (() => getHeapStatistics().used_heap_size);
    this.#left = this.#heapUsed();
  }

  // Whether collections can be asked for at all (--expose-gc given).
  get enabled(): boolean {
    return this.#gc !== undefined;
  }

  // After an agent pass: a collection when the pass rebuilt the universe. Returns whether it asked.
  afterPass(rebuiltUniverse: boolean): boolean {
    if (!rebuiltUniverse) return false;
    return this.#collect() !== undefined;
  }

  // One growth check: a collection when the heap in use is past factor × what the last one left.
  // Resolves with whether it asked (after the collection, when it did).
  async checkGrowth(o: GrowthOptions = {}): Promise<boolean> {
    const used = this.#heapUsed();
    const factor = o.factor ?? 2;
    const minGrowth = o.minGrowthBytes ?? 32 * 1024 * 1024;
    if (used < this.#left * factor || used - this.#left < minGrowth) return false;
    const done = this.#collect();
    if (!done) return false;
    await done;
    this.#left = this.#heapUsed();
    return true;
  }

  // Growth checks every intervalMs (default 5 s) until the returned function is called.
  watchGrowth(o: GrowthOptions = {}): () => void {
    if (!this.#gc) return () => {};
    const timer = setInterval(() => void this.checkGrowth(o), o.intervalMs ?? 5000);
    timer.unref();
    return () => clearInterval(timer);
  }

  // Asks for a collection unless one is running, was asked for within the interval, or gc is absent.
  #collect(): Promise<void> | undefined {
    const gc = this.#gc;
    if (!gc || this.#running) return undefined;
    const now = this.#now();
    const since = now - this.#last;
    if (since < this.#minIntervalMs) return undefined;
    const flavor: GcFlavor = since >= this.#quietMs ? "last-resort" : "regular";
    this.#last = now;
    this.#running = true;
    this.requested++;
    // A promise when asynchronous; a failure (none is documented) must not reach the caller.
    return Promise.resolve()
      .then(() => gc({ type: "major", execution: "async", flavor }))
      .catch(() => {})
      .finally(() => {
        this.#running = false;
      }) as Promise<void>;
  }
}
