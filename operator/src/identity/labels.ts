// The security-relevant label set of a pod: what its identity is made of. The operator allocates
// identities through the API server with this function and the CLI/lab allocate statically with
// it too, so every process agrees on which pods share an identity.
import type { Namespace, Pod } from "../api/k8s.ts";

// The pod's namespace name. Pod labels under this prefix are dropped so that a pod cannot claim
// another namespace's identity.
export const NAMESPACE_LABEL = "io.kubernetes.pod.namespace";
// Namespace labels are copied under this prefix: `<prefix><key>`.
export const NAMESPACE_LABELS_PREFIX = "io.kubernetes.pod.namespace.labels.";

// Labels that change per pod or per rollout and would split one workload into many identities.
export const DEFAULT_EXCLUDED_LABELS: readonly string[] = [
  "pod-template-hash",
  "controller-revision-hash",
  "pod-template-generation",
  "statefulset.kubernetes.io/pod-name",
  "apps.kubernetes.io/pod-index",
  "batch.kubernetes.io/controller-uid",
  "batch.kubernetes.io/job-name",
  "controller-uid",
  "job-name",
];
// Built once: securityLabels runs for every pod of every universe.
const DEFAULT_EXCLUDED: ReadonlySet<string> = new Set(DEFAULT_EXCLUDED_LABELS);

export interface LabelOptions {
  // Exact label keys to drop (pod and namespace labels).
  excluded?: readonly string[];
}

export type LabelSet = Readonly<Record<string, string>>;

export function securityLabels(
  pod: Pick<Pod, "metadata">,
  namespace: Pick<Namespace, "metadata"> | undefined,
  options: LabelOptions = {},
): LabelSet {
  const excluded = options.excluded ? new Set(options.excluded) : DEFAULT_EXCLUDED;
  const nsName = pod.metadata.namespace ?? "default";
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(pod.metadata.labels ?? {})) {
    if (excluded.has(k) || k.startsWith(NAMESPACE_LABEL)) continue;
    out[k] = v;
  }
  // The API server sets kubernetes.io/metadata.name on every namespace; manifests may lack it.
  const nsLabels = { ...(namespace?.metadata.labels ?? {}), "kubernetes.io/metadata.name": nsName };
  for (const [k, v] of Object.entries(nsLabels)) {
    if (excluded.has(k)) continue;
    out[NAMESPACE_LABELS_PREFIX + k] = v;
  }
  out[NAMESPACE_LABEL] = nsName;
  return out;
}

// Canonical text of a label set: equal sets give equal keys. Used as the identity's allocation key.
export function labelSetKey(labels: LabelSet): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(",");
}

export interface SplitLabels {
  namespace: string;
  podLabels: Record<string, string>;
  namespaceLabels: Record<string, string>;
}

// The inverse of securityLabels: what policy selectors match against.
export function splitLabels(labels: LabelSet): SplitLabels {
  const podLabels: Record<string, string> = {};
  const namespaceLabels: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels)) {
    if (k === NAMESPACE_LABEL) continue;
    if (k.startsWith(NAMESPACE_LABELS_PREFIX)) namespaceLabels[k.slice(NAMESPACE_LABELS_PREFIX.length)] = v;
    else podLabels[k] = v;
  }
  return { namespace: labels[NAMESPACE_LABEL] ?? "", podLabels, namespaceLabels };
}
