// Semantic checks of a policy the API server accepts (api/admission.ts says what it would reject): rules
// that can never match, rules an earlier one shadows, named ports no selected pod has or that can name
// no port at all. The operator reports these as Accepted=False; `sluice validate` as errors too.
import type { NetworkPolicy, Pod } from "../api/k8s.ts";
import { namedPortsOf } from "./ports.ts";
import { containsPrefix } from "./cidr.ts";
import { portName } from "../api/k8s-rules.ts";
import { type AnyPolicy, type NormPolicy, type NormRule, normalizePolicy } from "./normalize.ts";
import { matchesSelector } from "./selector.ts";
import { securityLabels, splitLabels } from "../identity/labels.ts";
import type { Namespace } from "../api/k8s.ts";

export interface Finding {
  field: string;
  message: string;
}

// A named port of a Sluice policy must be an IANA service name to ever match a container port. The
// CRDs only bound its length, so the API server stores such a policy; the operator marks it
// Accepted=False. (NetworkPolicy's own validation already rejects it: api/networkpolicy.ts.)
function namedPorts(p: AnyPolicy, out: Finding[]): void {
  if (p.kind === "NetworkPolicy") return;
  const spec = p.spec as { ingress?: RawRule[]; egress?: RawRule[] };
  for (const dir of ["ingress", "egress"] as const)
    for (const [i, r] of (spec[dir] ?? []).entries())
      for (const [j, port] of (r.ports ?? []).entries())
        if (typeof port.port === "string" && portName(port.port).length > 0)
          out.push({
            field: `spec.${dir}[${i}].ports[${j}].port`,
            message: "a named port must be an IANA service name (lower-case, at most 15 characters)",
          });
}

interface RawRule {
  ports?: Array<{ port?: number | string }>;
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
    r.peers.nodes.length === 0 &&
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
  // Without a named port nothing below applies: skip the pass over every pod (the operator validates
  // each policy against the whole cluster's pods; 50,000 of them at issue 14's scale).
  const named = norm.rules.some((r) => r.ports?.some((x) => typeof x.port === "string"));
  if (pods.length === 0 || !named) return;
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
          field: port.field ?? `${field(r)}.ports[${j}].port`,
          message: `no ${r.direction === "ingress" ? "selected " : ""}pod has a port named ${JSON.stringify(port.port)}`,
        });
    }
}

export function validatePolicy(
  p: AnyPolicy,
  context: { pods: readonly Pod[]; namespaces: readonly Namespace[] },
): Finding[] {
  const out: Finding[] = [];
  namedPorts(p, out);
  const norm = normalizePolicy(p);
  for (const e of norm.errors) if (!out.some((o) => o.field.startsWith(e.field))) out.push(e);
  semantic(p, norm, context.pods, context.namespaces, out);
  return out;
}
