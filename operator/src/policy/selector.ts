// Kubernetes label selector semantics: all matchLabels and all matchExpressions must hold; an
// empty selector matches everything.
import type { LabelSelector } from "../api/k8s.ts";

export function matchesSelector(selector: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const req of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, req.key);
    const values = req.values ?? [];
    switch (req.operator) {
      case "In":
        if (!has || !values.includes(labels[req.key])) return false;
        break;
      case "NotIn":
        if (has && values.includes(labels[req.key])) return false;
        break;
      case "Exists":
        if (!has) return false;
        break;
      case "DoesNotExist":
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

export function isEmptySelector(selector: LabelSelector): boolean {
  return (
    Object.keys(selector.matchLabels ?? {}).length === 0 && (selector.matchExpressions ?? []).length === 0
  );
}

// Equality constraints that any match must satisfy: used to narrow candidates through an index.
export function requiredLabels(selector: LabelSelector): Array<[string, string]> {
  const out = Object.entries(selector.matchLabels ?? {});
  for (const req of selector.matchExpressions ?? []) {
    if (req.operator === "In" && req.values?.length === 1) out.push([req.key, req.values[0]]);
  }
  return out;
}
