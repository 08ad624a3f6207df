// Sorts parsed manifests into the inputs the compiler takes. Unknown kinds are returned, not
// dropped silently, so the CLI can say what it ignored.
import type { Namespace, NetworkPolicy, Node, Pod } from "./k8s.ts";
import type {
  AdminNetworkPolicy,
  BaselineAdminNetworkPolicy,
  ClusterNetworkPolicy,
  ClusterSecurityPolicy,
  SecurityIdentity,
  SecurityPolicy,
} from "./types.generated.ts";

export interface ClusterObjects {
  namespaces: Namespace[];
  pods: Pod[];
  nodes: Node[];
  networkPolicies: NetworkPolicy[];
  securityPolicies: SecurityPolicy[];
  clusterSecurityPolicies: ClusterSecurityPolicy[];
  // SIG Network's policy API, policy.networking.k8s.io v1alpha2 and v1alpha1. Optional so that
  // objects built before these kinds existed still type-check; classifyObjects always fills them.
  clusterNetworkPolicies?: ClusterNetworkPolicy[];
  adminNetworkPolicies?: AdminNetworkPolicy[];
  baselineAdminNetworkPolicies?: BaselineAdminNetworkPolicy[];
  securityIdentities: SecurityIdentity[];
  other: unknown[];
}

export function emptyObjects(): ClusterObjects {
  return {
    namespaces: [],
    pods: [],
    nodes: [],
    networkPolicies: [],
    securityPolicies: [],
    clusterSecurityPolicies: [],
    clusterNetworkPolicies: [],
    adminNetworkPolicies: [],
    baselineAdminNetworkPolicies: [],
    securityIdentities: [],
    other: [],
  };
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

// Flattens List kinds (as `kubectl get -o yaml` prints them) and sorts by kind.
export function classifyObjects(
  objects: Iterable<unknown>,
  into: ClusterObjects = emptyObjects(),
): ClusterObjects {
  for (const o of objects) {
    if (!isObject(o) || !isObject(o.metadata ?? {})) {
      into.other.push(o);
      continue;
    }
    if (Array.isArray(o.items) && typeof o.kind === "string" && o.kind.endsWith("List")) {
      classifyObjects(o.items, into);
      continue;
    }
    // A copy only to give an object without metadata an empty one: the agent classifies its caches'
    // objects (50,000 pods at issue 14's scale) on every full pass, and the compiler keeps what it gets,
    // so a copy of each held a second object per pod beside the cache's.
    const obj = o.metadata == null ? { ...o, metadata: {} } : o;
    switch (o.kind) {
      case "Namespace":
        into.namespaces.push(obj as unknown as Namespace);
        break;
      case "Pod":
        into.pods.push(obj as unknown as Pod);
        break;
      case "Node":
        into.nodes.push(obj as unknown as Node);
        break;
      case "NetworkPolicy":
        into.networkPolicies.push(obj as unknown as NetworkPolicy);
        break;
      case "SecurityPolicy":
        into.securityPolicies.push(obj as unknown as SecurityPolicy);
        break;
      case "ClusterSecurityPolicy":
        into.clusterSecurityPolicies.push(obj as unknown as ClusterSecurityPolicy);
        break;
      case "ClusterNetworkPolicy":
        into.clusterNetworkPolicies ??= [];
        into.clusterNetworkPolicies.push(obj as unknown as ClusterNetworkPolicy);
        break;
      case "AdminNetworkPolicy":
        into.adminNetworkPolicies ??= [];
        into.adminNetworkPolicies.push(obj as unknown as AdminNetworkPolicy);
        break;
      case "BaselineAdminNetworkPolicy":
        into.baselineAdminNetworkPolicies ??= [];
        into.baselineAdminNetworkPolicies.push(obj as unknown as BaselineAdminNetworkPolicy);
        break;
      case "SecurityIdentity":
        into.securityIdentities.push(obj as unknown as SecurityIdentity);
        break;
      default:
        into.other.push(o);
    }
  }
  return into;
}
