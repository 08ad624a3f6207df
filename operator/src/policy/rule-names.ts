// A policy rule as people name it: `Kind/namespace/name direction[index] "rule name"`. The compiler
// knows a rule by its RuleRef (normalize.ts; its hash is the rule id in map entries and flow events);
// the rule's own name, which only some kinds have, stays in the object. `sluice explain` names rules
// with this, and so can anything else that turns a rule id back into words.
import type { Direction } from "./mapstate.ts";
import { type Action, policyKey, type PolicyKind, type RuleRef } from "./normalize.ts";

export interface RuleName {
  // policyKey(): "Kind/namespace/name", "Kind/name" for the cluster-scoped kinds.
  policy: string;
  kind: PolicyKind;
  namespace?: string;
  name: string;
  direction: Direction;
  index: number;
  ruleName?: string;
  action: Action;
  ruleId: number;
}

/**
 * The rule's `name` in the policy object: every kind keeps its rules in spec.ingress / spec.egress in
 * the order RuleRef.index counts, and those that name rules (SecurityPolicy, the cluster kinds) use
 * `name`. undefined when the kind or the rule has none.
 */
export function ruleNameInSpec(spec: unknown, ref: Pick<RuleRef, "direction" | "index">): string | undefined {
  const rules = (spec as Partial<Record<Direction, unknown>> | undefined)?.[ref.direction];
  const rule: unknown = Array.isArray(rules) ? rules[ref.index] : undefined;
  const name = typeof rule === "object" && rule !== null ? (rule as { name?: unknown }).name : undefined;
  return typeof name === "string" && name !== "" ? name : undefined;
}

export function ruleNameOf(
  ref: RuleRef,
  action: Action,
  ruleId: number,
  ruleName: string | undefined,
): RuleName {
  return {
    policy: policyKey(ref.kind, ref.namespace, ref.name),
    kind: ref.kind,
    ...(ref.namespace === undefined ? {} : { namespace: ref.namespace }),
    name: ref.name,
    direction: ref.direction,
    index: ref.index,
    ...(ruleName ? { ruleName } : {}),
    action,
    ruleId,
  };
}

/** `ingress[0] "name"`: a rule within its policy. */
export function ruleLabel(r: Pick<RuleName, "direction" | "index" | "ruleName">): string {
  return `${r.direction}[${r.index}]${r.ruleName ? ` ${JSON.stringify(r.ruleName)}` : ""}`;
}

/** `SecurityPolicy/shop/db ingress[0] "name"`: a rule anywhere. */
export function formatRule(r: Pick<RuleName, "policy" | "direction" | "index" | "ruleName">): string {
  return `${r.policy} ${ruleLabel(r)}`;
}
