// The CRDs' x-kubernetes-validations (CEL) rules, each as a TypeScript predicate keyed by its exact rule
// text, run where the API server runs them: at every place the rule sits in the schema, reporting the
// place plus the rule's fieldPath and its message. A rule added to crds/ without a predicate here makes
// celFindings throw, so `sluice validate` cannot silently pass what the API server would refuse.
import { strictPrefix } from "./k8s-rules.ts";
import { containsPrefix } from "../policy/cidr.ts";

export interface Finding {
  field: string;
  message: string;
}

export interface StructuralSchema {
  type?: string;
  properties?: Record<string, StructuralSchema>;
  items?: StructuralSchema;
  additionalProperties?: StructuralSchema | boolean;
  required?: string[];
  "x-kubernetes-validations"?: Array<{ rule: string; message: string; fieldPath?: string }>;
  "x-kubernetes-int-or-string"?: boolean;
  "x-kubernetes-preserve-unknown-fields"?: boolean;
  [k: string]: unknown;
}

type Obj = Record<string, unknown>;
const has = (o: Obj, k: string) => o[k] !== undefined;
const isInt = (v: unknown) => typeof v === "number" && Number.isInteger(v);
// CEL's isCIDR: netip.ParsePrefix without IPv4-mapped addresses; bits beyond the length are allowed.
const isCidr = (v: unknown) => typeof v === "string" && typeof strictPrefix(v) !== "string";
const cidrOf = (v: string) => {
  const p = strictPrefix(v);
  if (typeof p === "string") throw new Error("not a CIDR");
  return p.prefix;
};
const noPass = (rules: unknown) =>
  rules === undefined || (rules as Obj[]).every((r) => !has(r, "action") || r.action !== "Pass");

// SIG Network's egress rules (crds/upstream/): a named port cannot go with peers that have none.
const namedPortWith = (peerFields: string[], ports: string, named: string) => (s: Obj) =>
  !(
    ((s.to as Obj[] | undefined) ?? []).some((p) => peerFields.some((f) => has(p, f))) &&
    has(s, ports) &&
    (s[ports] as Obj[]).some((p) => has(p, named))
  );

/**
 * Rule text → whether `self` satisfies it. Transition rules (oldSelf) hold on create. `self` is an
 * object but for the rules that sit on a string (isCIDR(self)): those cast it.
 */
