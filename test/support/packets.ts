// Crafted packets for datapath tests: Ethernet (optional VLAN tags) + IPv4/IPv6 (options, extension
// headers, fragments) + TCP/UDP/SCTP/ICMP/ICMPv6 or raw bytes. Checksums other than the IPv4 header's
// are left zero: the programs under test never verify them.

export const IPPROTO = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58, SCTP: 132, GRE: 47 } as const;

export type Transport =
  | { kind: "tcp"; sport: number; dport: number; flags?: number }
  | { kind: "udp"; sport: number; dport: number }
  | { kind: "sctp"; sport: number; dport: number }
  // ICMP or ICMPv6 (by the IP family). `quote` is the offending packet of an error message (IP header on).
  | { kind: "icmp"; type: number; code?: number; id?: number; seq?: number; quote?: Uint8Array }
  // Bytes after the IP headers as they are (non-first fragments, other protocols).
  | { kind: "raw"; proto: number; data?: Uint8Array };

// IPv6 extension headers, in order, before the transport (or the fragment header's payload).
export type ExtHeader =
  | { kind: "hop" | "dest" | "routing"; length?: number } // length in bytes, multiple of 8, >= 8
  | { kind: "fragment"; offset: number; more: boolean; id: number }
  | { kind: "ah" };

export interface PacketSpec {
  src: string;
  dst: string;
  l4: Transport;
  payload?: Uint8Array | number; // bytes after the transport header (a number: that many zeros)
  ttl?: number;
  // IPv4 only.
  id?: number;
  options?: Uint8Array; // multiple of 4 bytes
  fragment?: { offset: number; more: boolean }; // offset in bytes, multiple of 8
  // IPv6 only.
  ext?: ExtHeader[];
  vlan?: number[];
}

const EXT_NEXTHDR: Record<ExtHeader["kind"], number> = {
  hop: 0,
  routing: 43,
  fragment: 44,
  ah: 51,
  dest: 60,
};

export function isV6(addr: string): boolean {
  return addr.includes(":");
}

