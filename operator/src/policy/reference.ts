// The reference evaluator: reads the policy objects directly for one probe (source address,
// destination address, protocol, port), with no identities, no map state and no precedence folding.
// It is the oracle the compiler is tested against; keep it obvious rather than fast.
import type { Namespace, Node, Pod } from "../api/k8s.ts";
import { type LabelOptions, type SplitLabels, securityLabels, splitLabels } from "../identity/labels.ts";
import { containsIp, parseIp } from "./cidr.ts";
import type { AllowLocalhost, Direction, Verdict } from "./mapstate.ts";
import type { EndpointPeer, NormPolicy, NormRule, PeerSpec } from "./normalize.ts";
import { type PolicyInputs, collectPolicies } from "./compile.ts";
import { inRanges, type NamedPorts, namedPortsOf, resolvePorts } from "./ports.ts";
import { matchesSelector } from "./selector.ts";
import { isNetworkedPod, nodeIps, podIps } from "./universe.ts";

interface PodInfo {
  pod: Pod;
  key: string;
  labels: SplitLabels;
  namedPorts: NamedPorts;
}

// What an address is: a pod, a node, or neither (outside the cluster).
type Peer = { kind: "pod"; pod: PodInfo } | { kind: "node"; node: string } | { kind: "external" };

export interface ReferenceVerdict {
  verdict: Verdict;
  // Undefined when the side is not a policy-enforcing pod.
  egress?: Verdict;
  ingress?: Verdict;
  // The same with the Audit policies enforced too (the top level ignores them).
  audit: { verdict: Verdict; egress?: Verdict; ingress?: Verdict };
}

// Which policies a verdict reads: the enforced ones only, or the Audit ones as if enforced as well.
export type ReferenceMode = "enforced" | "audit";

export interface ReferenceOptions {
  labelOptions?: LabelOptions;
  // As CompileOptions.allowLocalhost (default "always"): under "always" a node reaches its own pods
  // on every port, whatever the policies say.
  allowLocalhost?: AllowLocalhost;
  // Per node name: the addresses of its own interfaces (CompileOptions.hostAddresses of that node's
  // compile). Only that node knows them: seen from any other node they are what they would be without.
  hostAddresses?: ReadonlyMap<string, readonly string[]>;
}

export class ReferenceEvaluator {
  private readonly policies: NormPolicy[];
  private readonly byIp = new Map<string, Peer>();
  private readonly allowLocalhost: AllowLocalhost;
  // node name -> canonical addresses of its interfaces.
  private readonly local = new Map<string, Set<string>>();
  // node name -> its Node object's labels (what node peers select by).
  private readonly nodeLabels = new Map<string, Readonly<Record<string, string>>>();

  constructor(inputs: PolicyInputs, options: ReferenceOptions = {}) {
    const labelOptions = options.labelOptions;
    this.allowLocalhost = options.allowLocalhost ?? "always";
    for (const [node, ips] of options.hostAddresses ?? [])
      this.local.set(node, new Set(ips.map((ip) => canonical(ip) ?? "")));
    this.policies = collectPolicies(inputs);
    const nsByName = new Map<string, Namespace>(inputs.namespaces.map((n) => [n.metadata.name ?? "", n]));
    for (const pod of inputs.pods) {
      if (!isNetworkedPod(pod)) continue;
      const labels = splitLabels(
        securityLabels(pod, nsByName.get(pod.metadata.namespace ?? "default"), labelOptions),
      );
      const info: PodInfo = {
        pod,
        key: `${pod.metadata.namespace ?? "default"}/${pod.metadata.name ?? ""}`,
        labels,
        namedPorts: namedPortsOf(pod),
      };
      for (const ip of podIps(pod)) this.claim(ip, { kind: "pod", pod: info });
    }
    for (const n of inputs.nodes ?? []) this.nodeLabels.set(n.metadata.name ?? "", n.metadata.labels ?? {});
    for (const n of inputs.nodes ?? [])
      for (const ip of nodeIps(n as Node)) this.claim(ip, { kind: "node", node: n.metadata.name ?? "" });
  }

  private claim(ip: string, peer: Peer): void {
    const key = canonical(ip);
    if (key && !this.byIp.has(key)) this.byIp.set(key, peer);
  }

  // What an address is, seen from node `from` (when given): a pod, else one of that node's own
  // interfaces, else a node by its Node object, else outside the cluster.
  peerAt(ip: string, from?: string): Peer {
    const key = canonical(ip) ?? "";
    const known = this.byIp.get(key);
    if (known?.kind === "pod") return known;
    if (from !== undefined && this.local.get(from)?.has(key)) return { kind: "node", node: from };
    return known ?? { kind: "external" };
  }

