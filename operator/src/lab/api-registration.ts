// The lab's manifests as an API server takes them: a Node for every spec.nodeName, pods with an
// image (the API requires one; the lab runs no containers) and without status. Pod IPs and phase
// then go through the status subresource, as a kubelet would write them.
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
}

export function apiRegistration(objects: readonly unknown[]): ApiRegistration {
  const all = objects as Loose[];
  const pods = all.filter((o) => o.kind === "Pod");
  const nodes = [...new Set(pods.map((p) => p.spec?.nodeName).filter((n): n is string => !!n))];
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
          : o,
      ),
    ],
    podStatuses: pods.map((p) => ({
      namespace: p.metadata?.namespace ?? "default",
      name: p.metadata?.name ?? "",
      status: { ...p.status, phase: "Running" },
    })),
  };
}
