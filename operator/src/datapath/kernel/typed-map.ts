// A BPF map seen through struct codecs: typed single and batch operations over the addon's byte API.
import { type BpfAddon, hasErrnoCode, MapType, type MapInfo, UpdateFlags } from "./bpf-addon.ts";

export interface Codec<T> {
  readonly name: string;
  readonly size: number;
  encode(value: T, buf?: Uint8Array, offset?: number): Uint8Array;
  decode(buf: Uint8Array, offset?: number): T;
}

// Thrown when a write would exceed a map's max_entries; nothing was written.
export class MapCapacityError extends Error {
  readonly map: string;
  readonly maxEntries: number;
  readonly required: number;
  constructor(map: string, maxEntries: number, required: number) {
    super(`map ${map}: update needs ${required} entries, max_entries is ${maxEntries}; nothing written`);
    this.name = "MapCapacityError";
    this.map = map;
    this.maxEntries = maxEntries;
    this.required = required;
  }
}

const PERCPU_TYPES: readonly number[] = [MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH];

// Opens a map fd and checks that its key/value sizes are the ones the codecs were generated for: a map
// pinned by another build with another layout is refused instead of misread.
export function checkedInfo(
  addon: BpfAddon,
  fd: number,
  name: string,
  keySize: number,
  valueSize: number,
): MapInfo {
  const info = addon.mapInfo(fd);
  if (info.keySize !== keySize || info.valueSize !== valueSize)
    throw new Error(
      `map ${name}: key/value size ${info.keySize}/${info.valueSize} does not match the layout (${keySize}/${valueSize})`,
    );
  return info;
}

export class TypedMap<K, V> {
  readonly addon: BpfAddon;
  readonly fd: number;
  readonly name: string;
  readonly info: MapInfo;
  readonly key: Codec<K>;
  readonly value: Codec<V>;

  constructor(addon: BpfAddon, fd: number, name: string, key: Codec<K>, value: Codec<V>) {
    this.addon = addon;
    this.fd = fd;
    this.name = name;
    this.key = key;
    this.value = value;
    this.info = checkedInfo(addon, fd, name, key.size, value.size);
    if (PERCPU_TYPES.includes(this.info.type)) throw new Error(`map ${name}: per-CPU map, use PerCpuMap`);
  }

  get maxEntries(): number {
    return this.info.maxEntries;
  }

  get(k: K): V | undefined {
    const out = new Uint8Array(this.value.size);
    return this.addon.mapLookup(this.fd, this.key.encode(k), out) ? this.value.decode(out) : undefined;
  }

  set(k: K, v: V, flags: number = UpdateFlags.ANY): void {
    this.addon.mapUpdate(this.fd, this.key.encode(k), this.value.encode(v), flags);
  }

  delete(k: K): boolean {
    return this.addon.mapDelete(this.fd, this.key.encode(k));
  }

  // One batch call for all entries (keys and values each in one contiguous buffer).
  setMany(entries: readonly (readonly [K, V])[]): number {
    if (entries.length === 0) return 0;
    const ks = this.key.size;
    const vs = this.value.size;
    const keys = new Uint8Array(entries.length * ks);
    const values = new Uint8Array(entries.length * vs);
    for (let i = 0; i < entries.length; i++) {
      this.key.encode(entries[i][0], keys, i * ks);
      this.value.encode(entries[i][1], values, i * vs);
    }
    return this.setManyRaw(keys, values, entries.length);
  }

  setManyRaw(keys: Uint8Array, values: Uint8Array, count: number): number {
    return this.addon.mapUpdateBatch(this.fd, keys, values, count);
  }

  // Batch delete that tolerates missing keys (the kernel stops at the first one): returns how many
  // existed and were deleted.
  deleteMany(keys: readonly K[]): number {
    if (keys.length === 0) return 0;
    const ks = this.key.size;
    const buf = new Uint8Array(keys.length * ks);
    for (let i = 0; i < keys.length; i++) this.key.encode(keys[i], buf, i * ks);
    return this.deleteManyRaw(buf, keys.length);
  }

