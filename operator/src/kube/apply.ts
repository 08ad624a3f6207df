// Server-side apply. client-node's generated patch methods default to JSON patch and
// KubernetesObjectApi.patch to strategic merge, which custom resources reject (415): every call
// here sets the apply content type explicitly, names a field manager and forces ownership of the
// fields it sends (the caller is the single writer of those fields by design).
import {
  type CustomObjectsApi,
  type KubernetesObject,
  type KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
} from "@kubernetes/client-node";
import { apiVersionOf, type Resource } from "./resources.ts";

const applyOptions = () => setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply);

/** Applies any object (creates it when absent). The object must carry apiVersion, kind and name. */
export async function applyObject<T extends KubernetesObject>(
  objects: KubernetesObjectApi,
  obj: T,
  fieldManager: string,
  force = true,
): Promise<T> {
  return objects.patch(obj, undefined, undefined, fieldManager, force, PatchStrategy.ServerSideApply);
}

/** Applies a custom object's main resource (not status). */
export async function applyCustomObject(
  custom: CustomObjectsApi,
  resource: Resource,
  body: KubernetesObject & Record<string, unknown>,
  fieldManager: string,
  force = true,
): Promise<KubernetesObject> {
  const name = body.metadata?.name;
  if (!name) throw new Error(`apply ${resource.kind}: metadata.name is required`);
  const full = { ...body, apiVersion: apiVersionOf(resource), kind: resource.kind };
  if (resource.namespaced) {
    const namespace = body.metadata?.namespace;
    if (!namespace) throw new Error(`apply ${resource.kind} ${name}: metadata.namespace is required`);
    return custom.patchNamespacedCustomObject(
      {
        group: resource.group,
        version: resource.version,
        plural: resource.plural,
        namespace,
        name,
        body: full,
        fieldManager,
        force,
      },
      applyOptions(),
    );
  }
  return custom.patchClusterCustomObject(
    {
      group: resource.group,
      version: resource.version,
      plural: resource.plural,
      name,
      body: full,
      fieldManager,
      force,
    },
    applyOptions(),
  );
}

/**
 * Applies the status subresource of a custom object: only `status` is sent, so the field manager
 * owns exactly the status fields it writes. Fails with 404 when the object is gone.
 */
export async function applyCustomStatus(
  custom: CustomObjectsApi,
  resource: Resource,
  ref: { name: string; namespace?: string },
  status: Record<string, unknown>,
  fieldManager: string,
  force = true,
): Promise<KubernetesObject> {
  const metadata: Record<string, string> = { name: ref.name };
  if (resource.namespaced) {
    if (!ref.namespace) throw new Error(`apply ${resource.kind} ${ref.name} status: namespace is required`);
    metadata.namespace = ref.namespace;
  }
  const body = { apiVersion: apiVersionOf(resource), kind: resource.kind, metadata, status };
  const common = {
    group: resource.group,
    version: resource.version,
    plural: resource.plural,
    name: ref.name,
  };
  if (resource.namespaced) {
    return custom.patchNamespacedCustomObjectStatus(
      { ...common, namespace: ref.namespace as string, body, fieldManager, force },
      applyOptions(),
    );
  }
  return custom.patchClusterCustomObjectStatus({ ...common, body, fieldManager, force }, applyOptions());
}

/**
 * A JSON merge patch of a cluster-scoped custom object: for a writer that changes one field of an
 * object it otherwise applies (the node status heartbeat), so the request carries only that field.
 * Fails with 404 when the object is absent (a merge patch does not create).
 */
export async function mergePatchCustomObject(
  custom: CustomObjectsApi,
  resource: Resource,
  name: string,
  patch: Record<string, unknown>,
  fieldManager: string,
): Promise<KubernetesObject> {
  return custom.patchClusterCustomObject(
    {
      group: resource.group,
      version: resource.version,
      plural: resource.plural,
      name,
      body: patch,
      fieldManager,
    },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  );
}
