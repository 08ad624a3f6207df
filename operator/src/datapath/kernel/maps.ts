// The datapath's maps, typed. Names carry the layout version (bpf/include/sluice_maps.h); they are
// found either in a freshly loaded object or as pins under the bpffs root (CLI inspection, adoption).
import { unlinkSync } from "node:fs";
import { type BpfAddon, hasErrnoCode, type LoadedObject } from "./bpf-addon.ts";
import * as C from "../codec/codecs.ts";
import { enums } from "../codec/layout.generated.ts";
import { DatapathPins } from "./pins.ts";
import { RuleCounterMap } from "./rule-counters.ts";
import { PerCpuMap, TypedMap, u32Key } from "./typed-map.ts";

// The one datapath version: SL_LAYOUT_VERSION of bpf/include/sluice_shared.h, read from the generated
// layout. Every pinned map name carries it, and the node status reports it (DATAPATH_VERSION).
export const LAYOUT_VERSION = enums.sl_layout.SL_LAYOUT_VERSION;
const VERSION = LAYOUT_VERSION;
export const DATAPATH_VERSION = `sluice-bpf-v${LAYOUT_VERSION}`;

export const MapNames = {
  ipHosts4: `sl_ip4h_v${VERSION}`,
  ipHosts6: `sl_ip6h_v${VERSION}`,
  ipcache: `sl_ipc_v${VERSION}`,
  endpoints: `sl_ep_v${VERSION}`,
  policySets: `sl_pset_v${VERSION}`,
  policyExact: `sl_pexact_v${VERSION}`,
  policyLpm: `sl_pol_v${VERSION}`,
  conntrack4: `sl_ct4_v${VERSION}`,
  conntrack6: `sl_ct6_v${VERSION}`,
  fragments: `sl_frag_v${VERSION}`,
  sources: `sl_src_v${VERSION}`,
  counters: `sl_cnt_v${VERSION}`,
  verdicts: `sl_vcnt_v${VERSION}`,
  ruleCounters: `sl_rcnt_v${VERSION}`,
  events: `sl_evt_v${VERSION}`,
  config: `sl_cfg_v${VERSION}`,
} as const;

export type CounterTotals = C.CounterValue;

const PER_ENDPOINT = enums.sl_counters.SL_COUNTERS_PER_ENDPOINT;
const VERDICT_ALLOW = enums.sl_verdict.SL_VERDICT_ALLOW;

// The index of an endpoint's counter (bpf/include/sluice_shared.h, enum sl_counters).
export function counterIndex(slot: number, dir: number, verdict: number): number {
  return slot * PER_ENDPOINT + dir * 2 + (verdict === VERDICT_ALLOW ? 0 : 1);
}

// Per-CPU packet and byte counters, PER_ENDPOINT per endpoint slot.
export class CounterMap extends PerCpuMap<number, C.CounterValue> {
  // Packets and bytes summed over CPUs.
  total(slot: number, dir: number, verdict: number): CounterTotals {
    const per = this.get(counterIndex(slot, dir, verdict)) ?? [];
    return per.reduce((a, v) => ({ packets: a.packets + v.packets, bytes: a.bytes + v.bytes }), {
      packets: 0n,
      bytes: 0n,
    });
  }

  // Zeroes a slot's counters: before an endpoint takes it and after one gives it up.
  zero(slot: number): void {
    const zero = { packets: 0n, bytes: 0n };
    for (let i = 0; i < PER_ENDPOINT; i++) this.set(slot * PER_ENDPOINT + i, zero);
  }
}

// Per-CPU node-wide packet and byte counters by (direction, verdict, reason): verdicts.ts reads them.
export type VerdictCounterMap = PerCpuMap<number, C.CounterValue>;

export class ConfigMap extends TypedMap<number, C.Config> {
  read(): C.Config {
    const c = this.get(0);
    if (!c) throw new Error(`map ${this.name}: slot 0 missing`);
    return c;
  }

  write(c: C.Config): void {
    this.set(0, c);
  }
}

export interface DatapathMaps {
  // Full-length prefixes (a hash per family) and the other prefixes (LPM trie) of the ipcache.
  ipHosts4: TypedMap<C.Ip4Key, C.IpcacheValue>;
  ipHosts6: TypedMap<C.Ip6Key, C.IpcacheValue>;
  ipcache: TypedMap<C.IpcacheKey, C.IpcacheValue>;
  endpoints: TypedMap<C.EndpointKey, C.EndpointValue>;
  // Policy: one record per (endpoint, generation, direction, identity) group with its entries inline,
  // and the spill of big groups (writer/policy-store.ts).
  policySets: TypedMap<C.PolicySetKey, C.PolicySet>;
  policyExact: TypedMap<C.PolicyExactKey, C.PolicyValue>;
  policyLpm: TypedMap<C.PolicyKey, C.PolicyValue>;
  conntrack4: TypedMap<C.Ct4Key, C.CtValue>;
  conntrack6: TypedMap<C.Ct6Key, C.CtValue>;
  // Every local pod's own addresses (writer/sync.ts). Undefined only for pins of a build that predates it.
  sources: TypedMap<C.SourceKey, C.SourceValue> | undefined;
  counters: CounterMap;
  // Undefined only for pins of a build that predates the map (openPinnedMaps on an older agent's node).
  verdicts: VerdictCounterMap | undefined;
  // Packets, bytes and flows per rule counter slot (writer/rule-slots.ts hands the slots out).
  ruleCounters: RuleCounterMap;
  config: ConfigMap;
  // The ring buffer's fd, for datapath/flow-events.ts.
  eventsFd: number;
  // Closes fds this object opened itself (pins); fds of a loaded object belong to that object.
  close(): void;
}

