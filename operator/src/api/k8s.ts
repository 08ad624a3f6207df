// The standard Kubernetes objects Sluice reads, reduced to the fields it uses. Input is untrusted
// YAML: every field is optional here and checked by the schemas in api/validate.ts.

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  generation?: number;
  uid?: string;
}

export interface LabelSelectorRequirement {
  key: string;
  operator: "In" | "NotIn" | "Exists" | "DoesNotExist";
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

export interface Namespace {
  apiVersion?: string;
  kind: "Namespace";
  metadata: ObjectMeta;
}

export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol?: "TCP" | "UDP" | "SCTP";
}

export interface Pod {
  apiVersion?: string;
  kind: "Pod";
  metadata: ObjectMeta;
  spec?: {
    nodeName?: string;
    hostNetwork?: boolean;
    containers?: Array<{ name?: string; ports?: ContainerPort[] }>;
    initContainers?: Array<{ name?: string; ports?: ContainerPort[] }>;
  };
  status?: { podIP?: string; podIPs?: Array<{ ip: string }>; phase?: string };
}

// A pod's key everywhere (endpoints, matrix rows, identity use counts): "namespace/name", the
// namespace "default" when the object leaves it out (as the API server would place it). Joined, one
// flat string: the operator keys every pod of the cluster by it, and a template literal's cons string
// costs more than the key (policy/cidr.ts formatPrefix).
export function podKey(p: { metadata: Pick<ObjectMeta, "namespace" | "name"> }): string {
  return [p.metadata.namespace ?? "default", p.metadata.name ?? ""].join("/");
}

export interface NodeAddress {
  type: string;
  address: string;
}

export interface Node {
  apiVersion?: string;
  kind: "Node";
  metadata: ObjectMeta;
  status?: { addresses?: NodeAddress[] };
}

export interface NetworkPolicyPort {
  protocol?: "TCP" | "UDP" | "SCTP";
  port?: number | string;
  endPort?: number;
}

export interface NetworkPolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: { cidr: string; except?: string[] };
}

export interface NetworkPolicyIngressRule {
  from?: NetworkPolicyPeer[];
  ports?: NetworkPolicyPort[];
}

export interface NetworkPolicyEgressRule {
  to?: NetworkPolicyPeer[];
  ports?: NetworkPolicyPort[];
}

export interface NetworkPolicy {
  apiVersion?: string;
  kind: "NetworkPolicy";
  metadata: ObjectMeta;
  spec: {
    podSelector: LabelSelector;
    policyTypes?: Array<"Ingress" | "Egress">;
    ingress?: NetworkPolicyIngressRule[];
    egress?: NetworkPolicyEgressRule[];
  };
}
