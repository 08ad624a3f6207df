// Which reconcile keys an informer event dirties (pure). The agent's work queue holds one key per
// local endpoint ("ep:<namespace>/<name>") and two node-wide keys: NODE_KEY (node-wide inputs changed:
// apply what was recorded, write the ipcache, publish the node status) and ALL_KEY (rebuild everything
// from the caches: start, periodic safety net, after an error).
//
// The rules, and why they are enough for "state == compile(caches)" once the keys are reconciled:
// - A local endpoint's policy depends on its own labels, named ports and identity, on the policies
//   that select it and on the peer identities. The compiler (IncrementalCompiler.recompile) itself
//   recompiles endpoints whose labels, ports or identity changed, and every endpoint when the peer
//   identity table changed; the keys here cover the rest.
// - Policy add/update/delete: the endpoints the old or the new version selects (matched against the
//   endpoints as last compiled: an endpoint whose labels changed since has its own key queued), and
//   NODE_KEY (its CIDRs may change the ipcache; the node status reports the policy's generation even
//   when it selects nothing here). A change that leaves the spec as it was (status, annotations) dirties
//   nothing, except the audit annotation (policy/enforcement.ts) of the kinds without spec.enforcement. SIG Network's kinds (ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy)
//   are policies like the others; their objects also leave as deletes when their CRD goes.
// - Pod: only fields the compiler reads count (node, addresses, labels, named ports, whether it is
//   networked). Any of them changed: NODE_KEY (ipcache, refined identities) and the endpoint's key if
//   the pod is or was on this node.
// - Namespace: only its labels count: the endpoints in it (their label sets change) and NODE_KEY.
// - Node: only its addresses and labels count (node peers select by labels): NODE_KEY.
// - SecurityIdentity: every endpoint (any rule's peers, or an endpoint's own number, may change) and
//   NODE_KEY. Identity changes are rare next to policy and pod changes, so this stays simple.
import type { Namespace, NetworkPolicy, Node, Pod } from "../api/k8s.ts";
import type {
  AdminNetworkPolicy,
  BaselineAdminNetworkPolicy,
  ClusterNetworkPolicy,
  ClusterSecurityPolicy,
  SecurityPolicy,
} from "../api/types.generated.ts";
import type { SplitLabels } from "../identity/labels.ts";
import { selectsEndpoint } from "../policy/compile.ts";
import type { CompilerObject } from "../policy/incremental.ts";
import { podKey } from "../api/k8s.ts";
import { ENFORCEMENT_ANNOTATION } from "../policy/enforcement.ts";
import { normalizePolicy } from "../policy/normalize.ts";
import { namedPortsKey, namedPortsOf } from "../policy/ports.ts";
import { isNetworkedPod, podIps } from "../policy/universe.ts";

export const NODE_KEY = "node";
export const ALL_KEY = "all";
const EP_PREFIX = "ep:";

export function endpointKey(podKey: string): string {
  return `${EP_PREFIX}${podKey}`;
}

// The endpoint ("namespace/name") a key names, or undefined for a node-wide key.
export function endpointOfKey(key: string): string | undefined {
  return key.startsWith(EP_PREFIX) ? key.slice(EP_PREFIX.length) : undefined;
}

// The agent watches exactly what the compiler takes.
export type WatchedObject = CompilerObject;

// One informer event: old is the object as last recorded (undefined for an add), current as the
// cache holds it now (undefined for a delete).
export interface ObjectEvent {
  old?: WatchedObject;
  current?: WatchedObject;
}

// What the event is matched against: the node's endpoints as last compiled.
export interface NodeView {
  node: string;
  endpoints: readonly { key: string; labels: SplitLabels }[];
}

function podFingerprint(p: Pod): string {
  return JSON.stringify([
    p.spec?.nodeName ?? "",
    isNetworkedPod(p),
    podIps(p),
    Object.entries(p.metadata.labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    namedPortsKey(namedPortsOf(p)),
  ]);
}

function labelsText(l: Readonly<Record<string, string>> | undefined): string {
  return JSON.stringify(Object.entries(l ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

// What of a Node the compiler reads: its addresses, and its labels for node peers.
function nodeText(n: Node): string {
  const addresses = JSON.stringify((n.status?.addresses ?? []).map((a) => [a.type, a.address]));
  return `${addresses}|${labelsText(n.metadata.labels)}`;
}

type AnyPolicy =
  | NetworkPolicy
  | SecurityPolicy
  | ClusterSecurityPolicy
  | ClusterNetworkPolicy
  | AdminNetworkPolicy
  | BaselineAdminNetworkPolicy;

// What of a policy the compiler reads: its spec, and the audit annotation of the kinds whose schema is
// not Sluice's (a metadata edit, so no new generation, yet it changes what is enforced).
function policyText(p: AnyPolicy): string {
  return `${JSON.stringify(p.spec)}|${p.metadata.annotations?.[ENFORCEMENT_ANNOTATION] ?? ""}`;
}

function policyKeys(old: AnyPolicy | undefined, current: AnyPolicy | undefined, view: NodeView): string[] {
  if (old && current && policyText(old) === policyText(current)) return [];
  const norms = [old, current].filter((p) => p !== undefined).map(normalizePolicy);
  const keys = [NODE_KEY];
  for (const ep of view.endpoints)
    if (norms.some((n) => selectsEndpoint(n, ep.labels))) keys.push(endpointKey(ep.key));
  return keys;
}

export function keysForEvent(e: ObjectEvent, view: NodeView): string[] {
  const o = e.current ?? e.old;
  if (!o) return [];
  switch (o.kind) {
    case "NetworkPolicy":
    case "SecurityPolicy":
    case "ClusterSecurityPolicy":
    case "ClusterNetworkPolicy":
    case "AdminNetworkPolicy":
    case "BaselineAdminNetworkPolicy":
      return policyKeys(e.old as AnyPolicy | undefined, e.current as AnyPolicy | undefined, view);
    case "Pod": {
      const old = e.old as Pod | undefined;
      const cur = e.current as Pod | undefined;
      if (old && cur && podFingerprint(old) === podFingerprint(cur)) return [];
      const keys = [NODE_KEY];
      if ([old, cur].some((p) => p?.spec?.nodeName === view.node)) keys.push(endpointKey(podKey(o)));
      return keys;
    }
    case "Namespace": {
      const old = e.old as Namespace | undefined;
      const cur = e.current as Namespace | undefined;
      if (old && cur && labelsText(old.metadata.labels) === labelsText(cur.metadata.labels)) return [];
      const name = o.metadata.name ?? "";
      return [
        NODE_KEY,
        ...view.endpoints.filter((ep) => ep.labels.namespace === name).map((ep) => endpointKey(ep.key)),
      ];
    }
    case "Node": {
      const old = e.old as Node | undefined;
      const cur = e.current as Node | undefined;
      if (old && cur && nodeText(old) === nodeText(cur)) return [];
      return [NODE_KEY];
    }
    case "SecurityIdentity":
      return [NODE_KEY, ...view.endpoints.map((ep) => endpointKey(ep.key))];
  }
}
