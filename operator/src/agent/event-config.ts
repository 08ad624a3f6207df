// How many verdicts the datapath reports as flow events (sl_config): shared by both agent modes.
import type { Datapath } from "../datapath/kernel/programs.ts";

export interface EventSampling {
  // Report 1 of N allowed / denied packets; 0 reports none.
  sampleAllow: number;
  sampleDeny: number;
  // Per-CPU rate limit of reported events.
  perSecond: number;
}

export function writeEventSampling(dp: Datapath, s: EventSampling): void {
  dp.maps.config.write({
    event_sample_allow: s.sampleAllow,
    event_sample_deny: s.sampleDeny,
    events_per_sec: s.perSecond,
    flags: 0,
  });
}