  deleteManyRaw(buf: Uint8Array, count: number): number {
    const ks = this.key.size;
    let start = 0;
    let deleted = 0;
    while (start < count) {
      try {
        deleted += this.addon.mapDeleteBatch(this.fd, buf.subarray(start * ks), count - start);
        return deleted;
      } catch (e) {
        if (!hasErrnoCode(e, "ENOENT") || e.done === undefined) throw e;
        deleted += e.done;
        start += e.done + 1; // skip the missing key
      }
    }
    return deleted;
  }

  entries(): [K, V][] {
    const d = this.addon.mapDump(this.fd);
    const out: [K, V][] = [];
    for (let i = 0; i < d.count; i++)
      out.push([
        this.key.decode(d.keys, i * this.key.size),
        this.value.decode(d.values, i * this.value.size),
      ]);
    return out;
  }

  keys(): K[] {
    const d = this.addon.mapKeys(this.fd);
    const out: K[] = [];
    for (let i = 0; i < d.count; i++) out.push(this.key.decode(d.keys, i * this.key.size));
    return out;
  }

  count(): number {
    return this.addon.mapKeys(this.fd).count;
  }
}

// The key of an array map: a u32 index, host order.
export const u32Key: Codec<number> = {
  name: "u32",
  size: 4,
  encode(v, buf = new Uint8Array(4), off = 0) {
    new DataView(buf.buffer, buf.byteOffset, buf.byteLength).setUint32(off, v, true);
    return buf;
  },
  decode(buf, off = 0) {
    return new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getUint32(off, true);
  },
};

// Per-CPU map: each value is one element per possible CPU, each padded to 8 bytes by the kernel.
export class PerCpuMap<K, V> {
  readonly addon: BpfAddon;
  readonly fd: number;
  readonly name: string;
  readonly info: MapInfo;
  readonly key: Codec<K>;
  readonly value: Codec<V>;
  readonly cpus: number;
  readonly stride: number;

  constructor(addon: BpfAddon, fd: number, name: string, key: Codec<K>, value: Codec<V>) {
    this.addon = addon;
    this.fd = fd;
    this.name = name;
    this.key = key;
    this.value = value;
    this.info = checkedInfo(addon, fd, name, key.size, value.size);
    if (!PERCPU_TYPES.includes(this.info.type)) throw new Error(`map ${name}: not a per-CPU map`);
    this.cpus = addon.numPossibleCpus();
    this.stride = (value.size + 7) & ~7;
  }

  get(k: K): V[] | undefined {
    const out = new Uint8Array(this.stride * this.cpus);
    if (!this.addon.mapLookup(this.fd, this.key.encode(k), out)) return undefined;
    return this.#split(out, 0);
  }

  // Sets every CPU's slot to the same value.
  set(k: K, v: V, flags: number = UpdateFlags.ANY): void {
    const buf = new Uint8Array(this.stride * this.cpus);
    for (let c = 0; c < this.cpus; c++) this.value.encode(v, buf, c * this.stride);
    this.addon.mapUpdate(this.fd, this.key.encode(k), buf, flags);
  }

  // Sets each CPU's slot: values[c] for CPU c.
  setPerCpu(k: K, values: readonly V[], flags: number = UpdateFlags.ANY): void {
    if (values.length !== this.cpus)
      throw new Error(`map ${this.name}: ${values.length} per-CPU values for ${this.cpus} CPUs`);
    const buf = new Uint8Array(this.stride * this.cpus);
    for (const [c, v] of values.entries()) this.value.encode(v, buf, c * this.stride);
    this.addon.mapUpdate(this.fd, this.key.encode(k), buf, flags);
  }

  delete(k: K): boolean {
    return this.addon.mapDelete(this.fd, this.key.encode(k));
  }

  entries(): [K, V[]][] {
    const d = this.addon.mapDump(this.fd);
    const per = this.stride * this.cpus;
    const out: [K, V[]][] = [];
    for (let i = 0; i < d.count; i++)
      out.push([this.key.decode(d.keys, i * this.key.size), this.#split(d.values, i * per)]);
    return out;
  }

  #split(buf: Uint8Array, base: number): V[] {
    const out: V[] = [];
    for (let c = 0; c < this.cpus; c++) out.push(this.value.decode(buf, base + c * this.stride));
    return out;
  }
}
