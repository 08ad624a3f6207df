// Checks beyond the schema: the intent of the CRDs' CEL rules (so CI catches what the API server
// would reject) and semantic mistakes the API server accepts (rules that can never match, rules
// an earlier one shadows, named ports no selected pod has).
import type { NetworkPolicy, Pod } from "../api/k8s.ts";
import { namedPortsOf } from "./ports.ts";
import { containsPrefix, parsePrefix } from "./cidr.ts";
import { type AnyPolicy, type NormPolicy, type NormRule, normalizePolicy } from "./normalize.ts";
import { matchesSelector } from "./selector.ts";
import { securityLabels, splitLabels } from "../identity/labels.ts";
import type { Namespace } from "../api/k8s.ts";

export interface Finding {
  field: string;
  message: string;
}

interface RawPort {
  protocol?: string;
  port?: number | string;
  endPort?: number;
  type?: number;
  code?: number;
}
interface RawSelector {
  matchExpressions?: Array<{ key?: string; operator?: string; values?: unknown[] }>;
}
interface RawRule {
  action?: string;
  ports?: RawPort[];
  cidrs?: Array<{ cidr: string; except?: string[] }>;
  endpoints?: Array<{ endpointSelector?: RawSelector; namespaceSelector?: RawSelector }>;
}

function celIntent(p: AnyPolicy, out: Finding[]): void {
  const checkPort = (field: string, port: RawPort, icmpAllowed: boolean) => {
    if (port.endPort !== undefined && (typeof port.port !== "number" || port.endPort < port.port))
      out.push({ field: `${field}.endPort`, message: "endPort requires a numeric port and must be >= port" });
    if (typeof port.port === "number" && (port.port < 1 || port.port > 65535))
      out.push({ field: `${field}.port`, message: "port must be in 1-65535" });
    if (typeof port.port === "string" && !/^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/.test(port.port))
      out.push({
        field: `${field}.port`,
        message: "a named port must be an IANA service name (lower-case, at most 15 characters)",
      });
    if (!icmpAllowed) return;
    const icmp = port.protocol === "ICMP" || port.protocol === "ICMPv6";
    if ((port.type !== undefined || port.code !== undefined) && !icmp)
      out.push({ field: `${field}.type`, message: "type and code require protocol ICMP or ICMPv6" });
    if (port.code !== undefined && port.type === undefined)
      out.push({ field: `${field}.code`, message: "code requires type" });
    if (icmp && port.port !== undefined)
      out.push({ field: `${field}.port`, message: "ICMP has no ports: use type and code" });
  };
  const checkCidr = (field: string, cidr: string, except: readonly string[] | undefined) => {
    const c = parsePrefix(cidr);
    if (!c) {
      out.push({ field: `${field}.cidr`, message: `${JSON.stringify(cidr)} is not an IPv4 or IPv6 prefix` });
      return;
    }
    for (const [i, e] of (except ?? []).entries()) {
      const x = parsePrefix(e);
      if (!x || !containsPrefix(c, x))
        out.push({
          field: `${field}.except[${i}]`,
          message: `${JSON.stringify(e)} is not a prefix inside ${cidr}`,
        });
    }
  };
  // The API server rejects In/NotIn without values and Exists/DoesNotExist with some (the CRDs' CEL
  // rule; NetworkPolicy's built-in validation).
  const checkSelector = (field: string, sel: RawSelector | undefined) => {
    for (const [k, e] of (sel?.matchExpressions ?? []).entries())
      if ((e.operator === "In" || e.operator === "NotIn") !== (e.values?.length ?? 0) > 0)
        out.push({
          field: `${field}.matchExpressions[${k}]`,
          message: "values must be non-empty for In and NotIn and absent for Exists and DoesNotExist",
        });
  };
  if (p.kind === "NetworkPolicy") {
    const spec = (p as NetworkPolicy).spec ?? {};
    checkSelector("spec.podSelector", spec.podSelector);
    for (const dir of ["ingress", "egress"] as const)
      for (const [i, r] of (spec[dir] ?? []).entries()) {
        for (const [j, port] of (r.ports ?? []).entries())
          checkPort(`spec.${dir}[${i}].ports[${j}]`, port, false);
        const peers = dir === "ingress" ? (r as { from?: unknown[] }).from : (r as { to?: unknown[] }).to;
        for (const [j, peer] of ((peers ?? []) as NetworkPolicy["spec"]["ingress"] & object[]).entries()) {
          const at = `spec.${dir}[${i}].${dir === "ingress" ? "from" : "to"}[${j}]`;
          const pe = peer as { ipBlock?: { cidr: string; except?: string[] } } & {
            podSelector?: RawSelector;
            namespaceSelector?: RawSelector;
          };
          if (pe.ipBlock) checkCidr(`${at}.ipBlock`, pe.ipBlock.cidr, pe.ipBlock.except);
          checkSelector(`${at}.podSelector`, pe.podSelector);
          checkSelector(`${at}.namespaceSelector`, pe.namespaceSelector);
        }
      }
    return;
  }
  const spec = p.spec as {
    tier?: string;
    endpointSelector?: RawSelector;
    namespaceSelector?: RawSelector;
    ingress?: RawRule[];
    egress?: RawRule[];
  };
  checkSelector("spec.endpointSelector", spec.endpointSelector);
  checkSelector("spec.namespaceSelector", spec.namespaceSelector);
  for (const dir of ["ingress", "egress"] as const)
    for (const [i, r] of (spec[dir] ?? []).entries()) {
      const f = `spec.${dir}[${i}]`;
      for (const [j, ep] of (r.endpoints ?? []).entries()) {
        checkSelector(`${f}.endpoints[${j}].endpointSelector`, ep.endpointSelector);
        checkSelector(`${f}.endpoints[${j}].namespaceSelector`, ep.namespaceSelector);
      }
      if (r.action === "Pass" && (p.kind !== "ClusterSecurityPolicy" || spec.tier !== "Admin"))
        out.push({
          field: `${f}.action`,
          message: "Pass is only valid in a ClusterSecurityPolicy of the Admin tier",
        });
      for (const [j, port] of (r.ports ?? []).entries()) checkPort(`${f}.ports[${j}]`, port, true);
      for (const [j, c] of (r.cidrs ?? []).entries()) checkCidr(`${f}.cidrs[${j}]`, c.cidr, c.except);
    }
}

