// Pod-to-pod connectivity as the datapath would decide it: compile every node, then for each probe
// look up the source's egress on its node and the destination's ingress on its node, through the
// same longest-prefix lookups as the BPF program. Both must allow.
//
// Host-network pods take part as their node's address (their status.podIPs, which a kubelet sets to the
// node's; else the node's InternalIP and ExternalIP addresses): a pod on their node sees them as host,
// a pod elsewhere as remote-node, refined by node selectors as the agents refine them. They are no
// endpoint, so only the other side's policy decides; between two host-network pods nothing is
// enforced and no row is printed.
import { type Node, type Pod, podKey } from "../api/k8s.ts";
import type { MatrixRow, ProbePort, ProbeProtocol } from "../api/matrix-rows.ts";
import { type CompileOptions, compile, type PolicyInputs } from "./compile.ts";
import { lookupIdentity, lookupVerdict } from "./lookup.ts";
import type { Direction, EndpointState, MapState, Verdict } from "./mapstate.ts";
import { protocolName, protocolNumber } from "./ports.ts";
import { isHostNetworkPod, isNetworkedPod, nodeIps, podIps } from "./universe.ts";

export interface MatrixOptions extends Omit<CompileOptions, "node"> {
  // Probe these on every destination; default: each destination's container ports.
  ports?: ProbePort[];
  // Also give each row's verdict with the Audit policies enforced (AuditedRow.audit), where it differs.
  audit?: boolean;
}

// A row with, where the Audit policies would change it, the verdict if they were enforced.
export type AuditedRow = MatrixRow & { audit?: Verdict };

export function containerPorts(p: Pod): ProbePort[] {
  const seen = new Set<string>();
  const out: ProbePort[] = [];
  for (const c of p.spec?.containers ?? [])
    for (const cp of c.ports ?? []) {
      const protocol = protocolName(protocolNumber(cp.protocol)) as ProbeProtocol;
      const k = `${cp.containerPort}/${protocol}`;
      if (seen.has(k)) continue;
      seen.add(k);
      out.push({ port: cp.containerPort, protocol });
    }
  return out;
}

// The addresses a pod's traffic carries: its own, or for a host-network pod its node's.
export function trafficAddresses(pod: Pod, nodes: readonly Node[]): string[] {
  const own = podIps(pod);
  if (own.length > 0 || !isHostNetworkPod(pod)) return own;
  const node = nodes.find((n) => n.metadata.name === pod.spec?.nodeName);
  return node ? nodeIps(node) : [];
}

// An address of dst and one of src in the same family (the pair a connection would use).
export function addressPair(
  srcIps: readonly string[],
  dstIps: readonly string[],
): { srcIp: string; dstIp: string } | undefined {
  for (const d of dstIps) {
    const v6 = d.includes(":");
    const s = srcIps.find((ip) => ip.includes(":") === v6);
    if (s) return { srcIp: s, dstIp: d };
  }
  return undefined;
}

export function computeMatrix(inputs: PolicyInputs, options: MatrixOptions = {}): AuditedRow[] {
  const nodes = inputs.nodes ?? [];
  const pods = inputs.pods
    .filter((p) => (isNetworkedPod(p) || isHostNetworkPod(p)) && p.spec?.nodeName)
    .sort((a, b) => (podKey(a) < podKey(b) ? -1 : 1));
  const addresses = new Map(pods.map((p) => [p, trafficAddresses(p, nodes)]));
  const states = new Map<string, MapState>();
  const endpoint = new Map<string, EndpointState>();
  for (const node of new Set(pods.filter(isNetworkedPod).map((p) => p.spec!.nodeName!))) {
    const { state } = compile(inputs, { ...options, node });
    states.set(node, state);
    for (const ep of state.endpoints) endpoint.set(ep.key, ep);
  }
  // One side's verdict on its node, per protocol and port; a host-network pod's side (no endpoint)
  // enforces nothing.
  // Each side gives [enforced, audited] verdicts.
  const side = (pod: Pod, ep: EndpointState | undefined, direction: Direction, peerIp: string) => {
    const state = states.get(pod.spec!.nodeName!);
    if (!ep || !state) return (): Verdict[] => ["allow", "allow"];
    const peer = lookupIdentity(state.ipcache, peerIp);
    return (proto: number, port: number): Verdict[] => {
      const r = lookupVerdict(ep.policy, direction, peer, proto, port);
      return [r.verdict, r.audit?.verdict ?? r.verdict];
    };
  };
  const rows: AuditedRow[] = [];
  for (const src of pods)
    for (const dst of pods) {
      if (src === dst) continue;
      const pair = addressPair(addresses.get(src)!, addresses.get(dst)!);
      const srcEp = endpoint.get(podKey(src));
      const dstEp = endpoint.get(podKey(dst));
      if (!pair || (!srcEp && !dstEp)) continue;
      const egress = side(src, srcEp, "egress", pair.dstIp);
      const ingress = side(dst, dstEp, "ingress", pair.srcIp);
      for (const pp of options.ports ?? containerPorts(dst)) {
        const proto = protocolNumber(pp.protocol);
        const [e, i] = [egress(proto, pp.port), ingress(proto, pp.port)];
        const verdict = e[0] === "allow" && i[0] === "allow" ? "allow" : "deny";
        const row: AuditedRow = {
          from: podKey(src),
          to: podKey(dst),
          port: pp.port,
          protocol: pp.protocol,
          verdict,
        };
        const audit = e[1] === "allow" && i[1] === "allow" ? "allow" : "deny";
        if (options.audit && audit !== verdict) row.audit = audit;
        rows.push(row);
      }
    }
  return rows;
}
