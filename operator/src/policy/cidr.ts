// IP addresses and prefixes: the one parser, normaliser and containment test of them, as bigints so
// IPv4 and IPv6 share one code path. The compiler keys identities by formatPrefix(); the datapath
// derives its key bytes from these prefixes (datapath/codec/keys.ts) and canonicalises with canonicalCidr(),
// so a prefix has one text everywhere.
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
    const n = text.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
    return { family: 4, addr: BigInt(n) };
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
    // Two groups at a time: one bigint operation per 32-bit word.
    let addr = 0n;
    for (let i = 0; i < 8; i += 2) {
      const word = Number.parseInt(groups[i], 16) * 0x10000 + Number.parseInt(groups[i + 1], 16);
      addr = (addr << 32n) | BigInt(word);
    }
    return { family: 6, addr };
  }
  return undefined;
}

// "10.0.0.0/8" (or, with bareIsHost, "10.1.2.3": a host prefix) → the prefix with host bits cleared,
// or what is wrong with the text.
function readPrefix(text: string, bareIsHost: boolean): Prefix | string {
  const slash = text.indexOf("/");
  if (slash < 0 && !bareIsHost) return "no prefix length";
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!ip) return "bad address";
  if (slash < 0) return hostPrefix(ip);
  const lenText = text.slice(slash + 1);
  const len = Number(lenText);
  if (!/^\d{1,3}$/.test(lenText) || len > bits(ip.family))
    return `prefix length must be 0..${bits(ip.family)}`;
  return { family: ip.family, addr: mask(ip.addr, ip.family, len), len };
}

// A policy CIDR ("ADDRESS/LENGTH"), or undefined when it is not one.
export function parsePrefix(text: string): Prefix | undefined {
  const p = readPrefix(text, false);
  return typeof p === "string" ? undefined : p;
}

// "10.0.0.0/8", "fd00::/64" or a bare address (a host prefix). Throws naming the input.
export function parseCidr(text: string): Prefix {
  const p = readPrefix(text, true);
  if (typeof p === "string") throw new Error(`invalid CIDR ${JSON.stringify(text)}: ${p}`);
  return p;
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
  if (family === 4) {
    const n = Number(addr);
    return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
  }
  const groups: string[] = [];
  for (let w = 3; w >= 0; w--) {
    const n = Number((addr >> BigInt(w * 32)) & 0xffffffffn);
    groups.push((n >>> 16).toString(16), (n & 0xffff).toString(16));
  }
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

// Joined rather than a template literal: V8 builds a template's result as a chain of cons strings
// (32 bytes each, kept beside the flat copy that hashing it makes), and these texts live as map keys
// and ipcache entries for as long as their pods. A heap snapshot of the agent at 50,000 pods held
// 388,000 cons strings (11.8 MiB), nearly all of them keys of the ipcache, the incremental compiler's
// objects (objectKey) and policy entries (policyEntryKey), which are joined the same way.
export function formatPrefix(p: Prefix): string {
  return [formatIp(p.family, p.addr), p.len].join("/");
}

// The ipcache key of one address: formatPrefix() of its host prefix. Pod addresses are nearly always
// IPv4 in dotted form without leading zeros, which formatIp() gives back unchanged: that form is
// checked by hand and suffixed, with no bigint made, since a universe build asks this for every pod
// address of the cluster. Anything else goes through parseIp().
export function hostKey(text: string): string | undefined {
  if (isDottedQuad(text)) return [text, "32"].join("/");
  const ip = parseIp(text);
  return ip && formatPrefix(hostPrefix(ip));
}

// Four decimal octets, each 0..255 without a leading zero: the text formatIp(4, …) writes.
function isDottedQuad(text: string): boolean {
  let dots = 0;
  let digits = 0;
  let value = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || ++dots > 3) return false;
      digits = 0;
      value = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && value === 0) return false;
      value = value * 10 + (c - 48);
      if (++digits > 3 || value > 255) return false;
    } else return false;
  }
  return dots === 3 && digits > 0;
}

// Canonical form (host bits cleared, shortest IPv6 text): two spellings of one prefix compare equal.
export function canonicalCidr(text: string): string {
  return formatPrefix(parseCidr(text));
}
