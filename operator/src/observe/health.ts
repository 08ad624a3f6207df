// Health checks for /healthz and /readyz: named checks that return undefined when healthy or the
// reason they are not. The event-loop check is shared by every daemon: a loop blocked for longer
// than the limit within the window fails liveness, with the stall in the reason.
import { monitorEventLoopDelay, type ELDHistogram } from "node:perf_hooks";

export interface HealthCheck {
  name: string;
  /** undefined when healthy, else why not (one line). */
  check(): string | undefined;
}

export interface EventLoopCheckOptions {
  /** A stall longer than this fails the check. */
  maxStallMs?: number;
  /** How long a stall keeps the check failing after it ended. */
  windowMs?: number;
}

export class EventLoopCheck implements HealthCheck {
  readonly name = "event-loop";
  readonly #histogram: ELDHistogram;
  readonly #maxStallNs: number;
  readonly #windowMs: number;
  readonly #timer: NodeJS.Timeout;
  #worstNs = 0;
  #worstAt = 0;

  constructor(o: EventLoopCheckOptions = {}) {
    this.#maxStallNs = (o.maxStallMs ?? 5000) * 1e6;
    this.#windowMs = o.windowMs ?? 30_000;
    this.#histogram = monitorEventLoopDelay({ resolution: 20 });
    this.#histogram.enable();
    // Folding the histogram into the worst stall on a timer would miss the stall that is still going
    // on when a probe arrives; check() folds it too, so the probe that waited behind it sees it.
    this.#timer = setInterval(() => this.#fold(), 1000);
    this.#timer.unref();
  }

  #fold(): void {
    const max = this.#histogram.max;
    this.#histogram.reset();
    const now = Date.now();
    if (max >= this.#worstNs || now - this.#worstAt > this.#windowMs) {
      this.#worstNs = max;
      this.#worstAt = now;
    }
  }

  check(): string | undefined {
    this.#fold();
    if (this.#worstNs <= this.#maxStallNs || Date.now() - this.#worstAt > this.#windowMs) return undefined;
    return `event loop blocked for ${(this.#worstNs / 1e9).toFixed(1)} s (limit ${(this.#maxStallNs / 1e9).toFixed(1)} s) within the last ${Math.round(this.#windowMs / 1000)} s`;
  }

  close(): void {
    clearInterval(this.#timer);
    this.#histogram.disable();
  }
}

/** The first failure of a set of checks, for one-line answers. */
export function failures(checks: readonly HealthCheck[]): { name: string; reason: string }[] {
  const out: { name: string; reason: string }[] = [];
  for (const c of checks) {
    let reason: string | undefined;
    try {
      reason = c.check();
    } catch (e) {
      reason = `check failed: ${e instanceof Error ? e.message : String(e)}`;
    }
    if (reason !== undefined) out.push({ name: c.name, reason });
  }
  return out;
}