const RULES: Record<string, (self: Obj) => boolean> = {
  "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)": (s) =>
    (s.operator === "In" || s.operator === "NotIn") ===
    (has(s, "values") && (s.values as unknown[]).length > 0),
  "isCIDR(self.cidr)": (s) => isCidr(s.cidr),
  "!has(self.except) || self.except.all(e, isCIDR(e) && isCIDR(self.cidr) && cidr(self.cidr).containsCIDR(cidr(e)))":
    (s) =>
      !has(s, "except") ||
      (s.except as string[]).every(
        (e) => isCidr(e) && isCidr(s.cidr) && containsPrefix(cidrOf(s.cidr as string), cidrOf(e)),
      ),
  "!has(self.endPort) || (has(self.port) && type(self.port) == int && self.endPort >= self.port)": (s) =>
    !has(s, "endPort") || (isInt(s.port) && (s.endPort as number) >= (s.port as number)),
  "!has(self.port) || type(self.port) != int || (self.port >= 1 && self.port <= 65535)": (s) =>
    !isInt(s.port) || ((s.port as number) >= 1 && (s.port as number) <= 65535),
  "(!has(self.type) && !has(self.code)) || (has(self.protocol) && self.protocol in ['ICMP', 'ICMPv6'])": (
    s,
  ) => (!has(s, "type") && !has(s, "code")) || s.protocol === "ICMP" || s.protocol === "ICMPv6",
  "!has(self.code) || has(self.type)": (s) => !has(s, "code") || has(s, "type"),
  "!has(self.port) || !has(self.protocol) || !(self.protocol in ['ICMP', 'ICMPv6'])": (s) =>
    !has(s, "port") || !(s.protocol === "ICMP" || s.protocol === "ICMPv6"),
  "!has(self.ingress) || self.ingress.all(r, !has(r.action) || r.action != 'Pass')": (s) => noPass(s.ingress),
  "!has(self.egress) || self.egress.all(r, !has(r.action) || r.action != 'Pass')": (s) => noPass(s.egress),
  "self.tier == 'Admin' || ((!has(self.ingress) || self.ingress.all(r, !has(r.action) || r.action != 'Pass')) && (!has(self.egress) || self.egress.all(r, !has(r.action) || r.action != 'Pass')))":
    (s) => s.tier === "Admin" || (noPass(s.ingress) && noPass(s.egress)),
  "self == oldSelf": () => true,
  "isCIDR(self)": (s) => isCidr(s as unknown),
  "self.start < self.end": (s) => (s.start as number) < (s.end as number),
  "self.metadata.name == 'default'": (s) => (s.metadata as Obj | undefined)?.name === "default",
  "!(self.to.exists(peer, has(peer.networks) || has(peer.nodes) || has(peer.domainNames)) && has(self.protocols) && self.protocols.exists(protocol, has(protocol.destinationNamedPort)))":
    namedPortWith(["networks", "nodes", "domainNames"], "protocols", "destinationNamedPort"),
  "!(self.to.exists(peer, has(peer.networks) || has(peer.nodes) || has(peer.domainNames)) && has(self.ports) && self.ports.exists(port, has(port.namedPort)))":
    namedPortWith(["networks", "nodes", "domainNames"], "ports", "namedPort"),
  "!(self.to.exists(peer, has(peer.networks) || has(peer.nodes)) && has(self.ports) && self.ports.exists(port, has(port.namedPort)))":
    namedPortWith(["networks", "nodes"], "ports", "namedPort"),
  "self.metadata.name.matches('^[1-9][0-9]{2,9}$') && int(self.metadata.name) >= 256 && int(self.metadata.name) < 16777216":
    (s) => {
      const name = String((s.metadata as Obj | undefined)?.name ?? "");
      return /^[1-9][0-9]{2,9}$/.test(name) && Number(name) >= 256 && Number(name) < 16777216;
    },
};

/** Throws when the schema has a rule without a predicate above (checked when a CRD's schema loads). */
export function checkRulesKnown(schema: StructuralSchema, where: string): void {
  for (const v of schema["x-kubernetes-validations"] ?? [])
    if (!RULES[v.rule])
      throw new Error(`${where}: CEL rule without a predicate in api/crd-rules.ts: ${v.rule}`);
  for (const [k, s] of Object.entries(schema.properties ?? {})) checkRulesKnown(s, `${where}.${k}`);
  if (schema.items) checkRulesKnown(schema.items, `${where}[]`);
  if (typeof schema.additionalProperties === "object")
    checkRulesKnown(schema.additionalProperties, `${where}{}`);
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/** Every CEL rule of `schema` that `value` (schema-valid, nulls pruned) breaks, where it breaks. */
export function celFindings(schema: StructuralSchema, value: unknown, path = ""): Finding[] {
  const out: Finding[] = [];
  const walk = (s: StructuralSchema, v: unknown, at: string) => {
    if (v === undefined) return;
    // Rules run on the value their schema describes: an object, or a scalar (a CIDR string).
    if (v !== null && !Array.isArray(v))
      for (const rule of s["x-kubernetes-validations"] ?? []) {
        const pred = RULES[rule.rule];
        if (!pred) throw new Error(`CEL rule without a predicate in api/crd-rules.ts: ${rule.rule}`);
        if (!pred(v as Obj))
          out.push({
            field: (at + (rule.fieldPath ?? "")).replace(/^\./, "") || "(root)",
            message: rule.message,
          });
      }
    if (Array.isArray(v) && s.items) for (const [i, item] of v.entries()) walk(s.items, item, `${at}[${i}]`);
    else if (v !== null && typeof v === "object") {
      const o = v as Obj;
      for (const [k, sub] of Object.entries(s.properties ?? {})) walk(sub, o[k], join(at, k));
      if (typeof s.additionalProperties === "object")
        for (const [k, item] of Object.entries(o)) walk(s.additionalProperties, item, join(at, k));
    }
  };
  walk(schema, value, path);
  return out;
}
