// The operator's health checks beyond the event loop, for /healthz and /readyz. Readiness means this
// replica could act right now: its caches have synced and the lease has a known holder (itself, or
// another replica it stands by for; a standby is ready, since a Deployment rollout must not wait for
// the one leader). Liveness fails only on what a restart cures: a leader whose renew loop has not
// renewed for longer than the lease lasts is wedged (the loop itself gives up after renewDeadline),
// where an unreachable API server is not a reason to restart.
import type { HealthCheck } from "../observe/health.ts";

export interface SyncState {
  hasSynced(): boolean;
}

export function cachesSyncedCheck(caches: Readonly<Record<string, SyncState>>): HealthCheck {
  return {
    name: "caches",
    check() {
      const pending = Object.entries(caches)
        .filter(([, c]) => !c.hasSynced())
        .map(([name]) => name);
      return pending.length ? `not synced: ${pending.join(", ")}` : undefined;
    },
  };
}

export interface LeadershipState {
  isLeader(): boolean;
  /** The lease holder as last observed; "" when unknown or free. */
  readonly leader: string;
}

export function leaderKnownCheck(self: string, e: LeadershipState): HealthCheck {
  return {
    name: "leader-election",
    check() {
      if (e.isLeader()) return undefined;
      const holder = e.leader;
      if (!holder) return "no leader known yet";
      // Our own name on the lease while we do not lead: a term just ended, the next poll decides.
      if (holder === self) return "lost the lease; campaigning again";
      return undefined;
    },
  };
}

export interface RenewState {
  renewedAgoMs(): number | undefined;
  readonly leaseDurationMs: number;
}

/** client-go's leader-election healthz adapter uses the same 20 s tolerance past the lease. */
export function leaseRenewalCheck(e: RenewState, toleranceMs = 20_000): HealthCheck {
  return {
    name: "lease-renewal",
    check() {
      const ago = e.renewedAgoMs();
      if (ago === undefined || ago <= e.leaseDurationMs + toleranceMs) return undefined;
      return `leading but the lease was last renewed ${(ago / 1000).toFixed(1)} s ago (lease ${e.leaseDurationMs / 1000} s)`;
    },
  };
}
