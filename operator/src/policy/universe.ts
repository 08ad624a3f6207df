// What a node knows about peers: every identity a packet's address can map to, with what policies
// match it by (labels, enclosing policy CIDRs, named ports), and the ipcache that maps addresses
// to them. Addresses whose pods share a cluster identity but differ in what a policy can tell
// apart (one pod inside a policy CIDR, another outside; different numbers behind one port name)
// get node-local refined identities, so identity-based lookups still decide exactly per address.
// Node addresses are refined the same way by the policies' node selectors: host and remote-node stay
// one identity each until a node peer picks some nodes and not others.
import type { LabelSelector, Namespace, Node, Pod } from "../api/k8s.ts";
import {
  type LabelOptions,
  type LabelSet,
  labelSetKey,
  type SplitLabels,
  securityLabels,
  splitLabels,
} from "../identity/labels.ts";
import type { Identity } from "../identity/static.ts";
import {
  containsIp,
  containsPrefix,
  formatPrefix,
  hostPrefix,
  type Prefix,
  parseIp,
  parsePrefix,
} from "./cidr.ts";
import { stableIds } from "./hash.ts";
import { type IpcacheEntry, ReservedIdentity } from "./mapstate.ts";
import { type NamedPorts, namedPortsKey, namedPortsOf } from "./ports.ts";
import { matchesSelector } from "./selector.ts";

// Node-local identities (CIDR blocks and refinements) live above every cluster identity.
export const LOCAL_IDENTITY_BASE = 1 << 24;
export const LOCAL_IDENTITY_SPACE = 1 << 24;

export interface PeerIdentity {
  id: number;
  // The reserved or cluster identity this one is, or refines. CIDR blocks have base WORLD.
  base: number;
  labels?: SplitLabels;
  // formatPrefix() of every policy CIDR that contains all of this identity's addresses.
  prefixes: ReadonlySet<string>;
  namedPorts?: NamedPorts;
  // Node addresses (base host or remote-node): the key of every policy node selector that picks the
  // node they belong to (normalize.ts NodePeer.key). Undefined or empty: no node selector picks them.
  nodeSelectors?: ReadonlySet<string>;
}

export interface Universe {
  identities: Map<number, PeerIdentity>;
  ipcache: IpcacheEntry[];
  labelIndex: Map<string, number[]>;
  namespaceIndex: Map<string, number[]>;
  labeled: number[];
  withPrefixes: number[];
  withNamedPorts: number[];
  notLabeled: number[];
  // labelSetKey → cluster identity, for resolving local endpoints.
  identityByKey: Map<string, number>;
}

export interface UniverseInput {
  namespaces: readonly Namespace[];
  pods: readonly Pod[];
  nodes?: readonly Node[];
  identities: readonly Identity[];
  // formatPrefix() of every CIDR and except in the policies.
  policyPrefixes: Iterable<string>;
  // Every node selector of the policies' node peers, by key (normalize.ts NodePeer).
  policyNodeSelectors?: ReadonlyMap<string, LabelSelector>;
  node: string;
  // Addresses of this node's own interfaces (found by the agent), identity HOST like the addresses of
  // its Node object: the sources the node's own stack uses towards its pods (kubelet probes).
  hostAddresses?: readonly string[];
  labelOptions?: LabelOptions;
}

export function podIps(pod: Pod): string[] {
  const ips = (pod.status?.podIPs ?? []).map((p) => p.ip);
  if (ips.length === 0 && pod.status?.podIP) ips.push(pod.status.podIP);
  return ips;
}

// The addresses a Node object gives its node, as policies see them: InternalIP first, then ExternalIP
// (the one a connection from the node uses first).
export function nodeIps(node: Node): string[] {
  const a = node.status?.addresses ?? [];
  return [...a.filter((x) => x.type === "InternalIP"), ...a.filter((x) => x.type === "ExternalIP")].map(
    (x) => x.address,
  );
}

function isFinished(pod: Pod): boolean {
  const phase = pod.status?.phase;
  return phase === "Succeeded" || phase === "Failed";
}

