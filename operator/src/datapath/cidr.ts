// IP prefixes as the ipcache stores them: family, address bytes (network order), prefix length.
import { isIPv4, isIPv6 } from "node:net";

export interface Prefix {
  family: 4 | 6;
  // 4 or 16 bytes, host bits cleared.
  addr: Uint8Array;
  bits: number;
}

function parseV4(s: string): Uint8Array {
  return Uint8Array.from(s.split(".").map(Number));
}

function parseV6(s: string): Uint8Array {
  let text = s;
  const out = new Uint8Array(16);
  // Embedded IPv4 tail (::ffff:1.2.3.4).
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  let tail: number[] = [];
  if (v4) {
    const b = parseV4(v4[1]);
    tail = [(b[0] << 8) | b[1], (b[2] << 8) | b[3]];
    text = text.slice(0, -v4[1].length) + (text.endsWith(`::${v4[1]}`) ? "" : "0");
    if (text.endsWith(":0")) text = text.slice(0, -2);
  }
  const [head, rest] = text.includes("::") ? text.split("::") : [text, undefined];
  const h = head
    ? head
        .split(":")
        .filter((x) => x !== "")
        .map((x) => Number.parseInt(x, 16))
    : [];
  const r = rest !== undefined && rest !== "" ? rest.split(":").map((x) => Number.parseInt(x, 16)) : [];
  const groups =
    rest === undefined
      ? [...h, ...tail]
      : [...h, ...new Array(8 - h.length - r.length - tail.length).fill(0), ...r, ...tail];
  for (let i = 0; i < 8; i++) {
    out[2 * i] = groups[i] >> 8;
    out[2 * i + 1] = groups[i] & 0xff;
  }
  return out;
}

// Parses "10.0.0.0/8", "fd00::/64" or a bare address (a host prefix). Throws naming the input.
export function parsePrefix(cidr: string): Prefix {
  const slash = cidr.indexOf("/");
  const ip = slash < 0 ? cidr : cidr.slice(0, slash);
  const family = isIPv4(ip) ? 4 : isIPv6(ip) ? 6 : 0;
  if (family === 0) throw new Error(`invalid CIDR ${JSON.stringify(cidr)}: bad address`);
  const max = family === 4 ? 32 : 128;
  const bits = slash < 0 ? max : Number(cidr.slice(slash + 1));
  if (
    !Number.isInteger(bits) ||
    bits < 0 ||
    bits > max ||
    (slash >= 0 && !/^\d+$/.test(cidr.slice(slash + 1)))
  )
    throw new Error(`invalid CIDR ${JSON.stringify(cidr)}: prefix length must be 0..${max}`);
  const addr = family === 4 ? parseV4(ip) : parseV6(ip);
  for (let i = 0; i < addr.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - 8 * i));
    addr[i] &= keep === 8 ? 0xff : (0xff << (8 - keep)) & 0xff;
  }
  return { family, addr, bits };
}

export function formatPrefix(p: Prefix): string {
  if (p.family === 4) return `${Array.from(p.addr.subarray(0, 4)).join(".")}/${p.bits}`;
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((p.addr[2 * i] << 8) | p.addr[2 * i + 1]);
  // Longest run of zero groups (length >= 2) becomes "::" (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  const text =
    best < 0 ? hex.join(":") : `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
  return `${text}/${p.bits}`;
}

// Canonical form (host bits cleared, shortest IPv6 text): two spellings of one prefix compare equal.
export function canonicalCidr(cidr: string): string {
  return formatPrefix(parsePrefix(cidr));
}
