// Which identities a rule's peers match, answered through the universe's indexes.
import { matchesSelector, requiredLabels } from "./selector.ts";
import { ReservedIdentity } from "./mapstate.ts";
import type { EndpointPeer, Entity, NodePeer, PeerSpec } from "./normalize.ts";
import type { PeerIdentity, Universe } from "./universe.ts";

const CLUSTER_RESERVED = new Set<number>([
  ReservedIdentity.HOST,
  ReservedIdentity.REMOTE_NODE,
  ReservedIdentity.UNMANAGED,
  ReservedIdentity.INIT,
]);

export function entityMatches(e: Entity, p: PeerIdentity): boolean {
  switch (e) {
    case "all":
      return true;
    case "world":
      return p.base === ReservedIdentity.WORLD;
    case "host":
      return p.base === ReservedIdentity.HOST;
    case "remote-node":
      return p.base === ReservedIdentity.REMOTE_NODE;
    case "cluster":
      return CLUSTER_RESERVED.has(p.base) || p.labels !== undefined;
  }
}

function endpointMatches(ep: EndpointPeer, p: PeerIdentity): boolean {
  if (!p.labels) return false;
  if (ep.namespace) {
    if (
      ep.namespace.kind === "name"
        ? p.labels.namespace !== ep.namespace.name
        : !matchesSelector(ep.namespace.selector, p.labels.namespaceLabels)
    )
      return false;
  }
  return !ep.pod || matchesSelector(ep.pod, p.labels.podLabels);
}

// A node peer picks the node addresses refined by its selector (universe.ts), host or remote-node alike.
function nodeMatches(n: NodePeer, p: PeerIdentity): boolean {
  return p.nodeSelectors?.has(n.key) === true;
}

export function peerMatches(peers: PeerSpec, p: PeerIdentity): boolean {
  if (peers.any) return true;
  for (const ep of peers.endpoints) if (endpointMatches(ep, p)) return true;
  for (const c of peers.cidrs)
    if (p.prefixes.has(c.cidrKey) && !c.exceptKeys.some((k) => p.prefixes.has(k))) return true;
  for (const e of peers.entities) if (entityMatches(e, p)) return true;
  for (const n of peers.nodes) if (nodeMatches(n, p)) return true;
  return false;
}

function endpointCandidates(ep: EndpointPeer, u: Universe): readonly number[] {
  let best: readonly number[] = u.labeled;
  if (ep.namespace?.kind === "name") best = u.namespaceIndex.get(ep.namespace.name) ?? [];
  for (const [k, v] of ep.pod ? requiredLabels(ep.pod) : []) {
    const l = u.labelIndex.get(`${k}=${v}`) ?? [];
    if (l.length < best.length) best = l;
  }
  return best;
}

// The identities a non-wildcard peer spec matches (callers handle peers.any themselves).
export function peerIdentities(peers: PeerSpec, u: Universe): Set<number> {
  const out = new Set<number>();
  for (const ep of peers.endpoints)
    for (const id of endpointCandidates(ep, u)) if (endpointMatches(ep, u.identities.get(id)!)) out.add(id);
  for (const c of peers.cidrs)
    for (const id of u.withPrefixes) {
      const p = u.identities.get(id)!;
      if (p.prefixes.has(c.cidrKey) && !c.exceptKeys.some((k) => p.prefixes.has(k))) out.add(id);
    }
  for (const e of peers.entities) {
    const pool = e === "cluster" ? u.identities.keys() : u.notLabeled;
    for (const id of pool) if (entityMatches(e, u.identities.get(id)!)) out.add(id);
  }
  if (peers.nodes.length > 0)
    for (const id of u.notLabeled) {
      const p = u.identities.get(id)!;
      if (peers.nodes.some((n) => nodeMatches(n, p))) out.add(id);
    }
  return out;
}
