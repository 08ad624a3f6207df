// Leader election on a coordination.k8s.io/v1 Lease, as client-go's tools/leaderelection:
// - a candidate acquires the lease when it is free or its holder has not renewed it within
//   leaseDuration, measured on the candidate's own clock (no trust in other machines' clocks) from
//   the last poll that still saw the previous record: the renewal happened after that poll. That
//   bound is only used when polls are closer together than leaseDuration - renewDeadline (minus a
//   margin), which is what keeps it safe: the old holder stopped acting renewDeadline after its
//   renewal. A waiting candidate wakes exactly at expiry, so a killed leader is replaced within
//   leaseDuration of its last renewal;
// - every write carries the lease's resourceVersion, so of two candidates at most one wins;
// - the leader renews every retryPeriod; if it cannot renew within renewDeadline (< leaseDuration)
//   it stops leading at once: the AbortSignal given to onStartedLeading fires before anyone else
//   can acquire the lease, so two leaders never act at the same time unless a clock runs more than
//   (leaseDuration - renewDeadline) fast;
// - stop() releases the lease (holder cleared, duration 1 s) so a successor takes over at once.
import type { KubeConfig } from "@kubernetes/client-node";
import { describeError, isAlreadyExists, isConflict, isNotFound } from "../kube/errors.ts";
import { rawRequest } from "../kube/raw.ts";

export interface LeaderElectionConfig {
  namespace: string;
  name: string;
  /** This replica's identity (pod name + random suffix). */
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Leader work; the signal aborts the moment leadership is lost or stop() is called. */
  onStartedLeading: (signal: AbortSignal) => void | Promise<void>;
  onStoppedLeading?: () => void;
  /** Another replica became (or is) leader. */
  onNewLeader?: (identity: string) => void;
  /** `op` says which step failed (for metrics); the description is safe to log. */
  onError?: (description: string, op: LeaseOp) => void;
}

/** The lease requests (and the leader's own work) whose failures onError reports. */
export type LeaseOp = "get" | "create" | "update" | "release" | "leader-work";

interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number;
}

interface Lease {
  apiVersion: "coordination.k8s.io/v1";
  kind: "Lease";
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: LeaseSpec;
}

/** metav1.MicroTime wants exactly six fractional digits. */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });

export class LeaderElector {
  private readonly kc: KubeConfig;
  private readonly cfg: Required<
    Pick<LeaderElectionConfig, "leaseDurationMs" | "renewDeadlineMs" | "retryPeriodMs">
  > &
    LeaderElectionConfig;
  private readonly path: string;
  private observed: Lease | undefined;
  /** Local monotonic time by which the observed record had last changed (a lower bound). */
  private observedAt = 0;
  /** Local monotonic time of the last observation, changed or not. */
  private lastObservation = 0;
  private leading: AbortController | undefined;
  private readonly stopCtl = new AbortController();
  private loop: Promise<void> | undefined;
  private lastLeader = "";
  /** Local monotonic time of the last successful acquire or renewal while leading. */
  private lastRenewAt = 0;