// Pods that own their addresses: not host-network, not finished.
export function isNetworkedPod(pod: Pod): boolean {
  return !pod.spec?.hostNetwork && !isFinished(pod) && podIps(pod).length > 0;
}

// Host-network pods that run: no endpoint of their own, their traffic is their node's.
export function isHostNetworkPod(pod: Pod): boolean {
  return pod.spec?.hostNetwork === true && !isFinished(pod);
}

export function podLabelSet(
  pod: Pod,
  nsByName: ReadonlyMap<string, Namespace>,
  opts?: LabelOptions,
): LabelSet {
  return securityLabels(pod, nsByName.get(pod.metadata.namespace ?? "default"), opts);
}

interface Address {
  text: string;
  ip: { family: 4 | 6; addr: bigint };
  base: number;
  labels?: SplitLabels;
  namedPorts?: NamedPorts;
  // A node's address: the keys of the policy node selectors that pick that node, sorted.
  nodeSelectors?: string[];
}

export function buildUniverse(input: UniverseInput): Universe {
  const nsByName = new Map(input.namespaces.map((n) => [n.metadata.name ?? "", n]));
  const identityByKey = new Map<string, number>();
  const identities = new Map<number, PeerIdentity>();
  const empty: ReadonlySet<string> = new Set();
  for (const id of [
    ReservedIdentity.HOST,
    ReservedIdentity.WORLD,
    ReservedIdentity.UNMANAGED,
    ReservedIdentity.INIT,
    ReservedIdentity.REMOTE_NODE,
  ])
    identities.set(id, { id, base: id, prefixes: empty });
  for (const ident of input.identities) {
    identityByKey.set(labelSetKey(ident.labels), ident.id);
    identities.set(ident.id, {
      id: ident.id,
      base: ident.id,
      labels: splitLabels(ident.labels),
      prefixes: empty,
    });
  }

  const prefixes: Prefix[] = [];
  for (const t of new Set(input.policyPrefixes)) {
    const p = parsePrefix(t);
    if (p) prefixes.push(p);
  }

  const addresses: Address[] = [];
  for (const pod of input.pods) {
    if (!isNetworkedPod(pod)) continue;
    const id = identityByKey.get(labelSetKey(podLabelSet(pod, nsByName, input.labelOptions)));
    // A pod without an identity yet is unknown to policy: its address stays world.
    if (id === undefined) continue;
    const info = identities.get(id)!;
    for (const text of podIps(pod)) {
      const ip = parseIp(text);
      if (ip) addresses.push({ text, ip, base: id, labels: info.labels, namedPorts: namedPortsOf(pod) });
    }
  }
  const nodeLabels = new Map(
    (input.nodes ?? []).map((n) => [n.metadata.name ?? "", n.metadata.labels ?? {}]),
  );
  const selectorsOf = (node: string) => {
    const labels = nodeLabels.get(node) ?? {};
    const keys: string[] = [];
    for (const [k, sel] of input.policyNodeSelectors ?? []) if (matchesSelector(sel, labels)) keys.push(k);
    return keys.sort();
  };
  // The node's own interfaces, before other nodes' Node objects: an address configured here is this
  // node whatever another Node object claims (pods still come first).
  const own = selectorsOf(input.node);
  for (const text of input.hostAddresses ?? []) {
    const ip = parseIp(text);
    if (ip) addresses.push({ text, ip, base: ReservedIdentity.HOST, nodeSelectors: own });
  }
  for (const node of input.nodes ?? []) {
    const name = node.metadata.name ?? "";
    const base = name === input.node ? ReservedIdentity.HOST : ReservedIdentity.REMOTE_NODE;
    const nodeSelectors = selectorsOf(name);
    for (const text of nodeIps(node)) {
      const ip = parseIp(text);
      if (ip) addresses.push({ text, ip, base, nodeSelectors });
    }
  }

  // Group addresses by base identity and what policies can tell apart about them.
  const sigOf = (a: Address) => {
    const covering = prefixes
      .filter((p) => containsIp(p, a.ip))
      .map(formatPrefix)
      .sort();
    const nodes = (a.nodeSelectors ?? []).join(" ");
    return { covering, key: `${covering.join(" ")}|${namedPortsKey(a.namedPorts)}|${nodes}` };
  };
  const perBase = new Map<
    number,
    Map<string, { covering: string[]; namedPorts?: NamedPorts; nodeSelectors?: string[]; addrs: Address[] }>
  >();
  for (const a of addresses) {
    const s = sigOf(a);
    let m = perBase.get(a.base);
    if (!m) {
      m = new Map();
      perBase.set(a.base, m);
    }
    let g = m.get(s.key);
    if (!g) {
      g = { covering: s.covering, namedPorts: a.namedPorts, nodeSelectors: a.nodeSelectors, addrs: [] };
      m.set(s.key, g);
    }
    g.addrs.push(a);
  }
  const localKeys: string[] = prefixes.map((p) => `cidr|${formatPrefix(p)}`);
  for (const [base, groups] of perBase)
    if (groups.size > 1) for (const k of groups.keys()) localKeys.push(`${base}|${k}`);
  const localIds = stableIds(localKeys, LOCAL_IDENTITY_BASE, LOCAL_IDENTITY_SPACE);

  const ipcache = new Map<string, number>();
  for (const p of prefixes) {
    const key = formatPrefix(p);
    const id = localIds.get(`cidr|${key}`)!;
    const covering = new Set(prefixes.filter((q) => containsPrefix(q, p)).map(formatPrefix));
    identities.set(id, { id, base: ReservedIdentity.WORLD, prefixes: covering });
    ipcache.set(key, id);
  }
  const idOfAddress = new Map<Address, number>();
  for (const [base, groups] of perBase) {
    const baseInfo = identities.get(base)!;
    for (const [k, g] of groups) {
      const id = groups.size > 1 ? localIds.get(`${base}|${k}`)! : base;
      identities.set(id, {
        id,
        base,
        labels: baseInfo.labels,
        prefixes: g.covering.length > 0 ? new Set(g.covering) : empty,
        namedPorts: g.namedPorts,
        ...(g.nodeSelectors?.length ? { nodeSelectors: new Set(g.nodeSelectors) } : {}),
      });
      for (const a of g.addrs) idOfAddress.set(a, id);
    }
  }
  // Two objects claiming one address: the first in input order keeps it. An address beats a policy
  // CIDR of the same length (the CIDR is in its prefixes anyway).
  const claimed = new Set<string>();
  for (const a of addresses) {
    const key = formatPrefix(hostPrefix(a.ip));
    if (claimed.has(key)) continue;
    claimed.add(key);
    ipcache.set(key, idOfAddress.get(a)!);
  }

  const labelIndex = new Map<string, number[]>();
  const namespaceIndex = new Map<string, number[]>();
  const labeled: number[] = [];
  const notLabeled: number[] = [];
  const withPrefixes: number[] = [];
  const withNamedPorts: number[] = [];
  const push = (m: Map<string, number[]>, k: string, id: number) => {
    const l = m.get(k);
    if (l) l.push(id);
    else m.set(k, [id]);
  };
  for (const [id, info] of identities) {
    if (info.prefixes.size > 0) withPrefixes.push(id);
    if (info.namedPorts && info.namedPorts.size > 0) withNamedPorts.push(id);
    if (!info.labels) {
      notLabeled.push(id);
      continue;
    }
    labeled.push(id);
    push(namespaceIndex, info.labels.namespace, id);
    for (const [k, v] of Object.entries(info.labels.podLabels)) push(labelIndex, `${k}=${v}`, id);
  }
  return {
    identities,
    ipcache: [...ipcache.entries()].map(([cidr, identity]) => ({ cidr, identity })).sort(compareIpcache),
    labelIndex,
    namespaceIndex,
    labeled,
    withPrefixes,
    withNamedPorts,
    notLabeled,
    identityByKey,
  };
}

function compareIpcache(a: IpcacheEntry, b: IpcacheEntry): number {
  return a.cidr < b.cidr ? -1 : a.cidr > b.cidr ? 1 : 0;
}
