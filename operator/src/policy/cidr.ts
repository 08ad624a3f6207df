// IP prefixes as bigints so IPv4 and IPv6 share one code path.
import { isIPv4, isIPv6 } from "node:net";

export interface Prefix {
  family: 4 | 6;
  // Network address with host bits cleared.
  addr: bigint;
  len: number;
}

function bits(family: 4 | 6): number {
  return family === 4 ? 32 : 128;
}

export function parseIp(text: string): { family: 4 | 6; addr: bigint } | undefined {
  if (isIPv4(text)) {
    const n = text.split(".").reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n);
    return { family: 4, addr: n };
  }
  if (isIPv6(text)) {
    let t = text;
    const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(t);
    if (v4) {
      const n = parseIp(v4[1])!.addr;
      t = `${t.slice(0, -v4[1].length)}${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
    }
    const [head, tail] = t.includes("::") ? t.split("::") : [t, undefined];
    const h = head ? head.split(":") : [];
    const tl = tail !== undefined && tail !== "" ? tail.split(":") : [];
    const groups = tail === undefined ? h : [...h, ...new Array(8 - h.length - tl.length).fill("0"), ...tl];
    if (groups.length !== 8) return undefined;
    return { family: 6, addr: groups.reduce((acc, g) => (acc << 16n) | BigInt(Number.parseInt(g, 16)), 0n) };
  }
  return undefined;
}

export function parsePrefix(text: string): Prefix | undefined {
  const slash = text.indexOf("/");
  if (slash < 0) return undefined;
  const ip = parseIp(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (!ip || !/^\d{1,3}$/.test(lenText)) return undefined;
  const len = Number(lenText);
  if (len > bits(ip.family)) return undefined;
  return { family: ip.family, addr: mask(ip.addr, ip.family, len), len };
}

function mask(addr: bigint, family: 4 | 6, len: number): bigint {
  const shift = BigInt(bits(family) - len);
  return (addr >> shift) << shift;
}

export function hostPrefix(ip: { family: 4 | 6; addr: bigint }): Prefix {
  return { family: ip.family, addr: ip.addr, len: bits(ip.family) };
}

// True when every address of inner is in outer.
export function containsPrefix(outer: Prefix, inner: Prefix): boolean {
  return (
    outer.family === inner.family &&
    outer.len <= inner.len &&
    mask(inner.addr, inner.family, outer.len) === outer.addr
  );
}

export function containsIp(outer: Prefix, ip: { family: 4 | 6; addr: bigint }): boolean {
  return outer.family === ip.family && mask(ip.addr, ip.family, outer.len) === outer.addr;
}

export function formatIp(family: 4 | 6, addr: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((addr >> s) & 0xffn)).join(".");
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((addr >> BigInt(i * 16)) & 0xffffn).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}

export function formatPrefix(p: Prefix): string {
  return `${formatIp(p.family, p.addr)}/${p.len}`;
}
