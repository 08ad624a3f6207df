// The lab's manifests as an API server takes them: the Node objects given, a bare Node for every other
// spec.nodeName, pods with an image (the API requires one; the lab runs no containers), all without
// status. Pod IPs and phase, and the given Nodes' addresses, then go through the status subresource,
// as a kubelet would write them.
interface Loose {
  kind?: string;
  metadata?: { name?: string; namespace?: string };
  spec?: { nodeName?: string; containers?: Record<string, unknown>[] };
  status?: Record<string, unknown>;
}

export interface PodStatusWrite {
  namespace: string;
  name: string;
  status: Record<string, unknown>;
}

export interface ApiRegistration {
  objects: unknown[];
  podStatuses: PodStatusWrite[];
  nodeStatuses: Array<{ name: string; status: Record<string, unknown> }>;
}

export function apiRegistration(objects: readonly unknown[]): ApiRegistration {
  const all = objects as Loose[];
  const pods = all.filter((o) => o.kind === "Pod");
  const given = all.filter((o) => o.kind === "Node");
  const named = new Set(given.map((n) => n.metadata?.name));
  const nodes = [...new Set(pods.map((p) => p.spec?.nodeName).filter((n): n is string => !!n))].filter(
    (n) => !named.has(n),
  );
  return {
    objects: [
      ...nodes.map((name) => ({ apiVersion: "v1", kind: "Node", metadata: { name } })),
      ...all.map((o) =>
        o.kind === "Pod"
          ? {
              ...o,
              status: undefined,
              spec: { ...o.spec, containers: o.spec?.containers?.map((c) => ({ image: "pause", ...c })) },
            }
          : o.kind === "Node"
            ? { ...o, status: undefined }
            : o,
      ),
    ],
    nodeStatuses: given
      .filter((n) => n.status !== undefined)
      .map((n) => ({ name: n.metadata?.name ?? "", status: n.status ?? {} })),
    podStatuses: pods.map((p) => ({
      namespace: p.metadata?.namespace ?? "default",
      name: p.metadata?.name ?? "",
      status: { ...p.status, phase: "Running" },
    })),
  };
}
