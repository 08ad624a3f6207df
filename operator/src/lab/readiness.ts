// When a lab cluster is worth probing: the operator has allocated an identity for every pod's label
// set, and every node's agent has published a SecurityNodeStatus that covers all its pods and has
// seen those identities. Before that a probe measures a transient (pods without cluster identities).
import type { ClusterObjects } from "../api/objects.ts";
import type { KubeClients } from "../kube/client.ts";
import type { SecurityNodeStatusObject } from "../kube/node-status.ts";
import { SECURITY_IDENTITIES, SECURITY_NODE_STATUSES, type Resource } from "../kube/resources.ts";
import { liveIdentities } from "../identity/live.ts";
import { labelSetKey, securityLabels } from "../identity/labels.ts";
import type { LabTopology } from "./topology.ts";

type IdentityItem = ClusterObjects["securityIdentities"][number] & {
  metadata: { deletionTimestamp?: unknown };
};

async function listCluster<T>(clients: KubeClients, r: Resource): Promise<T[]> {
  const list = (await clients.custom.listClusterCustomObject({
    group: r.group,
    version: r.version,
    plural: r.plural,
  })) as { items?: T[] };
  return list.items ?? [];
}

// What is still missing, or undefined when the lab is ready.
export async function labNotReady(clients: KubeClients, topology: LabTopology): Promise<string | undefined> {
  const [pods, namespaces, identities, statuses] = await Promise.all([
    clients.core.listPodForAllNamespaces(),
    clients.core.listNamespace(),
    listCluster<IdentityItem>(clients, SECURITY_IDENTITIES),
    listCluster<SecurityNodeStatusObject>(clients, SECURITY_NODE_STATUSES),
  ]);
  const nsByName = new Map(namespaces.items.map((n) => [n.metadata?.name ?? "", n]));
  const idByKey = new Map(
    liveIdentities(identities.filter((i) => !i.metadata.deletionTimestamp)).map((i) => [
      labelSetKey(i.spec.labels ?? {}),
      Number(i.metadata.name),
    ]),
  );
  // Host-network pods get no identity and are no endpoint (they are their node).
  const endpoints = topology.pods.filter((p) => !p.hostNetwork);
  const labPods = new Set(endpoints.map((p) => p.key));
  let maxNeeded = 0;
  for (const p of pods.items) {
    const key = `${p.metadata?.namespace}/${p.metadata?.name}`;
    if (!labPods.has(key)) continue;
    const ns = nsByName.get(p.metadata?.namespace ?? "");
    const labels = securityLabels(
      {
        metadata: {
          name: p.metadata?.name ?? "",
          namespace: p.metadata?.namespace,
          labels: p.metadata?.labels,
        },
      },
      ns ? { metadata: { name: ns.metadata?.name ?? "", labels: ns.metadata?.labels } } : undefined,
    );
    const id = idByKey.get(labelSetKey(labels));
    if (id === undefined) return `no identity for pod ${key} yet`;
    maxNeeded = Math.max(maxNeeded, id);
    labPods.delete(key);
  }
  if (labPods.size > 0) return `pods not registered: ${[...labPods].join(", ")}`;
  const statusByNode = new Map(statuses.map((s) => [s.metadata?.name ?? "", s.status ?? {}]));
  for (const node of topology.nodes) {
    const s = statusByNode.get(node);
    if (!s) return `no SecurityNodeStatus for node ${node} yet`;
    const want = endpoints.filter((p) => p.node === node).length;
    if (s.endpoints !== want) return `node ${node}: ${s.endpoints ?? 0} of ${want} endpoints enforced`;
    if ((s.maxIdentity ?? 0) < maxNeeded)
      return `node ${node}: the agent has not seen identity ${maxNeeded} yet (max ${s.maxIdentity ?? 0})`;
  }
  return undefined;
}

export async function waitLabReady(
  clients: KubeClients,
  topology: LabTopology,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let why: string | undefined = "not checked";
  for (;;) {
    try {
      why = await labNotReady(clients, topology);
    } catch (err) {
      why = `API error: ${(err as Error).message}`;
    }
    if (why === undefined) return;
    if (Date.now() > deadline) throw new Error(`the lab is not ready after ${timeoutMs} ms: ${why}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
