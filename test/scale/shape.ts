// The scale rig's cluster shape and the objects it is made of, generated deterministically from
// indexes: Nodes, Namespaces (labelled so cluster-wide selectors pick some), Pods with addresses
// from one /12 and a fixed number of distinct security label sets, and policies of every kind
// Sluice enforces. Full scale is issue 14's: 1,000 nodes, 50,000 pods in 5,000 namespaces with
// 10,000 label sets, 1,000 policies; `scaled(f)` keeps the proportions.

export interface ScaleShape {
  /** Node objects, the real agent's included; the others are simulated. */
  nodes: number;
  pods: number;
  namespaces: number;
  /** Distinct security label sets (namespace included) among the pods; a multiple of namespaces. */
  labelSets: number;
  policies: number;
}

export const FULL_SCALE: ScaleShape = {
  nodes: 1000,
  pods: 50_000,
  namespaces: 5000,
  labelSets: 10_000,
  policies: 1000,
};

export function scaled(f: number): ScaleShape {
  const r = (n: number, min: number) => Math.max(min, Math.round(n * f));
  const namespaces = r(FULL_SCALE.namespaces, 2);
  return {
    nodes: r(FULL_SCALE.nodes, 3),
    pods: r(FULL_SCALE.pods, 20),
    namespaces,
    labelSets: namespaces * (FULL_SCALE.labelSets / FULL_SCALE.namespaces),
    policies: r(FULL_SCALE.policies, 10),
  };
}

export const SIM_NODE_PREFIX = "scale-sim-";
const TEAMS = 50;

export function simNodeName(i: number): string {
  return `${SIM_NODE_PREFIX}${String(i).padStart(4, "0")}`;
}

export function namespaceName(i: number): string {
  return `scale-${String(i).padStart(4, "0")}`;
}

function teamOf(nsIndex: number): string {
  return `t${nsIndex % TEAMS}`;
}

export function namespaceObject(i: number) {
  return {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name: namespaceName(i), labels: { team: teamOf(i), "scale.sluice.dev/rig": "true" } },
  };
}

export function nodeObject(name: string) {
  return { apiVersion: "v1", kind: "Node", metadata: { name, labels: { "scale.sluice.dev/rig": "true" } } };
}

/** Pod i's IPv4 address: 10.192.0.0/12 from the bottom, away from the lab's own 10.244/16 pods. */
export function podIp(i: number): string {
  const n = (10 << 24) + (192 << 16) + i + 1;
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

export interface PodPlace {
  index: number;
  namespace: string;
  name: string;
  labels: Record<string, string>;
  node: string;
  ip: string;
}

const setsPerNamespace = (s: ScaleShape) => Math.max(1, Math.round(s.labelSets / s.namespaces));

/** Pod labels of label set `k` of a namespace (the namespace completes the security label set). */
export function podLabels(k: number, variant = 0): Record<string, string> {
  return variant === 0
    ? { app: `app-${k}`, tier: k % 2 ? "api" : "web" }
    : { app: `app-${k}`, churn: `v${variant}` };
}

/** Where pod i lives: namespace round-robin, label set within the namespace, node round-robin. */
export function podPlace(s: ScaleShape, i: number, simNodes: number): PodPlace {
  const nsIndex = i % s.namespaces;
  const within = Math.floor(i / s.namespaces);
  const k = within % setsPerNamespace(s);
  return {
    index: i,
    namespace: namespaceName(nsIndex),
    name: `pod-${i}`,
    labels: podLabels(k),
    node: simNodeName(1 + (i % simNodes)),
    ip: podIp(i),
  };
}

export function podObject(p: Omit<PodPlace, "index" | "ip">) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: p.name, namespace: p.namespace, labels: p.labels },
    spec: {
      nodeName: p.node,
      containers: [
        { name: "c", image: "registry.invalid/pause:1", ports: [{ name: "http", containerPort: 8080 }] },
      ],
    },
  };
}

export function podStatus(ip: string) {
  return { status: { phase: "Running", podIP: ip, podIPs: [{ ip }] } };
}

export interface PolicyObject {
  apiVersion: string;
  kind: string;
  plural: string;
  metadata: { name: string; namespace?: string };
  spec: Record<string, unknown>;
}

const sel = (labels: Record<string, string>) => ({ matchLabels: labels });