  // Egress of the source AND ingress of the destination, each where it is a pod on some node, with
  // the peer as that node sees it.
  evaluate(srcIp: string, dstIp: string, protocol: number, port: number): ReferenceVerdict {
    const src = this.peerAt(srcIp);
    const dst = this.peerAt(dstIp);
    const out: ReferenceVerdict = { verdict: "allow", audit: { verdict: "allow" } };
    const srcNode = src.kind === "pod" ? src.pod.pod.spec?.nodeName : undefined;
    const dstNode = dst.kind === "pod" ? dst.pod.pod.spec?.nodeName : undefined;
    if (src.kind === "pod" && srcNode) {
      const peer = this.peerAt(dstIp, srcNode);
      out.egress = this.endpointVerdict(src.pod, "egress", dstIp, peer, protocol, port);
      out.audit.egress = this.endpointVerdict(src.pod, "egress", dstIp, peer, protocol, port, "audit");
    }
    if (dst.kind === "pod" && dstNode) {
      const peer = this.peerAt(srcIp, dstNode);
      out.ingress = this.endpointVerdict(dst.pod, "ingress", srcIp, peer, protocol, port);
      out.audit.ingress = this.endpointVerdict(dst.pod, "ingress", srcIp, peer, protocol, port, "audit");
    }
    out.verdict = out.egress === "deny" || out.ingress === "deny" ? "deny" : "allow";
    out.audit.verdict = out.audit.egress === "deny" || out.audit.ingress === "deny" ? "deny" : "allow";
    return out;
  }

  endpointVerdict(
    ep: PodInfo,
    direction: Direction,
    peerIp: string,
    peer: Peer,
    protocol: number,
    port: number,
    mode: ReferenceMode = "enforced",
  ): Verdict {
    const selecting = this.policies.filter((p) => (mode === "audit" || !p.audit) && selects(p, ep.labels));
    // The namedPorts of the destination pod: the endpoint itself for ingress, the peer for egress.
    const named =
      direction === "ingress" ? ep.namedPorts : peer.kind === "pod" ? peer.pod.namedPorts : undefined;
    const node = ep.pod.spec?.nodeName;
    // Allow-localhost "always": the endpoint's own node gets in before any policy is read.
    if (
      direction === "ingress" &&
      this.allowLocalhost === "always" &&
      peer.kind === "node" &&
      peer.node === node
    )
      return "allow";
    const hit = (r: NormRule) =>
      r.direction === direction &&
      peerMatches(r.peers, peerIp, peer, node, this.nodeLabels) &&
      inRanges(resolvePorts(r.ports, named), protocol, port);

    // Admin tier: first matching rule in priority order decides; Pass moves on to namespace level.
    admin: for (const p of selecting.filter((x) => x.tier === "admin"))
      for (const r of p.rules)
        if (hit(r)) {
          if (r.action === "pass") break admin;
          return r.action === "deny" ? "deny" : "allow";
        }
    // Namespace level: any Deny wins, else any Allow; isolation denies the rest.
    const ns = selecting.filter((x) => x.tier === "namespace");
    const nsHits = ns.flatMap((p) => p.rules.filter(hit));
    if (nsHits.some((r) => r.action === "deny")) return "deny";
    if (nsHits.length > 0) return "allow";
    if (ns.some((p) => p.isolates[direction])) return "deny";
    // Baseline tier: first matching rule decides; a Pass there leaves it to the default (allow).
    for (const p of selecting.filter((x) => x.tier === "baseline"))
      for (const r of p.rules) if (hit(r)) return r.action === "deny" ? "deny" : "allow";
    return "allow";
  }
}

function canonical(ip: string): string | undefined {
  const a = parseIp(ip);
  return a ? `${a.family}:${a.addr}` : undefined;
}

function selects(p: NormPolicy, labels: SplitLabels): boolean {
  const ns = p.subjectNamespace;
  if (ns?.kind === "name" && ns.name !== labels.namespace) return false;
  if (ns?.kind === "selector" && !matchesSelector(ns.selector, labels.namespaceLabels)) return false;
  return matchesSelector(p.subjectPods, labels.podLabels);
}

function endpointPeerMatches(ep: EndpointPeer, labels: SplitLabels): boolean {
  if (ep.namespace?.kind === "name" && ep.namespace.name !== labels.namespace) return false;
  if (ep.namespace?.kind === "selector" && !matchesSelector(ep.namespace.selector, labels.namespaceLabels))
    return false;
  return !ep.pod || matchesSelector(ep.pod, labels.podLabels);
}

function peerMatches(
  peers: PeerSpec,
  ip: string,
  peer: Peer,
  node: string | undefined,
  nodeLabels: ReadonlyMap<string, Readonly<Record<string, string>>>,
): boolean {
  if (peers.any) return true;
  if (peer.kind === "pod" && peers.endpoints.some((e) => endpointPeerMatches(e, peer.pod.labels)))
    return true;
  const addr = parseIp(ip);
  if (addr && peers.cidrs.some((c) => containsIp(c.cidr, addr) && !c.except.some((e) => containsIp(e, addr))))
    return true;
  for (const e of peers.entities) {
    if (e === "all") return true;
    if (e === "world" && peer.kind === "external") return true;
    if (e === "cluster" && peer.kind !== "external") return true;
    if (e === "host" && peer.kind === "node" && peer.node === node) return true;
    if (e === "remote-node" && peer.kind === "node" && peer.node !== node) return true;
  }
  // A node peer: the address is one of a node's whose labels the selector matches (a node without a
  // Node object has none).
  if (peer.kind === "node") {
    const labels = nodeLabels.get(peer.node) ?? {};
    if (peers.nodes.some((n) => matchesSelector(n.selector, labels))) return true;
  }
  return false;
}
