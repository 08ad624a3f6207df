// The resources Sluice reads and writes, with their REST paths. Plain descriptors instead of
// discovery: the set is fixed and a wrong plural should fail at the first list, loudly.

export interface Resource {
  /** "" for the core group. */
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
}

export const SLUICE_GROUP = "sluice.dev";
export const SLUICE_VERSION = "v1alpha1";

function sluice(plural: string, kind: string, namespaced: boolean): Resource {
  return { group: SLUICE_GROUP, version: SLUICE_VERSION, plural, kind, namespaced };
}

export const PODS: Resource = { group: "", version: "v1", plural: "pods", kind: "Pod", namespaced: true };
export const NAMESPACES: Resource = {
  group: "",
  version: "v1",
  plural: "namespaces",
  kind: "Namespace",
  namespaced: false,
};
export const NODES: Resource = { group: "", version: "v1", plural: "nodes", kind: "Node", namespaced: false };
export const NETWORK_POLICIES: Resource = {
  group: "networking.k8s.io",
  version: "v1",
  plural: "networkpolicies",
  kind: "NetworkPolicy",
  namespaced: true,
};
export const SECURITY_POLICIES = sluice("securitypolicies", "SecurityPolicy", true);
export const CLUSTER_SECURITY_POLICIES = sluice("clustersecuritypolicies", "ClusterSecurityPolicy", false);
export const SECURITY_IDENTITIES = sluice("securityidentities", "SecurityIdentity", false);
export const SECURITY_NODE_STATUSES = sluice("securitynodestatuses", "SecurityNodeStatus", false);

/** SIG Network's policy API (kubernetes-sigs/network-policy-api). Cluster-scoped; their CRDs are in
 *  crds/upstream/, installed by the cluster's owner, so a watch on a missing one must be tolerated. */
export const UPSTREAM_POLICY_GROUP = "policy.networking.k8s.io";
export const CLUSTER_NETWORK_POLICIES: Resource = {
  group: UPSTREAM_POLICY_GROUP,
  version: "v1alpha2",
  plural: "clusternetworkpolicies",
  kind: "ClusterNetworkPolicy",
  namespaced: false,
};
export const ADMIN_NETWORK_POLICIES: Resource = {
  group: UPSTREAM_POLICY_GROUP,
  version: "v1alpha1",
  plural: "adminnetworkpolicies",
  kind: "AdminNetworkPolicy",
  namespaced: false,
};
export const BASELINE_ADMIN_NETWORK_POLICIES: Resource = {
  group: UPSTREAM_POLICY_GROUP,
  version: "v1alpha1",
  plural: "baselineadminnetworkpolicies",
  kind: "BaselineAdminNetworkPolicy",
  namespaced: false,
};

export function apiVersionOf(r: Resource): string {
  return r.group ? `${r.group}/${r.version}` : r.version;
}

/** Collection path; with a namespace only for namespaced resources (without one: all namespaces). */
export function collectionPath(r: Resource, namespace?: string): string {
  const base = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  if (r.namespaced && namespace) return `${base}/namespaces/${encodeURIComponent(namespace)}/${r.plural}`;
  return `${base}/${r.plural}`;
}

export function objectPath(r: Resource, name: string, namespace?: string): string {
  return `${collectionPath(r, namespace)}/${encodeURIComponent(name)}`;
}
