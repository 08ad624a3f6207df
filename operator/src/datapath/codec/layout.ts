// Generic encode/decode of the shared structs, driven by the layouts generated from BTF
// (layout.generated.ts). Numbers are little endian (host order on the machines we run on) except the
// fields a codec declares big endian: the header documents those as network order (policy key ids
// and ports, conntrack and event ports). A big-endian byte array (u8 port[2]) decodes to one number.
// Fields named pad* are never exposed and always encoded as zero.
import type { FieldLayout, StructLayout } from "./layout.generated.ts";

export type ByteOrderSpec<L extends StructLayout> = { readonly [K in keyof L["fields"]]?: "be" };

type FieldValue<F, O> = O extends "be"
  ? number
  : F extends { readonly array: true }
    ? Uint8Array
    : F extends { readonly size: 8 }
      ? bigint
      : number;

type Visible<K> = K extends `pad${string}` ? never : K;

export type StructValue<L extends StructLayout, S extends ByteOrderSpec<L>> = {
  -readonly [K in keyof L["fields"] as Visible<K>]: FieldValue<L["fields"][K], S[K]>;
};

// Field accessors work on the Uint8Array itself, byte by byte: a DataView needs `.buffer`, which makes
// V8 move a small on-heap typed array off-heap (about a microsecond per fresh key).
type Writer = (buf: Uint8Array, base: number, value: unknown) => void;
type Reader = (buf: Uint8Array, base: number) => number | bigint | Uint8Array;

interface FieldOp {
  name: string;
  write: Writer;
  read: Reader;
}

function writeUint(buf: Uint8Array, at: number, size: number, v: number, be: boolean): void {
  for (let i = 0; i < size; i++) {
    const byte = Math.floor(v / 2 ** (8 * i)) & 0xff;
    buf[be ? at + size - 1 - i : at + i] = byte;
  }
}

function readUint(buf: Uint8Array, at: number, size: number, be: boolean): number {
  let v = 0;
  for (let i = size - 1; i >= 0; i--) v = v * 256 + buf[be ? at + size - 1 - i : at + i];
  return v;
}

function fieldOp(struct: string, name: string, f: FieldLayout, be: boolean): FieldOp {
  const where = `${struct}.${name}`;
  const off = f.offset;
  const size = f.size;
  if (be || !f.array) {
    if (size === 8 && !be) {
      return {
        name,
        write: (buf, b, v) => {
          if (typeof v !== "bigint" || v < 0n || v > 0xffffffffffffffffn)
            throw new TypeError(`${where}: expected a bigint in [0, 2^64)`);
          writeUint(buf, b + off, 4, Number(v & 0xffffffffn), false);
          writeUint(buf, b + off + 4, 4, Number(v >> 32n), false);
        },
        read: (buf, b) =>
          (BigInt(readUint(buf, b + off + 4, 4, false)) << 32n) | BigInt(readUint(buf, b + off, 4, false)),
      };
    }
    if (size !== 1 && size !== 2 && size !== 4)
      throw new Error(`${where}: no ${be ? "big-endian " : ""}codec for a ${size}-byte field`);
    const max = 2 ** (8 * size) - 1;
    return {
      name,
      write: (buf, b, v) => {
        if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max)
          throw new RangeError(`${where}: expected an integer in [0, ${max}], got ${String(v)}`);
        writeUint(buf, b + off, size, v, be);
      },
      read: (buf, b) => readUint(buf, b + off, size, be),
    };
  }
  return {
    name,
    write: (buf, b, v) => {
      if (!(v instanceof Uint8Array) || v.length > size)
        throw new TypeError(`${where}: expected a Uint8Array of at most ${size} bytes`);
      // Encoding zeroed the struct first, so a shorter array leaves a zero tail.
      buf.set(v, b + off);
    },
    read: (buf, b) => buf.slice(b + off, b + off + size),
  };
}

// Encoder/decoder of one struct. Encoding zeroes the struct's bytes first (padding, unspecified tails).
export class StructCodec<L extends StructLayout, S extends ByteOrderSpec<L> = Record<never, never>> {
  readonly name: string;
  readonly size: number;
  readonly layout: L;
  readonly #ops: FieldOp[];

  constructor(name: string, layout: L, bigEndian?: S) {
    this.name = name;
    this.layout = layout;
    this.size = layout.size;
    const spec = (bigEndian ?? {}) as Record<string, "be" | undefined>;
    for (const f of Object.keys(spec))
      if (!(f in layout.fields)) throw new Error(`${name}: big-endian field ${f} is not in the layout`);
    this.#ops = Object.entries(layout.fields)
      .filter(([n]) => !n.startsWith("pad"))
      .map(([n, f]) => fieldOp(name, n, f, spec[n] === "be"));
  }

  // Writes value at offset of buf (a fresh buffer of this.size when omitted) and returns buf.
  encode(value: StructValue<L, S>, buf: Uint8Array = new Uint8Array(this.size), offset = 0): Uint8Array {
    if (offset + this.size > buf.length)
      throw new RangeError(`${this.name}: buffer too small at offset ${offset}`);
    buf.fill(0, offset, offset + this.size);
    const rec = value as unknown as Record<string, unknown>;
    for (const op of this.#ops) {
      const v = rec[op.name];
      if (v === undefined) throw new TypeError(`${this.name}.${op.name}: missing`);
      op.write(buf, offset, v);
    }
    return buf;
  }

  decode(buf: Uint8Array, offset = 0): StructValue<L, S> {
    if (offset + this.size > buf.length)
      throw new RangeError(`${this.name}: buffer too small at offset ${offset}`);
    const out: Record<string, number | bigint | Uint8Array> = {};
    for (const op of this.#ops) out[op.name] = op.read(buf, offset);
    return out as StructValue<L, S>;
  }

  // Encodes many values into one contiguous buffer, as the batch map calls take them.
  encodeMany(values: readonly StructValue<L, S>[]): Uint8Array {
    const buf = new Uint8Array(values.length * this.size);
    for (let i = 0; i < values.length; i++) this.encode(values[i], buf, i * this.size);
    return buf;
  }

  decodeMany(buf: Uint8Array, count: number, stride: number = this.size): StructValue<L, S>[] {
    const out: StructValue<L, S>[] = [];
    for (let i = 0; i < count; i++) out.push(this.decode(buf, i * stride));
    return out;
  }
}
