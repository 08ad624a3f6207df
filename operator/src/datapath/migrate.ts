// An agent of this layout version starting on a node whose datapath an agent of layout 3 set up. Policy,
// endpoints and ipcache are not copied: the agent writes them whole from its desired state before it
// swaps any program. What it cannot recompute is carried over: conntrack (without it, a reply or an
// established flow reaching a pod whose policy alone would drop it is cut at the upgrade) and the
// counters. Conntrack is copied before the swap and again after it (entries the old programs created
// in between); then the old maps' pins go.
import { rmSync } from "node:fs";
import type { BpfAddon } from "./kernel/bpf-addon.ts";
import * as C from "./codec/codecs.ts";
import { enums } from "./codec/layout.generated.ts";
import { counterIndex, type DatapathMaps } from "./kernel/maps.ts";
import type { DatapathPins } from "./kernel/pins.ts";
import type { PinnedDatapath } from "./kernel/programs.ts";
import { PerCpuMap, TypedMap } from "./kernel/typed-map.ts";

const OLD = 3;
const OLD_CONNTRACK = `sl_ct_v${OLD}`;
const OLD_COUNTERS = `sl_cnt_v${OLD}`;
const V4 = enums.sl_family.SL_FAMILY_V4;
const V6 = enums.sl_family.SL_FAMILY_V6;

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
  readonly #report: MigrationReport = { fromVersion: OLD, conntrack: 0, counters: 0, removedPins: [] };
  #closed = false;

  private constructor(addon: BpfAddon, pins: DatapathPins) {
    this.#addon = addon;
    this.#pins = pins;
    const open = (name: string): number | undefined => {
      try {
        return addon.objGet(pins.map(name));
      } catch {
        return undefined;
      }
    };
    const ct = open(OLD_CONNTRACK);
    const cnt = open(OLD_COUNTERS);
    try {
      if (ct !== undefined) this.#conntrack = new TypedMap(addon, ct, OLD_CONNTRACK, C.v3CtKey, C.ctValue);
      if (cnt !== undefined)
        this.#counters = new PerCpuMap(addon, cnt, OLD_COUNTERS, C.v3CounterKey, C.counterValue);
    } catch (e) {
      for (const fd of [ct, cnt]) if (fd !== undefined) addon.closeFd(fd);
      throw e;
    }
  }

  // A migration when the datapath's root holds pins of an older layout, else undefined.
  static open(dp: PinnedDatapath): LayoutMigration | undefined {
    if (dp.pins.olderLayoutMaps().length === 0) return undefined;
    return new LayoutMigration(dp.addon, dp.pins);
  }

  get report(): MigrationReport {
    return this.#report;
  }

  // Copies the old conntrack entries this layout's maps do not hold yet (a flow the new programs have
  // seen since is theirs). Returns how many it copied.
  copyConntrack(maps: DatapathMaps): number {
    const old = this.#conntrack;
    if (!old) return 0;
    const have4 = new Set(maps.conntrack4.keys().map((k) => hex(C.ct4Key.encode(k))));
    const have6 = new Set(maps.conntrack6.keys().map((k) => hex(C.ct6Key.encode(k))));
    const put4: [C.Ct4Key, C.CtValue][] = [];
    const put6: [C.Ct6Key, C.CtValue][] = [];
    for (const [k, v] of old.entries()) {
      const base = { ep_id: k.ep_id, dir: k.dir, proto: k.proto, sport: k.sport, dport: k.dport };
      if (k.family === V4) {
        const k4 = { ...base, saddr: k.saddr.slice(0, 4), daddr: k.daddr.slice(0, 4) };
        if (!have4.has(hex(C.ct4Key.encode(k4)))) put4.push([k4, v]);
      } else if (k.family === V6) {
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
    const old = this.#counters;
    if (!old) return 0;
    let n = 0;
    for (const [k, perCpu] of old.entries()) {
      const slot = slotOf.get(k.ep_id);
      if (slot === undefined) continue;
      const index = counterIndex(slot, k.dir, k.verdict);
      const now = maps.counters.get(index) ?? perCpu.map(() => ({ packets: 0n, bytes: 0n }));
      maps.counters.setPerCpu(
        index,
        now.map((v, c) => ({ packets: v.packets + perCpu[c].packets, bytes: v.bytes + perCpu[c].bytes })),
      );
      n++;
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
    if (this.#conntrack) this.#addon.closeFd(this.#conntrack.fd);
    if (this.#counters) this.#addon.closeFd(this.#counters.fd);
  }
}
