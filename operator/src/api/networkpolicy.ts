// The API server's own NetworkPolicy validation (k8s.io/kubernetes pkg/apis/networking/validation,
// ValidateNetworkPolicySpec, v1.37) rule by rule, with its field paths, for `sluice validate`. Input is
// the object as the API server decodes it: type-checked, nulls turned into Go zero values (schemas.ts).
import { labelValue, portName, portNumber, qualifiedName, strictPrefix } from "./k8s-rules.ts";
import type { Finding } from "./crd-rules.ts";

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v !== null && typeof v === "object" ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** ValidateLabels: every problem is reported on the map itself, as the API server does. */
export function labelMapFindings(labels: unknown, field: string): Finding[] {
  const out: Finding[] = [];
  for (const [k, v] of Object.entries(obj(labels))) {
    for (const m of qualifiedName(k)) out.push({ field, message: `${JSON.stringify(k)}: ${m}` });
    for (const m of labelValue(String(v ?? ""))) out.push({ field, message: `${JSON.stringify(v)}: ${m}` });
  }
  return out;
}

/** metav1 ValidateLabelSelector (AllowInvalidLabelValueInSelector false: a create). */
export function labelSelectorFindings(sel: unknown, field: string): Finding[] {
  const s = obj(sel);
  const out = labelMapFindings(s.matchLabels, `${field}.matchLabels`);
  for (const [i, e0] of arr(s.matchExpressions).entries()) {
    const e = obj(e0);
    const at = `${field}.matchExpressions[${i}]`;
    const values = arr(e.values);
    const op = String(e.operator ?? "");
    if (op === "In" || op === "NotIn") {
      if (values.length === 0)
        out.push({ field: `${at}.values`, message: "must be specified when `operator` is 'In' or 'NotIn'" });
    } else if (op === "Exists" || op === "DoesNotExist") {
      if (values.length > 0)
        out.push({
          field: `${at}.values`,
          message: "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        });
    } else
      out.push({ field: `${at}.operator`, message: `${JSON.stringify(op)}: not a valid selector operator` });
    for (const m of qualifiedName(String(e.key ?? ""))) out.push({ field: `${at}.key`, message: m });
    for (const [j, v] of values.entries())
      for (const m of labelValue(String(v ?? ""))) out.push({ field: `${at}.values[${j}]`, message: m });
  }
  return out;
}

function portFindings(p: Obj, at: string): Finding[] {
  const out: Finding[] = [];
  if (p.protocol !== undefined && !["TCP", "UDP", "SCTP"].includes(p.protocol as string))
    out.push({
      field: `${at}.protocol`,
      message: `Unsupported value: ${JSON.stringify(p.protocol)}: supported values: "TCP", "UDP", "SCTP"`,
    });
  const endPort = p.endPort as number | undefined;
  if (typeof p.port === "number") {
    for (const m of portNumber(p.port)) out.push({ field: `${at}.port`, message: m });
    if (endPort !== undefined) {
      if (endPort < p.port)
        out.push({ field: `${at}.endPort`, message: "must be greater than or equal to `port`" });
      for (const m of portNumber(endPort)) out.push({ field: `${at}.endPort`, message: m });
    }
  } else if (typeof p.port === "string") {
    if (endPort !== undefined)
      out.push({ field: `${at}.endPort`, message: "may not be specified when `port` is non-numeric" });
    for (const m of portName(p.port))
      out.push({ field: `${at}.port`, message: `${JSON.stringify(p.port)}: ${m}` });
  } else if (endPort !== undefined)
    out.push({ field: `${at}.endPort`, message: "may not be specified when `port` is not specified" });
  return out;
}

// ValidateIPBlock: the strict parser's problems on the value; an except must be a strict subset. Like
// the API server, excepts are compared with the cidr as its lenient parser reads it.
function ipBlockFindings(b: Obj, at: string): Finding[] {
  const cidr = String(b.cidr ?? "");
  if (cidr === "") return [{ field: `${at}.cidr`, message: "Required value" }];
  const out: Finding[] = [];
  const strict = (v: string, field: string) => {
    const p = strictPrefix(v);
    if (typeof p === "string") out.push({ field, message: `${JSON.stringify(v)}: ${p}` });
    else if (p.hostBits)
      out.push({ field, message: `${JSON.stringify(v)}: must not have bits set beyond the prefix length` });
  };
  strict(cidr, `${at}.cidr`);
  const outer = strictPrefix(cidr, { sloppy: true });
  if (typeof outer === "string") return out;
  for (const [i, e0] of arr(b.except).entries()) {
    const e = String(e0 ?? "");
    strict(e, `${at}.except[${i}]`);
    const inner = strictPrefix(e, { sloppy: true });
    if (typeof inner === "string") continue;
    // net.IPNet.Contains on the except's address, and a strictly longer mask.
    const o = outer.prefix;
    const x = inner.prefix;
    const contains =
      o.family === x.family &&
      o.len < x.len &&
      o.addr ===
        (x.addr >> BigInt((o.family === 4 ? 32 : 128) - o.len)) <<
          BigInt((o.family === 4 ? 32 : 128) - o.len);
    if (!contains)
      out.push({
        field: `${at}.except[${i}]`,
        message: `${JSON.stringify(e)}: must be a strict subset of \`cidr\``,
      });
  }
  return out;
}

function peerFindings(p: Obj, at: string): Finding[] {
  const out: Finding[] = [];
  let n = 0;
  if (p.podSelector !== undefined) {
    n++;
    out.push(...labelSelectorFindings(p.podSelector, `${at}.podSelector`));
  }
  if (p.namespaceSelector !== undefined) {
    n++;
    out.push(...labelSelectorFindings(p.namespaceSelector, `${at}.namespaceSelector`));
  }
  if (p.ipBlock !== undefined) {
    n++;
    out.push(...ipBlockFindings(obj(p.ipBlock), `${at}.ipBlock`));
  }
  if (n === 0) out.push({ field: at, message: "Required value: must specify a peer" });
  else if (n > 1 && p.ipBlock !== undefined)
    out.push({ field: at, message: "Forbidden: may not specify both ipBlock and another peer" });
  return out;
}

/** ValidateNetworkPolicySpec on a decoded spec (absent spec: the zero spec, which is valid). */
export function networkPolicySpecFindings(spec0: unknown): Finding[] {
  const spec = obj(spec0);
  const out = labelSelectorFindings(spec.podSelector, "spec.podSelector");
  for (const [dir, peers] of [
    ["ingress", "from"],
    ["egress", "to"],
  ] as const)
    for (const [i, r0] of arr(spec[dir]).entries()) {
      const r = obj(r0);
      const at = `spec.${dir}[${i}]`;
      for (const [j, p] of arr(r.ports).entries()) out.push(...portFindings(obj(p), `${at}.ports[${j}]`));
      for (const [j, p] of arr(r[peers]).entries()) out.push(...peerFindings(obj(p), `${at}.${peers}[${j}]`));
    }
  const types = arr(spec.policyTypes);
  if (types.length > 2)
    out.push({ field: "spec.policyTypes", message: "may not specify more than two policyTypes" });
  else
    for (const [i, t] of types.entries())
      if (t !== "Ingress" && t !== "Egress")
        out.push({
          field: `spec.policyTypes[${i}]`,
          message: `Unsupported value: ${JSON.stringify(t)}: supported values: "Ingress", "Egress"`,
        });
  return out;
}
