// The rule counters (sl_rcnt, bpf/include/sluice_maps.h): packets, bytes and flows per slot, per CPU.
// The map writer hands out the slots (writer/rule-slots.ts); this reads them summed over CPUs, and
// zeroes a slot before it is handed out again.
import type { BpfAddon } from "./bpf-addon.ts";
import * as C from "../codec/codecs.ts";
import { structs } from "../codec/layout.generated.ts";
import { PerCpuMap, u32Key } from "./typed-map.ts";

export interface RuleCounts {
  packets: bigint;
  bytes: bigint;
  flows: bigint;
}

const F = structs.sl_rule_counter.fields;
const PACKETS = F.packets.offset;
const BYTES = F.bytes.offset;
const FLOWS = F.flows.offset;

export class RuleCounterMap extends PerCpuMap<number, C.RuleCounter> {
  constructor(addon: BpfAddon, fd: number, name: string) {
    super(addon, fd, name, u32Key, C.ruleCounter);
  }

  // Each slot's counts summed over CPUs: the slots asked for (one lookup each; a slot out of range reads
  // as zero), or, without slots, every slot that counted something (one dump of the map).
  read(slots?: Iterable<number>): Map<number, RuleCounts> {
    const out = new Map<number, RuleCounts>();
    const per = this.stride * this.cpus;
    if (slots) {
      const buf = new Uint8Array(per);
      for (const s of slots) {
        const got = s < this.info.maxEntries && this.addon.mapLookup(this.fd, u32Key.encode(s), buf);
        out.set(s, got ? this.#sum(buf, 0) : { packets: 0n, bytes: 0n, flows: 0n });
      }
      return out;
    }
    const d = this.addon.mapDump(this.fd);
    for (let i = 0; i < d.count; i++) {
      const c = this.#sum(d.values, i * per);
      if (c.packets !== 0n || c.flows !== 0n) out.set(u32Key.decode(d.keys, i * 4), c);
    }
    return out;
  }

  // Zeroes the slots on every CPU (one batch call).
  zero(slots: readonly number[]): void {
    if (slots.length === 0) return;
    const keys = new Uint8Array(slots.length * 4);
    for (const [i, s] of slots.entries()) u32Key.encode(s, keys, i * 4);
    const values = new Uint8Array(slots.length * this.stride * this.cpus);
    const done = this.addon.mapUpdateBatch(this.fd, keys, values, slots.length);
    if (done !== slots.length)
      throw new Error(`map ${this.name}: zeroed ${done} of ${slots.length} rule counter slots`);
  }

  #sum(buf: Uint8Array, base: number): RuleCounts {
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let packets = 0n;
    let bytes = 0n;
    let flows = 0n;
    for (let c = 0; c < this.cpus; c++) {
      const o = base + c * this.stride;
      packets += dv.getBigUint64(o + PACKETS, true);
      bytes += dv.getBigUint64(o + BYTES, true);
      flows += dv.getBigUint64(o + FLOWS, true);
    }
    return { packets, bytes, flows };
  }
}
