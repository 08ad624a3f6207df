// What the API server would answer to `kubectl apply` of one object, without an API server: which kind
// it is (kubectl's REST mapping), then decoding, ObjectMeta, schema, CEL and NetworkPolicy validation,
// each error with the field the API server names. The policy kinds are checked in full; Sluice's other
// CRDs by their schema and CEL rules; other Kubernetes objects found in manifest folders (Pods,
// Namespaces, Deployments…) are recognised and passed over, but a kind or apiVersion that looks like a
// policy and is not one is an error, so a typo does not turn a policy into something silently ignored.
import { celFindings, type Finding } from "./crd-rules.ts";
import { dns1123Label, dns1123Subdomain, qualifiedName } from "./k8s-rules.ts";
import { labelMapFindings, networkPolicySpecFindings } from "./networkpolicy.ts";
import { checkSchema, isCrdKind, schemaOf } from "./schemas.ts";

export type { Finding } from "./crd-rules.ts";

/**
 * The policy kinds Sluice enforces, with the apiVersion each is served at: SIG Network's policy API at
 * the versions of crds/upstream/ (ClusterNetworkPolicy v1alpha2; AdminNetworkPolicy and
 * BaselineAdminNetworkPolicy v1alpha1, for clusters still on it).
 */
export const POLICY_KINDS: Readonly<Record<string, string>> = {
  NetworkPolicy: "networking.k8s.io/v1",
  SecurityPolicy: "sluice.dev/v1alpha1",
  ClusterSecurityPolicy: "sluice.dev/v1alpha1",
  ClusterNetworkPolicy: "policy.networking.k8s.io/v1alpha2",
  AdminNetworkPolicy: "policy.networking.k8s.io/v1alpha1",
  BaselineAdminNetworkPolicy: "policy.networking.k8s.io/v1alpha1",
};

const CLUSTER_SCOPED = new Set([
  "ClusterSecurityPolicy",
  "SecurityIdentity",
  "SecurityNodeStatus",
  "ClusterNetworkPolicy",
  "AdminNetworkPolicy",
  "BaselineAdminNetworkPolicy",
]);

/**
 * Group versions whose every kind is listed (the API server's discovery, Kubernetes 1.37; a test
 * compares these with a real API server): another kind in one of them cannot be applied.
 */
export const KNOWN_GROUP_VERSIONS: Readonly<Record<string, readonly string[]>> = {
  "sluice.dev/v1alpha1": [
    "SecurityPolicy",
    "ClusterSecurityPolicy",
    "SecurityIdentity",
    "SecurityNodeStatus",
  ],
  "networking.k8s.io/v1": ["NetworkPolicy", "Ingress", "IngressClass", "IPAddress", "ServiceCIDR"],
  // With crds/upstream/ installed.
  "policy.networking.k8s.io/v1alpha2": ["ClusterNetworkPolicy"],
  "policy.networking.k8s.io/v1alpha1": ["AdminNetworkPolicy", "BaselineAdminNetworkPolicy"],
  v1: [
    "Binding",
    "ComponentStatus",
    "ConfigMap",
    "Endpoints",
    "Event",
    "LimitRange",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Pod",
    "PodTemplate",
    "ReplicationController",
    "ResourceQuota",
    "Secret",
    "Service",
    "ServiceAccount",
    // Not served, but what `kubectl get -o yaml` prints around several objects.
    "List",
  ],
};

/**
 * Groups whose served versions are all in KNOWN_GROUP_VERSIONS: another version is a mistake
 * (extensions, where NetworkPolicy once was, serves nothing since Kubernetes 1.22).
 */
const KNOWN_GROUPS = new Set([
  "sluice.dev",
  "networking.k8s.io",
  "policy.networking.k8s.io",
  "",
  "extensions",
]);

export type Role = "policy" | "sluice" | "other";

