// The datapath's configuration (sl_config), written only here: how many verdicts it reports as flow
// events, and whether it routes between the node's pods itself (SL_CFG_HOST_ROUTING, host-routing.ts).
// Each part is written on its own and keeps the other's: both agent modes set the sampling at start,
// the enforcer the routing before each write of the maps.
import { enums } from "../datapath/codec/layout.generated.ts";
import type { Config } from "../datapath/codec/codecs.ts";
import type { Datapath } from "../datapath/kernel/programs.ts";

const HOST_ROUTING = enums.sl_config_flags.SL_CFG_HOST_ROUTING;

export interface EventSampling {
  // Report 1 of N allowed / denied packets; 0 reports none.
  sampleAllow: number;
  sampleDeny: number;
  // Per-CPU rate limit of reported events.
  perSecond: number;
}

export function writeEventSampling(dp: Datapath, s: EventSampling): void {
  dp.maps.config.write({
    ...dp.maps.config.read(),
    event_sample_allow: s.sampleAllow,
    event_sample_deny: s.sampleDeny,
    events_per_sec: s.perSecond,
  });
}

function hostRoutingOn(c: Config): boolean {
  return (c.flags & HOST_ROUTING) !== 0;
}

// Sets or clears SL_CFG_HOST_ROUTING; writes only on a change. Returns whether it changed.
export function writeHostRouting(dp: Datapath, on: boolean): boolean {
  const c = dp.maps.config.read();
  if (hostRoutingOn(c) === on) return false;
  dp.maps.config.write({ ...c, flags: on ? c.flags | HOST_ROUTING : c.flags & ~HOST_ROUTING });
  return true;
}
