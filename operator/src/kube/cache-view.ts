// What an informer keeps of each object: the fields Sluice reads, not the whole object. At issue 14's
// scale the pod cache dominates both daemons' memory (50,000 pods in every agent and in the
// operator); a pod as the API server sends it carries managedFields (one entry per writer: the
// creator's and the kubelet's status), annotations, the full container specs and status conditions,
// none of which Sluice reads. A pod keeps what api/k8s.ts's Pod declares, plus the metadata the cache
// itself and the controllers use (uid, resourceVersion, deletionTimestamp); every other kind loses
// only metadata.managedFields (policies are validated and compiled whole, so their specs stay).
// test/scale measures the difference (docs/performance.md, "Scale").
import type { KubernetesObject } from "@kubernetes/client-node";
import type { Resource } from "./resources.ts";

interface Loose {
  metadata?: Record<string, unknown> & { managedFields?: unknown };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

type Container = { name?: string; ports?: unknown };

const containers = (list: unknown): Container[] | undefined =>
  Array.isArray(list)
    ? list.map((c: Container) =>
        c.ports === undefined ? { name: c.name } : { name: c.name, ports: c.ports },
      )
    : undefined;

function pick<T extends Record<string, unknown>>(o: T | undefined, keys: readonly string[]) {
  const out: Record<string, unknown> = {};
  if (!o) return out;
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

const POD_METADATA = [
  "name",
  "namespace",
  "uid",
  "resourceVersion",
  "generation",
  "labels",
  "creationTimestamp",
  "deletionTimestamp",
];

/** The cached view of a pod: what the agent, the operator and the CNI server read. */
export function podView<T extends KubernetesObject>(obj: T): T {
  const o = obj as Loose;
  const spec = o.spec ?? {};
  const view: Loose = {
    metadata: pick(o.metadata, POD_METADATA),
    spec: {
      ...pick(spec, ["nodeName", "hostNetwork"]),
      ...(spec.containers ? { containers: containers(spec.containers) } : {}),
      ...(spec.initContainers ? { initContainers: containers(spec.initContainers) } : {}),
    },
    status: pick(o.status, ["phase", "podIP", "podIPs"]),
  };
  return { apiVersion: obj.apiVersion, kind: obj.kind, ...view } as T;
}

/** Any other object without its managedFields (written by the API server, read by no one here). */
export function withoutManagedFields<T extends KubernetesObject>(obj: T): T {
  const meta = (obj as Loose).metadata;
  if (!meta || meta.managedFields === undefined) return obj;
  const { managedFields: _dropped, ...rest } = meta;
  return { ...obj, metadata: rest };
}

/** The cache view for a resource's objects. */
export function cacheView(r: Resource): <T extends KubernetesObject>(obj: T) => T {
  return r.group === "" && r.plural === "pods" ? podView : withoutManagedFields;
}
