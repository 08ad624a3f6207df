// Construction of map keys/values from the compiler's MapState vocabulary, and back. Pure: no kernel.
import type { Direction, PolicyEntry, Verdict } from "../policy/mapstate.ts";
import { formatPrefix, type Prefix, parsePrefix } from "./cidr.ts";
import type { IpcacheKey, PolicyKey, PolicyValue } from "./codecs.ts";
import { enums } from "./layout.generated.ts";

const F = enums.sl_family;
const P = enums.sl_policy_prefix;
const D = enums.sl_dir;
const V = enums.sl_verdict;

// The ipcache LPM prefix covers the family byte and 3 pad bytes (32 bits) before the address.
const IPCACHE_FIXED_BITS = 32;

export function ipcacheKeyOf(cidr: string): IpcacheKey {
  const p = parsePrefix(cidr);
  const addr = new Uint8Array(16);
  addr.set(p.addr);
  return {
    prefixlen: IPCACHE_FIXED_BITS + p.bits,
    family: p.family === 4 ? F.SL_FAMILY_V4 : F.SL_FAMILY_V6,
    addr,
  };
}

// A full-length prefix (a host: the hash of its family holds it), or undefined for a shorter one.
export function hostOfCidr(cidr: string): { family: 4 | 6; addr: Uint8Array } | undefined {
  const p = parsePrefix(cidr);
  return p.bits === (p.family === 4 ? 32 : 128) ? { family: p.family, addr: p.addr } : undefined;
}

export function cidrOfHost(addr: Uint8Array): string {
  const family = addr.length === 4 ? 4 : 6;
  return formatPrefix({ family, addr, bits: family === 4 ? 32 : 128 });
}

export function cidrOfIpcacheKey(k: IpcacheKey): string {
  const v4 = k.family === F.SL_FAMILY_V4;
  if (!v4 && k.family !== F.SL_FAMILY_V6)
    throw new Error(`sl_ipcache_key.family: unknown family ${k.family}`);
  const p: Prefix = {
    family: v4 ? 4 : 6,
    addr: k.addr.slice(0, v4 ? 4 : 16),
    bits: k.prefixlen - IPCACHE_FIXED_BITS,
  };
  return formatPrefix(p);
}

// A word of an inline policy entry (struct sl_policy_rule's match or mask): a little-endian u32 whose
// bytes are a port in network order, a protocol byte and 0.
export function ruleWord(port: number, proto: number): number {
  return ((port >>> 8) | ((port & 0xff) << 8) | (proto << 16)) >>> 0;
}

// An inline rule's word, back to (port, protocol): the inverse of ruleWords' byte order.
export function ofRuleWord(w: number): { port: number; proto: number } {
  return { port: ((w & 0xff) << 8) | ((w >>> 8) & 0xff), proto: (w >>> 16) & 0xff };
}

export function dirCode(d: Direction): number {
  return d === "ingress" ? D.SL_DIR_INGRESS : D.SL_DIR_EGRESS;
}

export function dirOfCode(c: number): Direction {
  if (c === D.SL_DIR_INGRESS) return "ingress";
  if (c === D.SL_DIR_EGRESS) return "egress";
  throw new Error(`sl_dir: unknown direction ${c}`);
}

export function verdictCode(v: Verdict): number {
  return v === "allow" ? V.SL_VERDICT_ALLOW : V.SL_VERDICT_DENY;
}

export function verdictOfCode(c: number): Verdict {
  if (c === V.SL_VERDICT_ALLOW) return "allow";
  if (c === V.SL_VERDICT_DENY) return "deny";
  throw new Error(`sl_verdict: unexpected verdict ${c} in a policy entry`);
}

// The mask of a port prefix of len bits (0..16): the bits of the port an entry matches on.
export function portMask(len: number): number {
  return (0xffff << (16 - len)) & 0xffff;
}

// An entry in the form the map stores it: port masked to its prefix, protocol 0 meaning any port.
export function canonicalEntry(e: PolicyEntry): PolicyEntry {
  if (!Number.isInteger(e.protocol) || e.protocol < 0 || e.protocol > 255)
    throw new Error(`policy entry: protocol ${e.protocol} out of range`);
  if (e.protocol === 0) return { ...e, port: 0, portPrefixLen: 0 };
  if (!Number.isInteger(e.portPrefixLen) || e.portPrefixLen < 0 || e.portPrefixLen > 16)
    throw new Error(`policy entry: portPrefixLen ${e.portPrefixLen} must be 0..16`);
  if (!Number.isInteger(e.port) || e.port < 0 || e.port > 0xffff)
    throw new Error(`policy entry: port ${e.port} out of range`);
  return { ...e, port: e.port & portMask(e.portPrefixLen) };
}

export function policyKeyOf(epId: number, gen: number, e: PolicyEntry): PolicyKey {
  const c = canonicalEntry(e);
  return {
    prefixlen: c.protocol === 0 ? P.SL_POLICY_PREFIX_FIXED : P.SL_POLICY_PREFIX_PROTO + c.portPrefixLen,
    ep_id: epId,
    identity: c.identity,
    gen,
    dir: dirCode(c.direction),
    proto: c.protocol,
    port: c.port,
  };
}

export function policyValueOf(e: PolicyEntry): PolicyValue {
  return { verdict: verdictCode(e.verdict), rule_id: e.ruleId };
}

export function entryOfPolicy(k: PolicyKey, v: PolicyValue): PolicyEntry {
  const any = k.prefixlen === P.SL_POLICY_PREFIX_FIXED;
  if (!any && (k.prefixlen < P.SL_POLICY_PREFIX_PROTO || k.prefixlen > P.SL_POLICY_PREFIX_FULL))
    throw new Error(
      `sl_policy_key.prefixlen: ${k.prefixlen} outside ${P.SL_POLICY_PREFIX_FIXED}..${P.SL_POLICY_PREFIX_FULL}`,
    );
  return {
    direction: dirOfCode(k.dir),
    identity: k.identity,
    protocol: any ? 0 : k.proto,
    port: any ? 0 : k.port,
    portPrefixLen: any ? 0 : k.prefixlen - P.SL_POLICY_PREFIX_PROTO,
    verdict: verdictOfCode(v.verdict),
    ruleId: v.rule_id,
  };
}