function field(r: NormRule): string {
  return `spec.${r.direction}[${r.ref.index}]`;
}

function matchesNothing(r: NormRule): string | undefined {
  if (r.peers.any) return undefined;
  const live = r.peers.cidrs.filter((c) => !c.except.some((e) => containsPrefix(e, c.cidr)));
  if (
    r.peers.endpoints.length === 0 &&
    r.peers.entities.length === 0 &&
    live.length === 0 &&
    r.peers.cidrs.length > 0
  )
    return "every cidr of this rule is covered by its own except: the rule matches nothing";
  for (const ep of r.peers.endpoints)
    for (const sel of [ep.pod, ep.namespace?.kind === "selector" ? ep.namespace.selector : undefined]) {
      const exprs = sel?.matchExpressions ?? [];
      for (const a of exprs)
        for (const b of exprs)
          if (a.key === b.key && a.operator === "Exists" && b.operator === "DoesNotExist")
            return `selector requires ${a.key} to exist and not to exist: the rule matches nothing`;
    }
  return undefined;
}

function semantic(
  p: AnyPolicy,
  norm: NormPolicy,
  pods: readonly Pod[],
  namespaces: readonly Namespace[],
  out: Finding[],
): void {
  if (p.kind === "NetworkPolicy") {
    const spec = (p as NetworkPolicy).spec ?? {};
    const types = spec.policyTypes;
    if (types && !types.includes("Ingress") && (spec.ingress?.length ?? 0) > 0)
      out.push({
        field: "spec.ingress",
        message: "ingress rules are ignored: policyTypes does not list Ingress",
      });
    if (types && !types.includes("Egress") && (spec.egress?.length ?? 0) > 0)
      out.push({
        field: "spec.egress",
        message: "egress rules are ignored: policyTypes does not list Egress",
      });
  }
  for (const r of norm.rules) {
    const m = matchesNothing(r);
    if (m) out.push({ field: field(r), message: m });
  }
  // Shadowing: in the first-match tiers, a rule after one that matches every peer and port never decides.
  if (norm.tier !== "namespace")
    for (const dir of ["ingress", "egress"] as const) {
      const rules = norm.rules.filter((r) => r.direction === dir);
      const i = rules.findIndex((r) => r.peers.any && r.ports === undefined);
      for (const r of rules.slice(i + 1))
        if (i >= 0)
          out.push({
            field: field(r),
            message: `shadowed by ${field(rules[i])}, which matches every peer and port`,
          });
    }
  // Named ports: with pods in the inputs, each name must exist on some pod it would resolve against.
  if (pods.length === 0) return;
  const nsByName = new Map(namespaces.map((n) => [n.metadata.name ?? "", n]));
  const selected = pods.filter((pod) => {
    const l = splitLabels(securityLabels(pod, nsByName.get(pod.metadata.namespace ?? "default")));
    const ns = norm.subjectNamespace;
    if (ns?.kind === "name" && ns.name !== l.namespace) return false;
    if (ns?.kind === "selector" && !matchesSelector(ns.selector, l.namespaceLabels)) return false;
    return matchesSelector(norm.subjectPods, l.podLabels);
  });
  for (const r of norm.rules)
    for (const [j, port] of (r.ports ?? []).entries()) {
      if (typeof port.port !== "string") continue;
      const candidates = r.direction === "ingress" ? selected : pods;
      if (!candidates.some((pod) => namedPortsOf(pod).has(port.port as string)))
        out.push({
          field: `${field(r)}.ports[${j}].port`,
          message: `no ${r.direction === "ingress" ? "selected " : ""}pod has a port named ${JSON.stringify(port.port)}`,
        });
    }
}

export function validatePolicy(
  p: AnyPolicy,
  context: { pods: readonly Pod[]; namespaces: readonly Namespace[] },
): Finding[] {
  const out: Finding[] = [];
  celIntent(p, out);
  const norm = normalizePolicy(p);
  for (const e of norm.errors) if (!out.some((o) => o.field.startsWith(e.field))) out.push(e);
  semantic(p, norm, context.pods, context.namespaces, out);
  return out;
}
