// What one reconcile pass did and how long each of its steps took: the clock the pass runs its steps
// under (so the steps themselves carry no timing code) and the structured fields of its one log line.
import type { SyncReport } from "../datapath/writer/sync.ts";

export type PassPhase = "resolve" | "compile" | "sync";

// What one reconcile pass did (logs, metrics, tests).
export interface PassReport {
  keys: number;
  full: boolean;
  recompiled: number;
  universeRebuilt: boolean;
  peersChanged: boolean;
  endpoints: number;
  sync: SyncReport;
  // Time spent: from the oldest event to the pass; recording changes and compiling; resolving
  // interfaces; writing the maps; in total.
  queuedMs: number;
  compileMs: number;
  resolveMs: number;
  syncMs: number;
  totalMs: number;
}

// Accumulates the time of each phase of one pass; a phase may run more than once (a full pass
// resolves interfaces before and after compiling).
export class PassClock {
  readonly #t0: number;
  readonly #now: () => number;
  readonly queuedMs: number;
  readonly #ms: Record<PassPhase, number> = { resolve: 0, compile: 0, sync: 0 };

  constructor(queuedMs: number, now: () => number = () => performance.now()) {
    this.#now = now;
    this.#t0 = now();
    this.queuedMs = queuedMs;
  }

  time<T>(phase: PassPhase, fn: () => T): T {
    const t = this.#now();
    try {
      return fn();
    } finally {
      this.#ms[phase] += this.#now() - t;
    }
  }

  async timeAsync<T>(phase: PassPhase, fn: () => Promise<T>): Promise<T> {
    const t = this.#now();
    try {
      return await fn();
    } finally {
      this.#ms[phase] += this.#now() - t;
    }
  }

  ms(phase: PassPhase): number {
    return this.#ms[phase];
  }

  elapsedMs(): number {
    return this.#now() - this.#t0;
  }
}

// A pass that changed nothing in the maps (a resync, a requeued pending endpoint, an event that
// mapped to keys but compiled to the same state): logged at debug so an idle node stays quiet.
export function passWroteNothing(s: SyncReport): boolean {
  return (
    s.policyWritten +
      s.policyDeleted +
      s.ipcacheWritten +
      s.ipcacheDeleted +
      s.endpointsWritten +
      s.endpointsDeleted ===
    0
  );
}

const round = (ms: number) => Math.round(ms * 100) / 100;

// The fields of a pass's log line: counts, then durations in ms (rounded to 10 µs).
export function passLogFields(p: PassReport): Record<string, number | boolean> {
  const s = p.sync;
  return {
    keys: p.keys,
    full: p.full,
    recompiled: p.recompiled,
    endpoints: p.endpoints,
    pending: s.pending.length,
    policy_written: s.policyWritten,
    policy_deleted: s.policyDeleted,
    flips: s.flips,
    ipcache_written: s.ipcacheWritten,
    ipcache_deleted: s.ipcacheDeleted,
    endpoints_written: s.endpointsWritten,
    endpoints_deleted: s.endpointsDeleted,
    queued_ms: round(p.queuedMs),
    compile_ms: round(p.compileMs),
    resolve_ms: round(p.resolveMs),
    sync_ms: round(p.syncMs),
    total_ms: round(p.totalMs),
  };
}
