// Growing the pinned maps of a live node (issue 14 §2): an agent started with bigger map sizes than the
// maps pinned on its node. A map cannot change size and libbpf cannot reuse a pin of another size, so
// loadDatapath creates each map to grow anew, pinned beside the old one (DatapathPins.resizeStaging),
// and start() fills it with the old one's content before this agent reads or writes anything: the
// agent adopts the copy, its first write is a delta as after any restart, and the programs it swaps
// onto the links find in the new maps what the old programs found in the old ones. Traffic is
// neither opened nor closed by the change of maps. The programs still running until the swap only
// write conntrack and counters: finish(), after the first write swapped every link, copies what they
// added since (flows not yet in the new map, counter increments), then gives each new map its final
// pin name and lets the old one go with its last program. Only growing: a map pinned bigger is kept.
import { rmSync, unlinkSync } from "node:fs";
import { type BpfAddon, type LoadedObject, MapType } from "./bpf-addon.ts";
import type { KeptMapSize } from "./map-sizes.ts";
import type { DatapathPins } from "./pins.ts";

export interface ResizeReport {
  maps: KeptMapSize[];
  // Flows the old programs tracked between the copy and the swap, carried over at finish.
  conntrack: number;
}

interface Grown {
  size: KeptMapSize;
  oldFd: number;
  newFd: number;
  type: number;
  // Per-CPU arrays (counters): the old values at the copy, so finish() adds only what came since.
  snapshot?: { keys: Buffer; values: Buffer; count: number };
}

export function describeResize(r: ResizeReport): string {
  return `grew the datapath's maps in place: ${r.maps.map((m) => `${m.map} ${m.pinned} → ${m.configured}`).join(", ")}; ${r.conntrack} flows tracked meanwhile carried over`;
}

export function describeResizeError(e: unknown): string {
  return `map resize: ${e instanceof Error ? e.message : String(e)}`;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

export class MapResize {
  readonly #addon: BpfAddon;
  readonly #pins: DatapathPins;
  readonly #grown: Grown[];
  #done = false;

  private constructor(addon: BpfAddon, pins: DatapathPins, grown: Grown[]) {
    this.#addon = addon;
    this.#pins = pins;
    this.#grown = grown;
  }

  // Copies every old map into its new one (object: the object loaded with the grown maps pinned in
  // staging). Throws, closing what it opened, when a map cannot be read or written.
  static start(
    addon: BpfAddon,
    pins: DatapathPins,
    object: LoadedObject,
    grow: readonly KeptMapSize[],
  ): MapResize {
    const grown: Grown[] = [];
    try {
      for (const size of grow) {
        const created = object.maps.find((m) => m.name === size.map);
        if (!created) throw new Error(`BPF object has no map ${size.map}`);
        const g: Grown = { size, oldFd: addon.objGet(pins.map(size.map)), newFd: created.fd, type: 0 };
        grown.push(g);
        g.type = addon.mapInfo(g.oldFd).type;
        const d = addon.mapDump(g.oldFd);
        if (d.count > 0) addon.mapUpdateBatch(g.newFd, d.keys, d.values, d.count);
        if (g.type === MapType.PERCPU_ARRAY) g.snapshot = d;
      }
    } catch (e) {
      for (const g of grown) addon.closeFd(g.oldFd);
      throw e;
    }
    return new MapResize(addon, pins, grown);
  }

  get pending(): boolean {
    return !this.#done;
  }

  // Once every link runs the new programs (after the first write): what the old programs added since
  // the copy, then the pins. waitForPrograms first: no old program is still running.
  finish(): ResizeReport {
    this.#done = true;
    const a = this.#addon;
    const maps = this.#grown.map((g) => g.size);
    let conntrack = 0;
    try {
      a.waitForPrograms();
      for (const g of this.#grown) {
        if (g.type === MapType.LRU_HASH) conntrack += this.#copyMissing(g);
        else if (g.snapshot) this.#addIncrements(g, g.snapshot);
      }
      for (const g of this.#grown) {
        const final = this.#pins.map(g.size.map);
        unlinkSync(final);
        a.objPin(g.newFd, final);
        rmSync(this.#pins.resizeStaging(g.size.map), { force: true });
      }
      rmSync(this.#pins.resizeDir(), { recursive: true, force: true });
    } finally {
      this.close();
    }
    return { maps, conntrack };
  }

  // Entries of the old map the new one lacks (flows the old programs started after the copy).
  #copyMissing(g: Grown): number {
    const a = this.#addon;
    const info = a.mapInfo(g.oldFd);
    const have = a.mapKeys(g.newFd);
    const seen = new Set<string>();
    for (let i = 0; i < have.count; i++)
      seen.add(hex(have.keys.subarray(i * info.keySize, (i + 1) * info.keySize)));
    const d = a.mapDump(g.oldFd);
    const keys: Buffer[] = [];
    const values: Buffer[] = [];
    for (let i = 0; i < d.count; i++) {
      const k = d.keys.subarray(i * info.keySize, (i + 1) * info.keySize);
      if (seen.has(hex(k))) continue;
      keys.push(k);
      values.push(d.values.subarray(i * info.valueSize, (i + 1) * info.valueSize));
    }
    if (keys.length > 0) a.mapUpdateBatch(g.newFd, Buffer.concat(keys), Buffer.concat(values), keys.length);
    return keys.length;
  }

  // A per-CPU array of u64 counters: each value of the new map gains what the old one gained since the
  // copy (both buffers are laid out alike: the same keys in the same order, every field a u64).
  #addIncrements(g: Grown, before: { keys: Buffer; values: Buffer; count: number }): void {
    const a = this.#addon;
    const info = a.mapInfo(g.oldFd);
    const stride = ((info.valueSize + 7) & ~7) * a.numPossibleCpus();
    const now = a.mapDump(g.oldFd);
    const cur = a.mapDump(g.newFd);
    const n = Math.min(now.count, before.count, cur.count);
    const out = Buffer.from(cur.values.subarray(0, n * stride));
    for (let off = 0; off + 8 <= n * stride; off += 8) {
      const delta = now.values.readBigUInt64LE(off) - before.values.readBigUInt64LE(off);
      if (delta !== 0n) out.writeBigUInt64LE(out.readBigUInt64LE(off) + delta, off);
    }
    if (n > 0) a.mapUpdateBatch(g.newFd, cur.keys.subarray(0, n * info.keySize), out, n);
  }

  close(): void {
    for (const g of this.#grown.splice(0)) this.#addon.closeFd(g.oldFd);
  }
}
