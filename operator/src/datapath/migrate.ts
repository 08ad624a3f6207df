// An agent of this layout version starting on a node whose datapath an agent of layout 4 (or 3) set up.
// Policy, endpoints and ipcache are not copied: the agent writes them whole from its desired state
// before it swaps any program. What it cannot recompute is carried over: conntrack (without it, a reply
// or an established flow reaching a pod whose policy alone would drop it is cut at the upgrade) and the
// counters. Conntrack is copied before the swap and again after it (entries the old programs created
// in between); then the old maps' pins go. Layout 4's conntrack keys and values are this layout's (a
// layout 4 value has zeroes where this one has its audit flag and rule counter slots: uncounted), so
// its entries are copied as they are; layout 3's keys are converted. Layout 4's endpoint counters are
// carried by endpoint id (its sl_ep_v4 names each endpoint's slot), its node-wide verdict counters by
// index; rule counters are new in layout 5.
import { rmSync } from "node:fs";
import type { BpfAddon } from "./kernel/bpf-addon.ts";
import * as C from "./codec/codecs.ts";
import { enums } from "./codec/layout.generated.ts";
import { counterIndex, type DatapathMaps } from "./kernel/maps.ts";
import type { DatapathPins } from "./kernel/pins.ts";
import type { PinnedDatapath } from "./kernel/programs.ts";
import { PerCpuMap, TypedMap, u32Key } from "./kernel/typed-map.ts";

const V3_CONNTRACK = "sl_ct_v3";
const V3_COUNTERS = "sl_cnt_v3";
const V4 = {
  conntrack4: "sl_ct4_v4",
  conntrack6: "sl_ct6_v4",
  endpoints: "sl_ep_v4",
  counters: "sl_cnt_v4",
  verdicts: "sl_vcnt_v4",
} as const;
const FAMILY4 = enums.sl_family.SL_FAMILY_V4;
const FAMILY6 = enums.sl_family.SL_FAMILY_V6;
const PER_ENDPOINT = enums.sl_counters.SL_COUNTERS_PER_ENDPOINT;

export interface MigrationReport {
  fromVersion: number;
  conntrack: number;
  counters: number;
  removedPins: string[];
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

export function describeMigration(r: MigrationReport): string {
  return (
    `upgraded the datapath from layout ${r.fromVersion}: ${r.conntrack} conntrack entries and ${r.counters} counters ` +
    `carried over, old pins removed (${r.removedPins.join(", ") || "none"})`
  );
}

export function describeMigrationError(e: unknown): string {
  return `layout migration: ${e instanceof Error ? e.message : String(e)}`;
}

export class LayoutMigration {
  readonly #addon: BpfAddon;
  readonly #pins: DatapathPins;
  readonly #conntrack: TypedMap<C.V3CtKey, C.CtValue> | undefined;
  readonly #counters: PerCpuMap<C.V3CounterKey, C.CounterValue> | undefined;
  readonly #v4: {
    conntrack4?: TypedMap<C.Ct4Key, C.CtValue>;
    conntrack6?: TypedMap<C.Ct6Key, C.CtValue>;
    endpoints?: TypedMap<C.EndpointKey, C.V4EndpointValue>;
    counters?: PerCpuMap<number, C.CounterValue>;
    verdicts?: PerCpuMap<number, C.CounterValue>;
  } = {};
  readonly #fds: number[] = [];
  readonly #report: MigrationReport;
  #closed = false;

  private constructor(addon: BpfAddon, pins: DatapathPins, fromVersion: number) {
    this.#addon = addon;
    this.#pins = pins;
    this.#report = { fromVersion, conntrack: 0, counters: 0, removedPins: [] };
    const open = (name: string): number | undefined => {
      try {
        const fd = addon.objGet(pins.map(name));
        this.#fds.push(fd);
        return fd;
      } catch {
        return undefined;
      }
    };
    try {
      const ct = open(V3_CONNTRACK);
      const cnt = open(V3_COUNTERS);
      if (ct !== undefined) this.#conntrack = new TypedMap(addon, ct, V3_CONNTRACK, C.v3CtKey, C.ctValue);
      if (cnt !== undefined)
        this.#counters = new PerCpuMap(addon, cnt, V3_COUNTERS, C.v3CounterKey, C.counterValue);
      const v4 = this.#v4;
      const ct4 = open(V4.conntrack4);
      if (ct4 !== undefined) v4.conntrack4 = new TypedMap(addon, ct4, V4.conntrack4, C.ct4Key, C.ctValue);
      const ct6 = open(V4.conntrack6);
      if (ct6 !== undefined) v4.conntrack6 = new TypedMap(addon, ct6, V4.conntrack6, C.ct6Key, C.ctValue);
      const ep = open(V4.endpoints);
      if (ep !== undefined)
        v4.endpoints = new TypedMap(addon, ep, V4.endpoints, C.endpointKey, C.v4EndpointValue);
      const c = open(V4.counters);
      if (c !== undefined) v4.counters = new PerCpuMap(addon, c, V4.counters, u32Key, C.counterValue);
      const vc = open(V4.verdicts);
      if (vc !== undefined) v4.verdicts = new PerCpuMap(addon, vc, V4.verdicts, u32Key, C.counterValue);
    } catch (e) {
      this.close();
      throw e;
    }
  }