/**
 * Policy i of n: 50 % NetworkPolicy, 30 % SecurityPolicy (both in namespace i), 15 %
 * ClusterSecurityPolicy (one team's namespaces), the rest SIG Network's kinds when `upstream`
 * (ClusterNetworkPolicy, AdminNetworkPolicy, and the one BaselineAdminNetworkPolicy), otherwise more
 * ClusterSecurityPolicies.
 */
export function policyObject(s: ScaleShape, i: number, upstream: boolean): PolicyObject {
  const n = s.policies;
  const ns = namespaceName(i % s.namespaces);
  const team = teamOf(i);
  const port = 8000 + (i % 1000);
  if (i < n * 0.5)
    return {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      plural: "networkpolicies",
      metadata: { name: `np-${i}`, namespace: ns },
      spec: {
        podSelector: sel({ app: "app-0" }),
        policyTypes: ["Ingress"],
        ingress: [{ from: [{ podSelector: sel({ app: "app-1" }) }], ports: [{ protocol: "TCP", port }] }],
      },
    };
  if (i < n * 0.8)
    return {
      apiVersion: "sluice.dev/v1alpha1",
      kind: "SecurityPolicy",
      plural: "securitypolicies",
      metadata: { name: `sp-${i}`, namespace: ns },
      spec: {
        endpointSelector: sel({ tier: "api" }),
        ingress: [
          {
            endpoints: [{ endpointSelector: sel({ tier: "web" }) }],
            ports: [{ port, protocol: "TCP" }],
          },
        ],
      },
    };
  const clusterIndex = i - Math.ceil(n * 0.8);
  if (!upstream || i < n * 0.95 || n < 20)
    return {
      apiVersion: "sluice.dev/v1alpha1",
      kind: "ClusterSecurityPolicy",
      plural: "clustersecuritypolicies",
      metadata: { name: `csp-${i}` },
      spec: {
        tier: clusterIndex % 2 ? "Admin" : "Baseline",
        priority: 100 + clusterIndex,
        endpointSelector: sel({ app: "app-1" }),
        namespaceSelector: sel({ team }),
        ingress: [
          {
            action: "Allow",
            endpoints: [{ namespaceSelector: sel({ team }) }],
            ports: [{ port, protocol: "TCP" }],
          },
        ],
      },
    };
  if (i === n - 1)
    return {
      apiVersion: "policy.networking.k8s.io/v1alpha1",
      kind: "BaselineAdminNetworkPolicy",
      plural: "baselineadminnetworkpolicies",
      metadata: { name: "default" },
      spec: {
        subject: { namespaces: sel({ team: "t0" }) },
        ingress: [{ name: "same-team", action: "Allow", from: [{ namespaces: sel({ team: "t0" }) }] }],
      },
    };
  if (i % 2)
    return {
      apiVersion: "policy.networking.k8s.io/v1alpha1",
      kind: "AdminNetworkPolicy",
      plural: "adminnetworkpolicies",
      metadata: { name: `anp-${i}` },
      spec: {
        priority: i % 1000,
        subject: { pods: { namespaceSelector: sel({ team }), podSelector: sel({ app: "app-0" }) } },
        ingress: [
          {
            name: "team",
            action: "Allow",
            from: [{ namespaces: sel({ team }) }],
            ports: [{ portNumber: { protocol: "TCP", port } }],
          },
        ],
      },
    };
  return {
    apiVersion: "policy.networking.k8s.io/v1alpha2",
    kind: "ClusterNetworkPolicy",
    plural: "clusternetworkpolicies",
    metadata: { name: `cnp-${i}` },
    spec: {
      tier: "Admin",
      priority: i % 1000,
      subject: { namespaces: sel({ team }) },
      ingress: [
        {
          name: "team",
          action: "Accept",
          from: [{ namespaces: sel({ team }) }],
          protocols: [{ tcp: { destinationPort: { number: port } } }],
        },
      ],
    },
  };
}

/** The REST collection a policy is created in. */
export function policyCollection(p: PolicyObject): string {
  const base = p.apiVersion.includes("/") ? `/apis/${p.apiVersion}` : `/api/${p.apiVersion}`;
  return p.metadata.namespace
    ? `${base}/namespaces/${p.metadata.namespace}/${p.plural}`
    : `${base}/${p.plural}`;
}