export function parseAddress(addr: string): Uint8Array {
  if (!isV6(addr)) {
    const parts = addr.split(".").map(Number);
    if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
      throw new Error(`packets: address ${addr}: not an IPv4 address`);
    }
    return Uint8Array.from(parts);
  }
  const [head, tail, extra] = addr.split("::");
  if (extra !== undefined) throw new Error(`packets: address ${addr}: more than one '::'`);
  const groups = (s: string | undefined): number[] =>
    s ? s.split(":").map((g) => Number.parseInt(g, 16)) : [];
  const h = groups(head);
  const t = groups(tail);
  const fill = tail === undefined ? 0 : 8 - h.length - t.length;
  const all = [...h, ...new Array<number>(fill).fill(0), ...t];
  if (all.length !== 8 || all.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) {
    throw new Error(`packets: address ${addr}: not an IPv6 address`);
  }
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i] << 8) | (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function payloadBytes(p: PacketSpec["payload"]): Uint8Array {
  if (p === undefined) return new Uint8Array(0);
  return typeof p === "number" ? new Uint8Array(p) : p;
}

function transport(l4: Transport, v6: boolean): { proto: number; bytes: Uint8Array } {
  switch (l4.kind) {
    case "tcp": {
      const b = new Uint8Array(20);
      const v = new DataView(b.buffer);
      v.setUint16(0, l4.sport);
      v.setUint16(2, l4.dport);
      b[12] = 5 << 4;
      b[13] = l4.flags ?? 0x02; // SYN
      v.setUint16(14, 65535);
      return { proto: IPPROTO.TCP, bytes: b };
    }
    case "udp": {
      const b = new Uint8Array(8);
      const v = new DataView(b.buffer);
      v.setUint16(0, l4.sport);
      v.setUint16(2, l4.dport);
      return { proto: IPPROTO.UDP, bytes: b };
    }
    case "sctp": {
      const b = new Uint8Array(12);
      const v = new DataView(b.buffer);
      v.setUint16(0, l4.sport);
      v.setUint16(2, l4.dport);
      return { proto: IPPROTO.SCTP, bytes: b };
    }
    case "icmp": {
      const b = new Uint8Array(8);
      const v = new DataView(b.buffer);
      b[0] = l4.type;
      b[1] = l4.code ?? 0;
      v.setUint16(4, l4.id ?? 0);
      v.setUint16(6, l4.seq ?? 0);
      return { proto: v6 ? IPPROTO.ICMPV6 : IPPROTO.ICMP, bytes: concat([b, l4.quote ?? new Uint8Array(0)]) };
    }
    case "raw":
      return { proto: l4.proto, bytes: l4.data ?? new Uint8Array(0) };
  }
}

function extHeader(h: ExtHeader, next: number): Uint8Array {
  switch (h.kind) {
    case "fragment": {
      const b = new Uint8Array(8);
      const v = new DataView(b.buffer);
      b[0] = next;
      if (h.offset % 8 !== 0) throw new Error("packets: fragment offset must be a multiple of 8");
      v.setUint16(2, h.offset | (h.more ? 1 : 0));
      v.setUint32(4, h.id);
      return b;
    }
    case "ah": {
      const b = new Uint8Array(16); // (hdrlen + 2) * 4 = 16
      b[0] = next;
      b[1] = 2;
      return b;
    }
    default: {
      const len = h.length ?? 8;
      if (len < 8 || len % 8 !== 0)
        throw new Error("packets: extension header length must be a multiple of 8");
      const b = new Uint8Array(len);
      b[0] = next;
      b[1] = len / 8 - 1;
      if (h.kind !== "routing") b[2] = 1; // PadN option covering the rest
      if (h.kind !== "routing") b[3] = len - 4;
      return b;
    }
  }
}

// The IP packet (no Ethernet header).
export function ipPacket(spec: PacketSpec): Uint8Array {
  const v6 = isV6(spec.src);
  if (v6 !== isV6(spec.dst)) throw new Error("packets: src and dst of different families");
  const { proto, bytes } = transport(spec.l4, v6);
  const body = concat([bytes, payloadBytes(spec.payload)]);
  const src = parseAddress(spec.src);
  const dst = parseAddress(spec.dst);
  if (!v6) {
    const options = spec.options ?? new Uint8Array(0);
    if (options.length % 4 !== 0) throw new Error("packets: IPv4 options must be a multiple of 4 bytes");
    const h = new Uint8Array(20 + options.length);
    const v = new DataView(h.buffer);
    h[0] = 0x40 | (h.length / 4);
    v.setUint16(2, h.length + body.length);
    v.setUint16(4, spec.id ?? 0x1234);
    const frag = spec.fragment;
    if (frag) {
      if (frag.offset % 8 !== 0) throw new Error("packets: fragment offset must be a multiple of 8");
      v.setUint16(6, (frag.offset / 8) | (frag.more ? 0x2000 : 0));
    }
    h[8] = spec.ttl ?? 64;
    h[9] = proto;
    h.set(src, 12);
    h.set(dst, 16);
    h.set(options, 20);
    v.setUint16(10, checksum(h));
    return concat([h, body]);
  }
  const ext = spec.ext ?? [];
  const exts: Uint8Array[] = [];
  for (let i = ext.length - 1; i >= 0; i--) {
    const next = i === ext.length - 1 ? proto : EXT_NEXTHDR[ext[i + 1].kind];
    exts.unshift(extHeader(ext[i], next));
  }
  const first = ext.length > 0 ? EXT_NEXTHDR[ext[0].kind] : proto;
  const rest = concat([...exts, body]);
  const h = new Uint8Array(40);
  const v = new DataView(h.buffer);
  v.setUint32(0, 0x60000000);
  v.setUint16(4, rest.length);
  h[6] = first;
  h[7] = spec.ttl ?? 64;
  h.set(src, 8);
  h.set(dst, 24);
  return concat([h, rest]);
}

export const ETH_P = { IPV4: 0x0800, IPV6: 0x86dd, ARP: 0x0806, VLAN: 0x8100 } as const;

export function ethernet(etherType: number, payload: Uint8Array, vlan: number[] = []): Uint8Array {
  const h = new Uint8Array(12 + vlan.length * 4 + 2);
  const v = new DataView(h.buffer);
  h.set([0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01], 0);
  vlan.forEach((tag, i) => {
    v.setUint16(12 + i * 4, ETH_P.VLAN);
    v.setUint16(14 + i * 4, tag);
  });
  v.setUint16(h.length - 2, etherType);
  return concat([h, payload]);
}

// A whole frame: Ethernet + IP + transport.
export function packet(spec: PacketSpec): Uint8Array {
  return ethernet(isV6(spec.src) ? ETH_P.IPV6 : ETH_P.IPV4, ipPacket(spec), spec.vlan);
}

// What an ICMP error quotes: the offending packet's IP header(s) and the first 8 bytes after them.
export function quote(spec: PacketSpec): Uint8Array {
  const ip = ipPacket(spec);
  const ext = (spec.ext ?? []).reduce((n, h) => n + extHeader(h, 0).length, 0);
  const hdr = isV6(spec.src) ? 40 + ext : 20 + (spec.options?.length ?? 0);
  return ip.subarray(0, hdr + 8);
}

export function arp(): Uint8Array {
  return ethernet(ETH_P.ARP, new Uint8Array(28));
}

export function truncate(frame: Uint8Array, length: number): Uint8Array {
  return frame.subarray(0, length);
}