  // A migration when the datapath's root holds pins of an older layout, else undefined.
  static open(dp: PinnedDatapath): LayoutMigration | undefined {
    const older = dp.pins.olderLayoutMaps();
    if (older.length === 0) return undefined;
    const from = Math.max(...older.map((n) => Number(/_v(\d+)$/.exec(n)?.[1] ?? 0)));
    return new LayoutMigration(dp.addon, dp.pins, from);
  }

  get report(): MigrationReport {
    return this.#report;
  }

  // Copies the old conntrack entries this layout's maps do not hold yet (a flow the new programs have
  // seen since is theirs). Returns how many it copied.
  copyConntrack(maps: DatapathMaps): number {
    const old = this.#conntrack;
    const { conntrack4, conntrack6 } = this.#v4;
    if (!old && !conntrack4 && !conntrack6) return 0;
    const have4 = new Set(maps.conntrack4.keys().map((k) => hex(C.ct4Key.encode(k))));
    const have6 = new Set(maps.conntrack6.keys().map((k) => hex(C.ct6Key.encode(k))));
    const put4: [C.Ct4Key, C.CtValue][] = [];
    const put6: [C.Ct6Key, C.CtValue][] = [];
    for (const [k, v] of conntrack4?.entries() ?? [])
      if (!have4.has(hex(C.ct4Key.encode(k)))) put4.push([k, v]);
    for (const [k, v] of conntrack6?.entries() ?? [])
      if (!have6.has(hex(C.ct6Key.encode(k)))) put6.push([k, v]);
    for (const [k, v] of old?.entries() ?? []) {
      const base = { ep_id: k.ep_id, dir: k.dir, proto: k.proto, sport: k.sport, dport: k.dport };
      if (k.family === FAMILY4) {
        const k4 = { ...base, saddr: k.saddr.slice(0, 4), daddr: k.daddr.slice(0, 4) };
        if (!have4.has(hex(C.ct4Key.encode(k4)))) put4.push([k4, v]);
      } else if (k.family === FAMILY6) {
        const k6 = { ...base, saddr: k.saddr, daddr: k.daddr };
        if (!have6.has(hex(C.ct6Key.encode(k6)))) put6.push([k6, v]);
      }
    }
    if (put4.length > 0) maps.conntrack4.setMany(put4);
    if (put6.length > 0) maps.conntrack6.setMany(put6);
    this.#report.conntrack += put4.length + put6.length;
    return put4.length + put6.length;
  }

  // Adds the old counters of each endpoint to its slot's (slotOf: endpoint id -> counter slot), CPU by
  // CPU. Counters of endpoints without a slot any more are dropped.
  copyCounters(maps: DatapathMaps, slotOf: ReadonlyMap<number, number>): number {
    let n = 0;
    for (const [k, perCpu] of this.#counters?.entries() ?? []) {
      const slot = slotOf.get(k.ep_id);
      if (slot === undefined) continue;
      addCounters(maps.counters, counterIndex(slot, k.dir, k.verdict), perCpu);
      n++;
    }
    const { endpoints, counters, verdicts } = this.#v4;
    if (endpoints && counters) {
      for (const [, ep] of endpoints.entries()) {
        const slot = slotOf.get(ep.ep_id);
        if (slot === undefined) continue;
        for (let i = 0; i < PER_ENDPOINT; i++) {
          const perCpu = counters.get(ep.slot * PER_ENDPOINT + i);
          if (!perCpu || perCpu.every((v) => v.packets === 0n)) continue;
          addCounters(maps.counters, slot * PER_ENDPOINT + i, perCpu);
          n++;
        }
      }
    }
    if (verdicts && maps.verdicts) {
      const size = Math.min(verdicts.info.maxEntries, maps.verdicts.info.maxEntries);
      for (let i = 0; i < size; i++) {
        const perCpu = verdicts.get(i);
        if (!perCpu || perCpu.every((v) => v.packets === 0n)) continue;
        addCounters(maps.verdicts, i, perCpu);
        n++;
      }
    }
    this.#report.counters += n;
    return n;
  }

  // Closes the old maps and removes every pin of an older layout (the maps go with their last user).
  finish(): MigrationReport {
    this.close();
    for (const name of this.#pins.olderLayoutMaps()) {
      rmSync(this.#pins.map(name), { force: true });
      this.#report.removedPins.push(name);
    }
    return this.#report;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const fd of this.#fds.splice(0)) this.#addon.closeFd(fd);
  }
}

// Adds old per-CPU counts to a counter of this layout, CPU by CPU.
function addCounters(
  to: PerCpuMap<number, C.CounterValue>,
  index: number,
  perCpu: readonly C.CounterValue[],
): void {
  const now = to.get(index) ?? perCpu.map(() => ({ packets: 0n, bytes: 0n }));
  to.setPerCpu(
    index,
    now.map((v, c) => ({ packets: v.packets + perCpu[c].packets, bytes: v.bytes + perCpu[c].bytes })),
  );
}