  constructor(kc: KubeConfig, cfg: LeaderElectionConfig) {
    this.kc = kc;
    this.cfg = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...cfg };
    if (this.cfg.renewDeadlineMs >= this.cfg.leaseDurationMs) {
      throw new Error("leader election: renewDeadline must be shorter than leaseDuration");
    }
    if (this.cfg.retryPeriodMs * 1.2 >= this.cfg.renewDeadlineMs) {
      throw new Error("leader election: retryPeriod (with jitter) must be shorter than renewDeadline");
    }
    if (this.cfg.leaseDurationMs % 1000 !== 0) {
      // The Lease API stores whole seconds; a rounded-up duration would make others wait longer.
      throw new Error("leader election: leaseDuration must be a whole number of seconds");
    }
    this.path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(cfg.namespace)}/leases`;
  }

  isLeader(): boolean {
    return this.leading !== undefined && !this.leading.signal.aborted;
  }

  /**
   * While leading, milliseconds since the lease was last acquired or renewed; undefined otherwise.
   * The renew loop gives up after renewDeadline, so a value past leaseDuration means it is wedged.
   */
  renewedAgoMs(): number | undefined {
    return this.isLeader() ? performance.now() - this.lastRenewAt : undefined;
  }

  get leaseDurationMs(): number {
    return this.cfg.leaseDurationMs;
  }

  /** The holder as last observed ("" when unknown or free). */
  get leader(): string {
    return this.observed?.spec.holderIdentity ?? "";
  }

  /** Starts campaigning in the background. */
  start(): void {
    this.loop ??= this.run();
  }

  private async run(): Promise<void> {
    const signal = this.stopCtl.signal;
    while (!signal.aborted) {
      // Acquire.
      while (!signal.aborted) {
        if (await this.tryAcquireOrRenew()) break;
        await sleep(this.untilNextAttempt(), signal);
      }
      if (signal.aborted) return;
      const ctl = new AbortController();
      this.leading = ctl;
      let lastRenew = performance.now();
      this.lastRenewAt = lastRenew;
      void Promise.resolve()
        .then(() => this.cfg.onStartedLeading(ctl.signal))
        .catch((err) => this.cfg.onError?.(`leader work failed: ${describeError(err)}`, "leader-work"));
      // Renew until a renewal does not succeed within renewDeadline.
      while (!signal.aborted) {
        // Never sleep past the renew deadline: leadership ends exactly renewDeadline after the last
        // renewal, which is what lets candidates count from their last poll.
        const left = this.cfg.renewDeadlineMs - (performance.now() - lastRenew);
        await sleep(Math.max(0, Math.min(this.cfg.retryPeriodMs, left)), signal);
        if (signal.aborted) break;
        const remaining = this.cfg.renewDeadlineMs - (performance.now() - lastRenew);
        const ok = remaining > 0 && (await this.tryAcquireOrRenew(remaining));
        if (ok) {
          lastRenew = performance.now();
          this.lastRenewAt = lastRenew;
          continue;
        }
        if (performance.now() - lastRenew >= this.cfg.renewDeadlineMs || !this.holdsObserved()) break;
      }
      this.stopLeading();
      if (signal.aborted) return;
    }
  }

  private stopLeading(): void {
    const ctl = this.leading;
    if (!ctl) return;
    this.leading = undefined;
    ctl.abort();
    this.cfg.onStoppedLeading?.();
  }

  private holdsObserved(): boolean {
    return this.observed?.spec.holderIdentity === this.cfg.identity;
  }

  private jitter(ms: number): number {
    return ms * (1 + Math.random() * 0.2);
  }

  /** A candidate polls every retryPeriod, but wakes right at the observed holder's expiry. */
  private untilNextAttempt(): number {
    const poll = this.jitter(this.cfg.retryPeriodMs);
    const holder = this.observed?.spec.holderIdentity;
    if (!holder || holder === this.cfg.identity) return poll;
    const expiresIn = this.observedAt + this.heldMs(this.observed!) - performance.now();
    return Math.max(0, Math.min(poll, expiresIn + 1));
  }

  private heldMs(lease: Lease): number {
    return (lease.spec.leaseDurationSeconds ?? this.cfg.leaseDurationMs / 1000) * 1000;
  }

  /**
   * The widest gap between two polls for which "changed after the earlier poll" is a safe
   * expiry base: the holder acts until renewDeadline after its renewal (plus its request latency),
   * and the candidate must not count from earlier than that allows.
   */
  private maxTrustedGap(): number {
    const slack = this.cfg.leaseDurationMs - this.cfg.renewDeadlineMs;
    return slack - Math.max(100, slack / 4);
  }

  private observe(lease: Lease): void {
    const prev = this.observed;
    const changed =
      !prev ||
      prev.spec.holderIdentity !== lease.spec.holderIdentity ||
      prev.spec.renewTime !== lease.spec.renewTime ||
      prev.spec.acquireTime !== lease.spec.acquireTime ||
      prev.spec.leaseDurationSeconds !== lease.spec.leaseDurationSeconds;
    const now = performance.now();
    this.observed = lease;
    if (changed)
      this.observedAt =
        prev && now - this.lastObservation <= this.maxTrustedGap() ? this.lastObservation : now;
    this.lastObservation = now;
    const holder = lease.spec.holderIdentity ?? "";
    if (holder && holder !== this.lastLeader) {
      this.lastLeader = holder;
      if (holder !== this.cfg.identity) this.cfg.onNewLeader?.(holder);
    }
  }

  /** One attempt; true when this replica holds the lease afterwards. */
  private async tryAcquireOrRenew(timeoutMs = this.cfg.renewDeadlineMs): Promise<boolean> {
    const now = new Date();
    const durationS = Math.ceil(this.cfg.leaseDurationMs / 1000);
    const reqOpts = { timeoutMs: Math.max(100, Math.min(timeoutMs, this.cfg.renewDeadlineMs)) };
    let current: Lease;
    try {
      current = await rawRequest<Lease>(this.kc, "GET", `${this.path}/${this.cfg.name}`, undefined, reqOpts);
    } catch (err) {
      if (!isNotFound(err)) {
        this.cfg.onError?.(`lease ${this.cfg.namespace}/${this.cfg.name}: ${describeError(err)}`, "get");
        return false;
      }
      const fresh: Lease = {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name: this.cfg.name, namespace: this.cfg.namespace },
        spec: {
          holderIdentity: this.cfg.identity,
          leaseDurationSeconds: durationS,
          acquireTime: microTime(now),
          renewTime: microTime(now),
          leaseTransitions: 0,
        },
      };
      try {
        this.observe(await rawRequest<Lease>(this.kc, "POST", this.path, fresh, reqOpts));
        return true;
      } catch (err2) {
        if (!isAlreadyExists(err2)) this.cfg.onError?.(`create lease: ${describeError(err2)}`, "create");
        return false;
      }
    }
    this.observe(current);
    const holder = current.spec.holderIdentity ?? "";
    const mine = holder === this.cfg.identity;
    if (holder && !mine && this.observedAt + this.heldMs(current) > performance.now()) return false;
    const spec: LeaseSpec = {
      ...current.spec,
      holderIdentity: this.cfg.identity,
      leaseDurationSeconds: durationS,
      renewTime: microTime(now),
    };
    if (!mine) {
      spec.acquireTime = microTime(now);
      spec.leaseTransitions = (current.spec.leaseTransitions ?? 0) + 1;
    }
    try {
      const updated = await rawRequest<Lease>(
        this.kc,
        "PUT",
        `${this.path}/${this.cfg.name}`,
        { ...current, spec },
        reqOpts,
      );
      this.observe(updated);
      return true;
    } catch (err) {
      if (!isConflict(err)) this.cfg.onError?.(`update lease: ${describeError(err)}`, "update");
      return false;
    }
  }

  /** Stops campaigning; a leader stops its work first and then releases the lease. */
  async stop(): Promise<void> {
    const wasLeader = this.isLeader();
    this.stopCtl.abort();
    this.stopLeading();
    await this.loop;
    if (!wasLeader || !this.observed || !this.holdsObserved()) return;
    const released: Lease = {
      ...this.observed,
      spec: {
        ...this.observed.spec,
        holderIdentity: null,
        leaseDurationSeconds: 1,
        renewTime: microTime(new Date()),
        acquireTime: null,
      },
    };
    try {
      await rawRequest(this.kc, "PUT", `${this.path}/${this.cfg.name}`, released, { timeoutMs: 5_000 });
    } catch (err) {
      this.cfg.onError?.(`release lease: ${describeError(err)}`, "release");
    }
  }
}
