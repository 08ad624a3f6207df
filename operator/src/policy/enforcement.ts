// Per-policy audit mode (issue 13 §4): whether a policy object is enforced or only audited. Sluice's
// own kinds say it in spec.enforcement (the CRDs' enum, default Enforce); NetworkPolicy and SIG
// Network's kinds, whose schemas are not Sluice's, in the annotation ENFORCEMENT_ANNOTATION. Any other
// value is an error naming the field; the policy is then enforced as written, the way every invalid
// part of a policy fails closed (normalize.ts): a typo must not quietly turn a policy off.

export const ENFORCEMENT_ANNOTATION = "sluice.dev/enforcement";
export const ENFORCEMENT_MODES = ["Enforce", "Audit"] as const;
export type Enforcement = (typeof ENFORCEMENT_MODES)[number];

interface PolicyObject {
  kind: string;
  metadata: { annotations?: Record<string, string> };
  spec?: unknown;
}

/** True when the object is in audit mode; a bad value adds an error and counts as Enforce. */
export function auditMode(p: PolicyObject, errors: Array<{ field: string; message: string }>): boolean {
  const own = p.kind === "SecurityPolicy" || p.kind === "ClusterSecurityPolicy";
  const value = own
    ? (p.spec as { enforcement?: unknown } | undefined)?.enforcement
    : p.metadata.annotations?.[ENFORCEMENT_ANNOTATION];
  if (value === undefined || value === "Enforce") return false;
  if (value === "Audit") return true;
  errors.push({
    field: own ? "spec.enforcement" : `metadata.annotations[${ENFORCEMENT_ANNOTATION}]`,
    message: `${JSON.stringify(value)} is not Enforce or Audit: the policy is enforced`,
  });
  return false;
}

/** The mode as the API spells it. */
export function enforcementName(audit: boolean): Enforcement {
  return audit ? "Audit" : "Enforce";
}
