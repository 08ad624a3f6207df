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
  hostKey,
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
  // What earlier builds derived and this one may reuse (the incremental compiler keeps one).
  memo?: UniverseMemo;
}

/**
 * What a build derives per identity and per pod label set, kept between the builds of one
 * incremental compiler: an identity change rebuilds the universe over every pod of the cluster, and
 * without it each build recomputed 10,000 identities' split labels and 50,000 pods' security label
 * keys that had not changed. Reuse is by reference: an identity whose labels object is the one seen
 * before, a pod whose labels are a shared frozen object (kube/cache-view.ts peerPodView) in a
 * namespace whose labels object is the one seen before. Anything else is derived afresh.
 */
export class UniverseMemo {
  private readonly identities = new Map<number, { labels: LabelSet; key: string; split: SplitLabels }>();
  // Frozen pod labels → namespace name → that namespace's labels object and the security label key.
  private podKeys = new WeakMap<object, Map<string, { nsLabels: object | undefined; key: string }>>();

  private readonly labelOptions: LabelOptions | undefined;

  constructor(labelOptions: LabelOptions | undefined) {
    this.labelOptions = labelOptions;
  }

  identity(ident: Identity): { key: string; split: SplitLabels } {
    const known = this.identities.get(ident.id);
    if (known?.labels === ident.labels) return known;
    const entry = { labels: ident.labels, key: labelSetKey(ident.labels), split: splitLabels(ident.labels) };
    this.identities.set(ident.id, entry);
    return entry;
  }

  // Drops the identities not in `live` (after a build: what it did not ask for is gone).
  keepIdentities(live: ReadonlyMap<number, unknown>): void {
    if (this.identities.size > live.size)
      for (const id of this.identities.keys()) if (!live.has(id)) this.identities.delete(id);
  }

  // A namespace object may have been changed in place: no pod label key is trusted any more.
  namespaceChanged(): void {
    this.podKeys = new WeakMap();
  }

  podKey(pod: Pod, nsByName: ReadonlyMap<string, Namespace>): string {
    const labels = pod.metadata.labels;
    if (labels === undefined || !Object.isFrozen(labels))
      return labelSetKey(podLabelSet(pod, nsByName, this.labelOptions));
    const nsName = pod.metadata.namespace ?? "default";
    const nsLabels = nsByName.get(nsName)?.metadata.labels;
    let perNs = this.podKeys.get(labels);
    if (!perNs) {
      perNs = new Map();
      this.podKeys.set(labels, perNs);
    }
    const known = perNs.get(nsName);
    if (known && known.nsLabels === nsLabels) return known.key;
    const key = labelSetKey(podLabelSet(pod, nsByName, this.labelOptions));
    perNs.set(nsName, { nsLabels, key });
    return key;
  }
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
  // formatPrefix() of its host prefix: its ipcache key.
  host: string;
  base: number;
  labels?: SplitLabels;
  namedPorts?: NamedPorts;
  // A node's address: the keys of the policy node selectors that pick that node, sorted.
  nodeSelectors?: string[];
  // The identity it gets: its base, or the refinement of its group.
  id: number;
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
  const memo = input.memo ?? new UniverseMemo(input.labelOptions);
  for (const ident of input.identities) {
    const { key, split } = memo.identity(ident);
    identityByKey.set(key, ident.id);
    identities.set(ident.id, { id: ident.id, base: ident.id, labels: split, prefixes: empty });
  }
  memo.keepIdentities(identities);

  const prefixes: Prefix[] = [];
  for (const t of new Set(input.policyPrefixes)) {
    const p = parsePrefix(t);
    if (p) prefixes.push(p);
  }

  const addresses: Address[] = [];
  for (const pod of input.pods) {
    if (!isNetworkedPod(pod)) continue;
    const id = identityByKey.get(memo.podKey(pod, nsByName));
    // A pod without an identity yet is unknown to policy: its address stays world.
    if (id === undefined) continue;
    const info = identities.get(id)!;
    for (const text of podIps(pod)) {
      const host = hostKey(text);
      if (host)
        addresses.push({ text, host, base: id, labels: info.labels, namedPorts: namedPortsOf(pod), id });
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
    const host = hostKey(text);
    if (host)
      addresses.push({
        text,
        host,
        base: ReservedIdentity.HOST,
        nodeSelectors: own,
        id: ReservedIdentity.HOST,
      });
  }
  for (const node of input.nodes ?? []) {
    const name = node.metadata.name ?? "";
    const base = name === input.node ? ReservedIdentity.HOST : ReservedIdentity.REMOTE_NODE;
    const nodeSelectors = selectorsOf(name);
    for (const text of nodeIps(node)) {
      const host = hostKey(text);
      if (host) addresses.push({ text, host, base, nodeSelectors, id: base });
    }
  }

  // Group addresses by base identity and what policies can tell apart about them.
  const noneCovering: string[] = [];
  const sigOf = (a: Address) => {
    const ip = prefixes.length > 0 ? parseIp(a.text) : undefined;
    const covering = ip
      ? prefixes
          .filter((p) => containsIp(p, ip))
          .map(formatPrefix)
          .sort()
      : noneCovering;
    const ports = namedPortsKey(a.namedPorts);
    // Nearly every pod address: nothing but its named ports to tell apart, and their key (shared by
    // the pods of one container spec) serves as is; a port name cannot hold the separator.
    if (covering.length === 0 && !a.nodeSelectors?.length && !ports.includes("|"))
      return { covering, key: ports };
    const nodes = a.nodeSelectors ? a.nodeSelectors.join(" ") : "";
    return { covering, key: `${covering.join(" ")}|${ports}|${nodes}` };
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
      for (const a of g.addrs) a.id = id;
    }
  }
  // Two objects claiming one address: the first in input order keeps it. An address beats a policy
  // CIDR of the same length (the CIDR is in its prefixes anyway).
  const cidrKeys = new Set(ipcache.keys());
  const claimedCidrs = new Set<string>();
  for (const a of addresses) {
    if (cidrKeys.has(a.host)) {
      if (claimedCidrs.has(a.host)) continue;
      claimedCidrs.add(a.host);
    } else if (ipcache.has(a.host)) continue;
    ipcache.set(a.host, a.id);
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
