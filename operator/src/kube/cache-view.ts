// What an informer keeps of each object: the fields Sluice reads, not the whole object. At issue 14's
// scale the pod cache dominates both daemons' memory (50,000 pods in every agent and in the
// operator); a pod as the API server sends it carries managedFields (one entry per writer: the
// creator's and the kubelet's status), annotations, the full container specs and status conditions,
// none of which Sluice reads. A pod keeps what api/k8s.ts's Pod declares, plus the metadata the cache
// itself and the controllers use (uid, resourceVersion, deletionTimestamp); every other kind loses
// only metadata.managedFields (policies are validated and compiled whole, so their specs stay).
// Most pods are only peers: another node's pods in an agent, every pod in the operator. Their view
// (peerPodView) is smaller still — no uid, timestamps or apiVersion, one address field, and the label
// set, the container port lists and the namespace, node and phase names shared through an Interner —
// about 300 bytes of heap per pod instead of 900. Every view carries its kind: list items come
// without one, and a reader that adds it copies the object.
// test/scale measures the difference (docs/performance.md, "Scale").
import type { KubernetesObject } from "@kubernetes/client-node";
import { Interner } from "./interner.ts";
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

// What peers of every cache in the process share.
const SHARED = new Interner();

/**
 * The cached view of a pod read only as a peer: what the compiler, the identity allocator and the
 * status controller read of it (api/k8s.ts Pod without uid, timestamps and the duplicate address
 * field), its shared parts interned and frozen.
 */
export function peerPodView<T extends KubernetesObject>(obj: T, interner: Interner = SHARED): T {
  const o = obj as Loose;
  const meta = o.metadata ?? {};
  const spec = o.spec ?? {};
  const status = (o.status ?? {}) as { phase?: string; podIP?: string; podIPs?: { ip: string }[] };
  const str = (s: unknown) => (typeof s === "string" ? interner.string(s) : undefined);
  const ports = containers(spec.containers);
  // podIPs[0] is podIP (the API server keeps them so): a single address is kept as podIP alone.
  const ips = status.podIPs ?? [];
  const first = ips[0]?.ip ?? status.podIP;
  const address =
    ips.length > 1 ? { podIPs: ips.map((p) => ({ ip: p.ip })) } : first !== undefined ? { podIP: first } : {};
  const view = {
    kind: "Pod",
    metadata: {
      name: meta.name,
      namespace: str(meta.namespace),
      resourceVersion: meta.resourceVersion,
      ...(meta.labels !== undefined && { labels: interner.json(meta.labels) }),
    },
    spec: {
      nodeName: str(spec.nodeName),
      ...(spec.hostNetwork !== undefined && { hostNetwork: spec.hostNetwork }),
      ...(ports && { containers: interner.json(ports) }),
    },
    status: { phase: str(status.phase), ...address },
  };
  return view as unknown as T;
}

/** An agent's view of pods: its own node's whole (podView), every other node's as peers. */
export function nodePodView(node: string, interner: Interner = SHARED) {
  return <T extends KubernetesObject>(obj: T): T =>
    (obj as Loose).spec?.nodeName === node ? podView(obj) : peerPodView(obj, interner);
}

/** Any other object without its managedFields (written by the API server, read by no one here). */
export function withoutManagedFields<T extends KubernetesObject>(obj: T): T {
  const meta = (obj as Loose).metadata;
  if (!meta || meta.managedFields === undefined) return obj;
  const { managedFields: _dropped, ...rest } = meta;
  return { ...obj, metadata: rest };
}

/** `view` with the resource's kind set (list items carry none). */
export function withKind(
  r: Resource,
  view: <T extends KubernetesObject>(obj: T) => T,
): <T extends KubernetesObject>(obj: T) => T {
  return <T extends KubernetesObject>(obj: T): T => {
    const v = view(obj);
    return v.kind === r.kind ? v : { ...v, kind: r.kind };
  };
}

/** The cache view for a resource's objects: pods as peers (the operator reads no pod as more). */
export function cacheView(r: Resource): <T extends KubernetesObject>(obj: T) => T {
  return r.group === "" && r.plural === "pods" ? peerPodView : withoutManagedFields;
}
