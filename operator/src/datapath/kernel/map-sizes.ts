// The datapath's configurable map sizes (agent flags --map-*-entries, chart values agent.maps.*): from
// the four numbers an operator chooses to the max_entries of each pinned map, and what happens when
// the node already has the maps pinned with other sizes. The build's sizes (enum sl_capacity in
// bpf/include/sluice_shared.h) are the defaults.
//
// A pinned map cannot change size, and libbpf refuses to reuse a pin of another size. A map pinned
// smaller than configured is grown: created anew beside it and filled from it (map-resize.ts),
// so nothing it holds is lost. A map pinned bigger is kept at its size (shrinking could not hold what
// it has): the configured size takes effect when the pins are created again (a node reboot, `sluice
// datapath remove`, a layout upgrade). The capacity the writer checks and the metrics report is
// always the size the kernel has.
import type { BpfAddon } from "./bpf-addon.ts";
import { enums } from "../codec/layout.generated.ts";
import { MapNames, pinnedMaxEntries } from "./maps.ts";
import type { DatapathPins } from "./pins.ts";

const CAP = enums.sl_capacity;
const PER_ENDPOINT = enums.sl_counters.SL_COUNTERS_PER_ENDPOINT;
// Own addresses per endpoint slot in sl_src (sluice_shared.h: SL_MAX_SOURCES = endpoints x 4).
const SOURCES_PER_ENDPOINT = CAP.SL_MAX_SOURCES / CAP.SL_MAX_ENDPOINTS;

export interface MapSizes {
  // Entries of each policy map (sl_pset, sl_pexact, sl_pol); every endpoint holds two generations.
  policy: number;
  // Prefixes of each ipcache map (the host hash per family, the LPM trie).
  ipcache: number;
  // Local endpoints (sl_ep); the counters (sl_cnt) and own addresses (sl_src) follow it.
  endpoints: number;
  // Tracked flows per family (sl_ct4, sl_ct6; LRU, preallocated: memory is spent up front).
  conntrack: number;
}

export const DEFAULT_MAP_SIZES: Readonly<MapSizes> = {
  policy: CAP.SL_MAX_POLICY,
  ipcache: CAP.SL_MAX_IPCACHE,
  endpoints: CAP.SL_MAX_ENDPOINTS,
  conntrack: CAP.SL_MAX_CONNTRACK,
};

// Bounds of each size: the endpoint slot is a __u16 (struct sl_endpoint_value), and a map of a few
// entries cannot hold the datapath's own state.
export const MAP_SIZE_LIMITS: Readonly<Record<keyof MapSizes, { min: number; max: number }>> = {
  policy: { min: 16, max: 1 << 26 },
  ipcache: { min: 16, max: 1 << 26 },
  endpoints: { min: 1, max: 1 << 16 },
  conntrack: { min: 1024, max: 1 << 26 },
};

// max_entries of every sized map, by pin name.
export function maxEntriesOf(s: MapSizes): Record<string, number> {
  return {
    [MapNames.policySets]: s.policy,
    [MapNames.policyExact]: s.policy,
    [MapNames.policyLpm]: s.policy,
    [MapNames.ipHosts4]: s.ipcache,
    [MapNames.ipHosts6]: s.ipcache,
    [MapNames.ipcache]: s.ipcache,
    [MapNames.endpoints]: s.endpoints,
    [MapNames.counters]: s.endpoints * PER_ENDPOINT,
    [MapNames.sources]: s.endpoints * SOURCES_PER_ENDPOINT,
    [MapNames.conntrack4]: s.conntrack,
    [MapNames.conntrack6]: s.conntrack,
  };
}

// A pinned map whose size is not the configured one: grown to it, or kept at its pinned size.
export interface KeptMapSize {
  map: string;
  pinned: number;
  configured: number;
}

// The max_entries to load with: the configured sizes, except for maps pinned bigger, which keep
// theirs (kept). Maps pinned smaller are listed in grow: they load at the configured size.
export function sizesForLoad(
  addon: BpfAddon,
  pins: DatapathPins,
  sizes: MapSizes,
): { maxEntries: Record<string, number>; kept: KeptMapSize[]; grow: KeptMapSize[] } {
  const maxEntries = maxEntriesOf(sizes);
  const kept: KeptMapSize[] = [];
  const grow: KeptMapSize[] = [];
  for (const [name, configured] of Object.entries(maxEntries)) {
    const pinned = pinnedMaxEntries(addon, pins, name);
    if (pinned === undefined || pinned === configured) continue;
    if (pinned < configured) {
      grow.push({ map: name, pinned, configured });
      continue;
    }
    maxEntries[name] = pinned;
    kept.push({ map: name, pinned, configured });
  }
  return { maxEntries, kept, grow };
}

// The sizes of the maps listed, set back to what is pinned (a resize given up).
export function keepPinned(
  maxEntries: Record<string, number>,
  grow: readonly KeptMapSize[],
): Record<string, number> {
  const out = { ...maxEntries };
  for (const g of grow) out[g.map] = g.pinned;
  return out;
}

export function describeKeptSizes(kept: readonly KeptMapSize[]): string {
  return `pinned maps bigger than configured keep their size until the pins are created again: ${kept
    .map((k) => `${k.map} ${k.pinned} (configured ${k.configured})`)
    .join(", ")}`;
}