// fdOf throws for a map that is not there; fdIfThere returns undefined (maps that may be missing).
function build(
  addon: BpfAddon,
  fdOf: (name: string) => number,
  fdIfThere: (name: string) => number | undefined,
  close: () => void,
): DatapathMaps {
  const verdictsFd = fdIfThere(MapNames.verdicts);
  const sourcesFd = fdIfThere(MapNames.sources);
  return {
    ipHosts4: new TypedMap(addon, fdOf(MapNames.ipHosts4), MapNames.ipHosts4, C.ip4Key, C.ipcacheValue),
    ipHosts6: new TypedMap(addon, fdOf(MapNames.ipHosts6), MapNames.ipHosts6, C.ip6Key, C.ipcacheValue),
    ipcache: new TypedMap(addon, fdOf(MapNames.ipcache), MapNames.ipcache, C.ipcacheKey, C.ipcacheValue),
    endpoints: new TypedMap(
      addon,
      fdOf(MapNames.endpoints),
      MapNames.endpoints,
      C.endpointKey,
      C.endpointValue,
    ),
    policySets: new TypedMap(
      addon,
      fdOf(MapNames.policySets),
      MapNames.policySets,
      C.policySetKey,
      C.policySet,
    ),
    policyExact: new TypedMap(
      addon,
      fdOf(MapNames.policyExact),
      MapNames.policyExact,
      C.policyExactKey,
      C.policyValue,
    ),
    policyLpm: new TypedMap(addon, fdOf(MapNames.policyLpm), MapNames.policyLpm, C.policyKey, C.policyValue),
    conntrack4: new TypedMap(addon, fdOf(MapNames.conntrack4), MapNames.conntrack4, C.ct4Key, C.ctValue),
    conntrack6: new TypedMap(addon, fdOf(MapNames.conntrack6), MapNames.conntrack6, C.ct6Key, C.ctValue),
    sources:
      sourcesFd === undefined
        ? undefined
        : new TypedMap(addon, sourcesFd, MapNames.sources, C.sourceKey, C.sourceValue),
    counters: new CounterMap(addon, fdOf(MapNames.counters), MapNames.counters, u32Key, C.counterValue),
    verdicts:
      verdictsFd === undefined
        ? undefined
        : new PerCpuMap(addon, verdictsFd, MapNames.verdicts, u32Key, C.counterValue),
    ruleCounters: new RuleCounterMap(addon, fdOf(MapNames.ruleCounters), MapNames.ruleCounters),
    config: new ConfigMap(addon, fdOf(MapNames.config), MapNames.config, u32Key, C.config),
    eventsFd: fdOf(MapNames.events),
    close,
  };
}

// Maps whose size follows an enum of the build (sl_vcnt: one slot per reason) and that hold only
// counters. libbpf refuses to reuse a pin of another size, and the load would fail: such a pin, left by
// a build with fewer reasons, is removed first, so the load creates the map anew. Its counters restart
// from zero (Prometheus counters may reset); programs of the older build keep counting into the old map
// until they are swapped. Returns the names of the pins removed.
const RESIZABLE = [[MapNames.verdicts, enums.sl_verdict_counters.SL_VERDICT_COUNTERS]] as const;

export function unpinResizedMaps(addon: BpfAddon, pins: DatapathPins): string[] {
  const removed: string[] = [];
  for (const [name, size] of RESIZABLE) {
    const pinned = pinnedMaxEntries(addon, pins, name);
    if (pinned === undefined || pinned === size) continue;
    unlinkSync(pins.map(name));
    removed.push(name);
  }
  return removed;
}

// max_entries of the map pinned under the root by that name, or undefined when none is pinned.
export function pinnedMaxEntries(addon: BpfAddon, pins: DatapathPins, name: string): number | undefined {
  let fd: number;
  try {
    fd = addon.objGet(pins.map(name));
  } catch (e) {
    if (hasErrnoCode(e, "ENOENT")) return undefined;
    throw e;
  }
  try {
    return addon.mapInfo(fd).maxEntries;
  } finally {
    addon.closeFd(fd);
  }
}

export function mapsOfObject(addon: BpfAddon, obj: LoadedObject): DatapathMaps {
  const fdIfThere = (name: string) => obj.maps.find((x) => x.name === name)?.fd;
  return build(
    addon,
    (name) => {
      const fd = fdIfThere(name);
      if (fd === undefined) throw new Error(`BPF object has no map ${name}`);
      return fd;
    },
    fdIfThere,
    () => {},
  );
}

// Opens the maps pinned under a datapath's root (no program load). Throws ENOENT (code) when not pinned.
export function openPinnedMaps(addon: BpfAddon, pins: DatapathPins | string): DatapathMaps {
  const root = typeof pins === "string" ? new DatapathPins(pins) : pins;
  const fds: number[] = [];
  const close = () => {
    for (const fd of fds.splice(0)) addon.closeFd(fd);
  };
  const fdOf = (name: string) => {
    const fd = addon.objGet(root.map(name));
    fds.push(fd);
    return fd;
  };
  try {
    return build(
      addon,
      fdOf,
      (name) => {
        try {
          return fdOf(name);
        } catch (e) {
          if (hasErrnoCode(e, "ENOENT")) return undefined;
          throw e;
        }
      },
      close,
    );
  } catch (e) {
    close();
    throw e;
  }
}
