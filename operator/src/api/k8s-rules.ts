// The value rules of Kubernetes' apimachinery validation (k8s.io/apimachinery/pkg/util/validation and
// the StrictIPCIDRValidation CIDR parser), as `sluice validate` needs them to reject what the API server
// rejects: DNS-1123 names, qualified names (label and annotation keys), label values, IANA port names
// and CIDRs. Each returns the problems the API server would list, empty when the value is fine.
import { isIPv4, isIPv6 } from "node:net";
import { type Prefix, parsePrefix } from "../policy/cidr.ts";

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

export function dns1123Subdomain(v: string): string[] {
  const out: string[] = [];
  if (v.length > 253) out.push("must be no more than 253 characters");
  if (!DNS1123_SUBDOMAIN.test(v))
    out.push(
      "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
    );
  return out;
}

export function dns1123Label(v: string): string[] {
  const out: string[] = [];
  if (v.length > 63) out.push("must be no more than 63 characters");
  if (!DNS1123_LABEL.test(v))
    out.push(
      "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
    );
  return out;
}

/** IsQualifiedName: a label key or annotation key, `[prefix/]name`. */
export function qualifiedName(v: string): string[] {
  const out: string[] = [];
  const parts = v.split("/");
  let name = v;
  if (parts.length === 2) {
    const [prefix, n] = parts;
    name = n;
    if (prefix.length === 0) out.push("prefix part must be non-empty");
    else for (const m of dns1123Subdomain(prefix)) out.push(`prefix part ${m}`);
  } else if (parts.length > 2) {
    return [
      "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, with an optional DNS subdomain prefix and '/'",
    ];
  }
  if (name.length === 0) out.push("name part must be non-empty");
  else if (name.length > 63) out.push("name part must be no more than 63 characters");
  if (!QUALIFIED_NAME_PART.test(name))
    out.push(
      "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
    );
  return out;
}

export function labelValue(v: string): string[] {
  const out: string[] = [];
  if (v.length > 63) out.push("must be no more than 63 characters");
  if (!LABEL_VALUE.test(v))
    out.push(
      "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
    );
  return out;
}

/** IsValidPortNum. */
export function portNumber(n: number): string[] {
  return n >= 1 && n <= 65535 ? [] : ["must be between 1 and 65535, inclusive"];
}

/** IsValidPortName: an IANA service name. */
export function portName(v: string): string[] {
  const out: string[] = [];
  if (v.length > 15) out.push("must be no more than 15 characters");
  if (!/^[-a-z0-9]+$/.test(v))
    out.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
  if (!/[a-z]/.test(v)) out.push("must contain at least one letter (a-z)");
  if (v.includes("--")) out.push("must not contain consecutive hyphens");
  if (v.length > 0 && (v.startsWith("-") || v.endsWith("-"))) out.push("must not begin or end with a hyphen");
  return out;
}

/**
 * A CIDR as Go's netip.ParsePrefix reads it (the API server's strict parser since StrictIPCIDRValidation,
 * and CEL's isCIDR): no leading zeros in the address or the length, no zone, no IPv4-mapped IPv6
 * address. `hostBits`: bits set beyond the prefix length, which CEL accepts and NetworkPolicy does not.
 * With `sloppy`, as netutils.ParseCIDRSloppy reads it: leading zeros (decimal) and mapped addresses pass.
 */
export function strictPrefix(
  text: string,
  opts: { sloppy?: boolean } = {},
): { prefix: Prefix; hostBits: boolean } | string {
  const invalid = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";
  const slash = text.indexOf("/");
  if (slash < 0) return invalid;
  let addr = text.slice(0, slash);
  let len = text.slice(slash + 1);
  if (opts.sloppy) {
    addr = addr.replace(/(^|[.:])0+(?=\d)/g, (m, sep: string) =>
      addr.includes(":") && sep !== "." ? m : sep,
    );
    len = len.replace(/^0+(?=\d)/, "");
  }
  // node's isIPv4 already refuses leading zeros; isIPv6 accepts a zone, which netip does not.
  const family = isIPv4(addr) ? 4 : isIPv6(addr) && !addr.includes("%") ? 6 : 0;
  if (family === 0 || !/^(0|[1-9][0-9]{0,2})$/.test(len) || Number(len) > (family === 4 ? 32 : 128)) {
    if (!opts.sloppy && typeof strictPrefix(text, { sloppy: true }) !== "string")
      return "must not have leading 0s in IP or prefix length";
    return invalid;
  }
  const prefix = parsePrefix(`${addr}/${len}`);
  const host = parsePrefix(`${addr}/${family === 4 ? 32 : 128}`);
  if (!prefix || !host) return invalid;
  if (!opts.sloppy && family === 6 && host.addr >> 32n === 0xffffn)
    return "must not have an IPv4-mapped IPv6 address";
  return { prefix, hostBits: host.addr !== prefix.addr };
}
