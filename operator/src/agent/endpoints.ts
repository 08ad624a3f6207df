// Local endpoints: the networked pods scheduled on this node, each with the host-side interface that
// reaches it. A pod whose interface is not there yet (still being wired) is reported as pending and
// picked up on a later pass.
import type { Pod } from "../api/k8s.ts";
import { podKey } from "../api/k8s.ts";
import { isNetworkedPod, podIps } from "../policy/universe.ts";
import type { HostInterface, InterfaceResolver } from "./host-interfaces.ts";

export interface LocalInterfaces {
  byKey: Map<string, HostInterface>;
  pending: string[];
}

export function localPods(pods: readonly Pod[], node: string): Pod[] {
  return pods.filter((p) => p.spec?.nodeName === node && isNetworkedPod(p));
}

export async function resolveLocalInterfaces(
  pods: readonly Pod[],
  node: string,
  resolver: InterfaceResolver,
): Promise<LocalInterfaces> {
  const byKey = new Map<string, HostInterface>();
  const pending: string[] = [];
  for (const pod of localPods(pods, node)) {
    const found = await resolvePod(resolver, pod);
    if (found) byKey.set(podKey(pod), found);
    else pending.push(podKey(pod));
  }
  return { byKey, pending };
}

// The interface of the first of the pod's addresses that resolves to one.
export async function resolvePod(resolver: InterfaceResolver, pod: Pod): Promise<HostInterface | undefined> {
  for (const ip of podIps(pod)) {
    const found = await resolver.resolve(ip);
    if (found) return found;
  }
  return undefined;
}
