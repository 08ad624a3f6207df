// Construction of map keys/values from the compiler's MapState vocabulary, and back. Pure: no kernel.
import { formatIp, formatPrefix, parseCidr, parseIp } from "../../policy/cidr.ts";
import type { Direction, PolicyEntry, Verdict } from "../../policy/mapstate.ts";
import type { IpcacheKey, PolicyKey, PolicyValue, SourceKey } from "./codecs.ts";
import { enums } from "./layout.generated.ts";

const F = enums.sl_family;
const P = enums.sl_policy_prefix;
const D = enums.sl_dir;
const V = enums.sl_verdict;

// The ipcache LPM prefix covers the family byte and 3 pad bytes (32 bits) before the address.
const IPCACHE_FIXED_BITS = 32;

// An address as the maps store it: 4 or 16 bytes in network order.
export function addressBytes(family: 4 | 6, addr: bigint): Uint8Array {
  const out = new Uint8Array(family === 4 ? 4 : 16);
  // 32-bit words: one bigint operation per word, not per byte.
  for (let at = out.length - 4, a = addr; at >= 0; at -= 4, a >>= 32n) {
    const w = Number(a & 0xffffffffn);
    out[at] = w >>> 24;
    out[at + 1] = (w >>> 16) & 0xff;
    out[at + 2] = (w >>> 8) & 0xff;
    out[at + 3] = w & 0xff;
  }
  return out;
}

// The inverse of addressBytes: 4 bytes are IPv4, 16 IPv6.
export function addressOfBytes(bytes: Uint8Array): { family: 4 | 6; addr: bigint } {
  let addr = 0n;
  for (let at = 0; at < bytes.length; at += 4) {
    const w = ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) >>> 0;
    addr = (addr << 32n) | BigInt(w);
  }
  return { family: bytes.length === 4 ? 4 : 6, addr };
}

// A map address (4 or 16 bytes) as text: "10.0.0.1", "fd00::1".
export function formatAddressBytes(bytes: Uint8Array): string {
  const a = addressOfBytes(bytes);
  return formatIp(a.family, a.addr);
}

export function ipcacheKeyOf(cidr: string): IpcacheKey {
  const p = parseCidr(cidr);
  const addr = new Uint8Array(16);
  addr.set(addressBytes(p.family, p.addr));
  return {
    prefixlen: IPCACHE_FIXED_BITS + p.len,
    family: p.family === 4 ? F.SL_FAMILY_V4 : F.SL_FAMILY_V6,
    addr,
  };
}

// A full-length prefix (a host: the hash of its family holds it), or undefined for a shorter one.
export function hostOfCidr(cidr: string): { family: 4 | 6; addr: Uint8Array } | undefined {
  const p = parseCidr(cidr);
  return p.len === (p.family === 4 ? 32 : 128)
    ? { family: p.family, addr: addressBytes(p.family, p.addr) }
    : undefined;
}

export function cidrOfHost(addr: Uint8Array): string {
  const a = addressOfBytes(addr);
  return formatPrefix({ ...a, len: a.family === 4 ? 32 : 128 });
}

export function cidrOfIpcacheKey(k: IpcacheKey): string {
  const v4 = k.family === F.SL_FAMILY_V4;
  if (!v4 && k.family !== F.SL_FAMILY_V6)
    throw new Error(`sl_ipcache_key.family: unknown family ${k.family}`);
  const a = addressOfBytes(k.addr.slice(0, v4 ? 4 : 16));
  return formatPrefix({ ...a, len: k.prefixlen - IPCACHE_FIXED_BITS });
}

// An endpoint's own address as sl_src keys it.
export function sourceKeyOf(epId: number, address: string): SourceKey {
  const ip = parseIp(address);
  if (!ip) throw new Error(`endpoint ${epId}: address ${JSON.stringify(address)} is not an IP address`);
  const addr = new Uint8Array(16);
  addr.set(addressBytes(ip.family, ip.addr));
  return { ep_id: epId, family: ip.family === 4 ? F.SL_FAMILY_V4 : F.SL_FAMILY_V6, addr };
}

// The endpoint and address (canonical text) of an sl_src key.
export function sourceOfKey(k: SourceKey): { epId: number; address: string } {
  const v4 = k.family === F.SL_FAMILY_V4;
  if (!v4 && k.family !== F.SL_FAMILY_V6) throw new Error(`sl_source_key.family: unknown family ${k.family}`);
  return { epId: k.ep_id, address: formatAddressBytes(k.addr.slice(0, v4 ? 4 : 16)) };
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

// A policy entry as the maps store it: the compiler's entry and the rule counters (sl_rcnt slots) its
// packets and those the Audit policies would decide otherwise go to (writer/rule-slots.ts assigns them;
// absent: 0, not counted).
export interface StoredEntry extends PolicyEntry {
  slot?: number;
  auditSlot?: number;
}

// Whether two entries of one key need the same policy value (verdict, rule, audit outcome, slots).
export function sameStoredValue(a: StoredEntry, b: StoredEntry): boolean {
  return (
    a.verdict === b.verdict &&
    a.ruleId === b.ruleId &&
    (a.slot ?? 0) === (b.slot ?? 0) &&
    a.audit?.verdict === b.audit?.verdict &&
    (a.audit?.ruleId ?? 0) === (b.audit?.ruleId ?? 0) &&
    (a.auditSlot ?? 0) === (b.auditSlot ?? 0)
  );
}

export function policyValueOf(e: StoredEntry): PolicyValue {
  return {
    verdict: verdictCode(e.verdict),
    audit_verdict: e.audit ? verdictCode(e.audit.verdict) : V.SL_VERDICT_NONE,
    slot: e.slot ?? 0,
    rule_id: e.ruleId,
    audit_rule_id: e.audit?.ruleId ?? 0,
    audit_slot: e.audit ? (e.auditSlot ?? 0) : 0,
  };
}

// The entry fields a policy value holds, back from the map (the inverse of policyValueOf; slot 0 is
// left out, as an entry without counters has it).
export function valueFieldsOf(
  v: PolicyValue,
): Pick<StoredEntry, "verdict" | "ruleId" | "audit" | "slot" | "auditSlot"> {
  return {
    verdict: verdictOfCode(v.verdict),
    ruleId: v.rule_id,
    ...(v.audit_verdict !== V.SL_VERDICT_NONE && {
      audit: { verdict: verdictOfCode(v.audit_verdict), ruleId: v.audit_rule_id },
    }),
    ...(v.slot !== 0 && { slot: v.slot }),
    ...(v.audit_slot !== 0 && { auditSlot: v.audit_slot }),
  };
}

export function entryOfPolicy(k: PolicyKey, v: PolicyValue): StoredEntry {
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
    ...valueFieldsOf(v),
  };
}
