// The agent's state as /healthz and /readyz see it. Ready: every cache synced, the datapath written
// and attached by a first pass, and the last pass succeeded (while passes fail the maps keep the last
// good state, which may not be the current policy). Live: besides the event loop, the reconciler is
// not wedged: no pass runs for longer than the limit, and queued keys do not wait that long for one
// (the worker would have taken them). Pure: the caller reports what happens and supplies the clock.
import type { HealthCheck } from "../observe/health.ts";

export interface AgentHealthOptions {
  // A pass running, or keys waiting for one, longer than this means the reconciler is stuck.
  wedgedAfterMs?: number;
  now?: () => number;
}

export class AgentHealth {
  readonly #wedgedAfterMs: number;
  readonly #now: () => number;
  #synced = false;
  #written = false;
  #lastError: string | undefined;
  #passSince: number | undefined;
  #waitingSince: number | undefined;

  constructor(o: AgentHealthOptions = {}) {
    this.#wedgedAfterMs = o.wedgedAfterMs ?? 120_000;
    this.#now = o.now ?? Date.now;
  }

  cachesSynced(): void {
    this.#synced = true;
  }

  // Keys were queued (the first of a batch: later ones do not move the mark).
  keysQueued(): void {
    this.#waitingSince ??= this.#now();
  }

  passStarted(): void {
    this.#passSince = this.#now();
    this.#waitingSince = undefined;
  }

  passSucceeded(): void {
    this.#passSince = undefined;
    this.#written = true;
    this.#lastError = undefined;
  }

  passFailed(reason: string): void {
    this.#passSince = undefined;
    this.#lastError = reason;
  }

  readonly ready: HealthCheck = {
    name: "policy-written",
    check: () => {
      if (!this.#synced) return "the API caches have not synced yet";
      if (this.#lastError !== undefined) return `last reconcile failed: ${this.#lastError}`;
      if (!this.#written) return "the datapath has not been written yet";
      return undefined;
    },
  };

  readonly live: HealthCheck = {
    name: "reconciler",
    check: () => {
      const now = this.#now();
      const limit = this.#wedgedAfterMs;
      if (this.#passSince !== undefined && now - this.#passSince > limit)
        return `a reconcile pass has been running for ${Math.round((now - this.#passSince) / 1000)} s`;
      if (this.#waitingSince !== undefined && now - this.#waitingSince > limit)
        return `queued keys have waited ${Math.round((now - this.#waitingSince) / 1000)} s for a reconcile pass`;
      return undefined;
    },
  };
}