export interface Admission {
  /** policy: a policy kind; sluice: another Sluice CRD; other: not a policy, not checked further. */
  role: Role;
  /** What the API server would reject, with its fields; empty when it would accept the object. */
  errors: Finding[];
  /** The object as the API server reads it (nulls as zero values), when it has a schema. */
  decoded?: unknown;
  /** For role other: why it is passed over. */
  note?: string;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === "object" && !Array.isArray(v);

function groupOf(apiVersion: string): string {
  return apiVersion.includes("/") ? apiVersion.slice(0, apiVersion.indexOf("/")) : "";
}

// Levenshtein distance, case-insensitive: "NetworkPolcy" and "networkpolicy" are near NetworkPolicy.
function distance(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  let prev = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const cur = [i];
    for (let j = 1; j <= y.length; j++)
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] === y[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[y.length];
}

// A typo, a plural, a different case: near enough to a policy kind that it is not another kind.
function nearPolicyKind(kind: string): string | undefined {
  const lower = kind.toLowerCase();
  return Object.keys(POLICY_KINDS).find(
    (k) => k !== kind && (distance(kind, k) <= 2 || lower.startsWith(k.toLowerCase().slice(0, -1))),
  );
}

function noKind(kind: string, apiVersion: string, hint: string | undefined): string {
  return `no Sluice or Kubernetes policy kind ${kind} in ${apiVersion}; is the apiVersion right?${hint ? ` (${hint})` : ""}`;
}

/** kubectl's REST mapping, reduced to what Sluice knows: an error (with its field), or the object's role. */
function mapKind(o: Obj): { role: Role; error?: Finding; note?: string } {
  const { apiVersion, kind } = o;
  if (typeof apiVersion !== "string" || apiVersion === "")
    return {
      role: "other",
      error: { field: "apiVersion", message: "Required value: every object needs an apiVersion" },
    };
  if (typeof kind !== "string" || kind === "")
    return { role: "other", error: { field: "kind", message: "Required value: every object needs a kind" } };
  const expected = POLICY_KINDS[kind];
  if (expected !== undefined)
    return expected === apiVersion
      ? { role: "policy" }
      : {
          role: "other",
          error: { field: "apiVersion", message: noKind(kind, apiVersion, `${kind} is ${expected}`) },
        };
  const near = nearPolicyKind(kind);
  const hint = near ? `did you mean ${near} (${POLICY_KINDS[near]})?` : undefined;
  const listed = KNOWN_GROUP_VERSIONS[apiVersion];
  if (listed) {
    if (listed.includes(kind))
      return isCrdKind(kind) ? { role: "sluice" } : { role: "other", note: `${kind} is not a policy` };
    return { role: "other", error: { field: "kind", message: noKind(kind, apiVersion, hint) } };
  }
  if (KNOWN_GROUPS.has(groupOf(apiVersion)))
    return {
      role: "other",
      error: {
        field: "apiVersion",
        message: noKind(kind, apiVersion, hint ?? `${apiVersion} is not served`),
      },
    };
  if (near) return { role: "other", error: { field: "kind", message: noKind(kind, apiVersion, hint) } };
  return { role: "other", note: `${kind} (${apiVersion}) is not a policy` };
}

const MAX_ANNOTATIONS_BYTES = 256 * 1024;

/** ValidateObjectMeta on a create, for the kinds checked here. */
function metadataFindings(kind: string, meta: unknown): Finding[] {
  const m = isObj(meta) ? meta : {};
  const out: Finding[] = [];
  const name = typeof m.name === "string" ? m.name : "";
  const generateName = typeof m.generateName === "string" ? m.generateName : "";
  // kubectl apply looks the object up by name before creating it: a generateName alone is not enough.
  if (name === "")
    out.push({ field: "metadata.name", message: "Required value: kubectl apply needs a name" });
  else
    for (const msg of dns1123Subdomain(name))
      out.push({ field: "metadata.name", message: `${JSON.stringify(name)}: ${msg}` });
  // A prefix may end in "-": the API server appends a suffix.
  if (generateName !== "")
    for (const msg of dns1123Subdomain(generateName.replace(/-$/, "a")))
      out.push({ field: "metadata.generateName", message: `${JSON.stringify(generateName)}: ${msg}` });
  // A cluster-scoped object's namespace is dropped by kubectl and the API server alike.
  if (!CLUSTER_SCOPED.has(kind) && typeof m.namespace === "string" && m.namespace !== "")
    for (const msg of dns1123Label(m.namespace))
      out.push({ field: "metadata.namespace", message: `${JSON.stringify(m.namespace)}: ${msg}` });
  out.push(...labelMapFindings(m.labels, "metadata.labels"));
  let size = 0;
  for (const [k, v] of Object.entries(isObj(m.annotations) ? m.annotations : {})) {
    size += k.length + String(v).length;
    for (const msg of qualifiedName(k.toLowerCase()))
      out.push({ field: "metadata.annotations", message: `${JSON.stringify(k)}: ${msg}` });
  }
  if (size > MAX_ANNOTATIONS_BYTES)
    out.push({
      field: "metadata.annotations",
      message: `Too long: may not be more than ${MAX_ANNOTATIONS_BYTES} bytes`,
    });
  return out;
}

/** What the API server would say to a create (kubectl apply) of `object`. */
export function admit(object: unknown): Admission {
  if (!isObj(object))
    return { role: "other", errors: [{ field: "(root)", message: "not a Kubernetes object (a mapping)" }] };
  const mapped = mapKind(object);
  if (mapped.error) return { role: mapped.role, errors: [mapped.error] };
  if (mapped.role === "other") return { role: "other", errors: [], note: mapped.note };
  const kind = object.kind as string;
  const { decoded, decodeErrors, schemaErrors, structural } = checkSchema(kind, object);
  // A decoding error (unknown field, wrong JSON type) stops the API server before validation.
  if (decodeErrors.length > 0) return { role: mapped.role, errors: decodeErrors, decoded };
  const d = decoded as Obj;
  const errors = [...metadataFindings(kind, d.metadata), ...schemaErrors];
  if (kind === "NetworkPolicy") errors.push(...networkPolicySpecFindings(d.spec));
  // CEL rules run beside value errors (a minimum, an enum) but not on values of the wrong type.
  else if (!structural) {
    const schema = schemaOf(kind);
    if (schema) errors.push(...celFindings(schema, d));
  }
  return { role: mapped.role, errors, decoded };
}
