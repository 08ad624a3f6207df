// The wiring of a lab run, computed before anything touches the kernel: namespace and interface
// names, MAC and node addresses, and the `ip` commands that build each namespace. Pure, so the
// plan can be checked without root.
//
// Shape: a fabric namespace holds a bridge joining every node namespace; each pod namespace has
// eth0 with its pod addresses and a default route via a link-local gateway (169.254.1.1, fe80::1)
// whose MAC is the host-side veth's, set as a permanent neighbour (no ARP/ND through the policy
// programs). The node routes each local pod IP to its host-side veth and other nodes' pod IPs via
// that node's fabric address. A node's fabric address is the one the manifests give it (a Node
// InternalIP, a host-network pod's address; on the link as a host route, every other node routing to
// it on the bridge), else one of a subnet the lab picks. Host-network pods get no namespace of their
// own: their server and prober run in their node's.
import { createHash } from "node:crypto";
import { BlockList, isIPv6 } from "node:net";
import type { LabPod, LabTopology } from "./topology.ts";

export const GATEWAY4 = "169.254.1.1";
export const GATEWAY6 = "fe80::1";
// Every lab namespace name starts with this and the run id, so a sweep can find leftovers.
export const NETNS_PREFIX = "sl";

export interface NodePlan {
  name: string;
  netns: string;
  // The node's link to the fabric bridge (inside the node namespace) and its peer in the fabric.
  fabricIf: string;
  fabricPeerIf: string;
  fabricMac: string;
  address4: string;
  address6: string;
}

export interface PodPlan {
  pod: LabPod;
  // The pod's namespace; for a host-network pod its node's (then hostIf, hostMac, podMac are unused).
  netns: string;
  nodeNetns: string;
  // Host-side veth, in the node namespace: where the agent attaches the pod's programs.
  hostIf: string;
  hostMac: string;
  podMac: string;
}

export interface LabPlan {
  runId: string;
  fabricNetns: string;
  nodes: NodePlan[];
  pods: PodPlan[];
  // Commands per namespace, in order: `ip -n <netns> -batch -` lines.
  links: Map<string, string[]>;
  config: Map<string, string[]>;
  // Node namespaces need forwarding; written to /proc/sys from inside.
  sysctls: Map<string, Record<string, string>>;
}

export function newRunId(): string {
  return createHash("sha256")
    .update(`${process.pid}-${Date.now()}-${Math.random()}`)
    .digest("hex")
    .slice(0, 4);
}

// Namespace names are file names under /run/netns: keep them short and in a safe alphabet, with a
// hash suffix when a long name had to be cut so two names never collide.
export function netnsName(runId: string, kind: "n" | "p" | "fabric", name = ""): string {
  const base =
    kind === "fabric" ? `${NETNS_PREFIX}${runId}-fabric` : `${NETNS_PREFIX}${runId}-${kind}-${name}`;
  const safe = base.replace(/[^A-Za-z0-9_.-]/g, "_");
  if (safe.length <= 48 && safe === base) return safe;
  const hash = createHash("sha256").update(base).digest("hex").slice(0, 6);
  return `${safe.slice(0, 41)}-${hash}`;
}

function mac(kind: number, index: number): string {
  const b = [0x02, 0x5c, kind, (index >> 16) & 0xff, (index >> 8) & 0xff, index & 0xff];
  return b.map((x) => x.toString(16).padStart(2, "0")).join(":");
}

const nodeSubnets4 = ["172.31.255.0", "100.127.255.0", "192.168.255.0", "10.255.255.0"];
const nodeSubnets6 = ["fd5c:1ce:0:ffff::", "fd5c:1ce:1:ffff::", "fd5c:1ce:2:ffff::"];

// A fabric subnet that holds none of the pods' addresses (the manifests choose those freely).
function pickSubnet(candidates: string[], prefix: number, family: "ipv4" | "ipv6", ips: string[]): string {
  for (const net of candidates) {
    const block = new BlockList();
    block.addSubnet(net, prefix, family);
    if (!ips.some((ip) => block.check(ip, family))) return net;
  }
  throw new Error(`every candidate node subnet overlaps a pod address: ${candidates.join(", ")}`);
}

function hostAddress(net: string, family: "ipv4" | "ipv6", n: number): string {
  if (family === "ipv4") {
    if (n > 253) throw new Error("the lab supports at most 253 nodes");
    return net.replace(/\.0$/, `.${n}`);
  }
  return `${net}${n.toString(16)}`;
}

export function planLab(topology: LabTopology, runId: string): LabPlan {
  const given = [...(topology.nodeAddresses?.values() ?? [])];
  // Host-network pods have their node's address, which the given ones hold already.
  const v4s = [...topology.pods, ...given].flatMap((p) => (p.ipv4 ? [p.ipv4] : []));
  const v6s = [...topology.pods, ...given].flatMap((p) => (p.ipv6 ? [p.ipv6] : []));
  const subnet4 = pickSubnet(nodeSubnets4, 24, "ipv4", v4s);
  const subnet6 = pickSubnet(nodeSubnets6, 64, "ipv6", v6s);
  const fabricNetns = netnsName(runId, "fabric");
  const nodes: NodePlan[] = topology.nodes.map((name, i) => ({
    name,
    netns: netnsName(runId, "n", name),
    fabricIf: "fab0",
    fabricPeerIf: `n${i}`,
    fabricMac: mac(3, i),
    address4: topology.nodeAddresses?.get(name)?.ipv4 ?? hostAddress(subnet4, "ipv4", i + 1),
    address6: topology.nodeAddresses?.get(name)?.ipv6 ?? hostAddress(subnet6, "ipv6", i + 1),
  }));
  const nodeByName = new Map(nodes.map((n) => [n.name, n]));
  const pods: PodPlan[] = topology.pods.map((pod, i) => ({
    pod,
    netns: pod.hostNetwork
      ? nodeByName.get(pod.node)!.netns
      : netnsName(runId, "p", `${pod.namespace}.${pod.name}`),
    nodeNetns: nodeByName.get(pod.node)!.netns,
    hostIf: `slp${i}`,
    hostMac: mac(1, i),
    podMac: mac(2, i),
  }));
  // Addresses outside the picked subnets: a host route on the link, and one from every other node.
  const inSubnet4 = (ip: string) => ip.startsWith(subnet4.replace(/0$/, ""));
  const inSubnet6 = (ip: string) => ip.startsWith(subnet6);

  const links = new Map<string, string[]>();
  const config = new Map<string, string[]>();
  const sysctls = new Map<string, Record<string, string>>();
  const add = (m: Map<string, string[]>, ns: string, line: string) => {
    const list = m.get(ns) ?? [];
    list.push(line);
    m.set(ns, list);
  };

  add(links, fabricNetns, "link add br0 type bridge");
  add(config, fabricNetns, "link set lo up");
  add(config, fabricNetns, "link set br0 up");
  for (const n of nodes) {
    add(
      links,
      fabricNetns,
      `link add ${n.fabricPeerIf} type veth peer name ${n.fabricIf} address ${n.fabricMac} netns ${n.netns}`,
    );
    add(config, fabricNetns, `link set ${n.fabricPeerIf} master br0 up`);
    add(config, n.netns, "link set lo up");
    add(config, n.netns, `link set ${n.fabricIf} up`);
    add(config, n.netns, `addr add ${n.address4}/${inSubnet4(n.address4) ? 24 : 32} dev ${n.fabricIf}`);
    add(
      config,
      n.netns,
      `addr add ${n.address6}/${inSubnet6(n.address6) ? 64 : 128} dev ${n.fabricIf} nodad`,
    );
    // Static neighbours: no ARP/ND races while fresh links settle.
    for (const other of nodes) {
      if (other === n) continue;
      if (!inSubnet4(other.address4) || !inSubnet4(n.address4))
        add(config, n.netns, `route add ${other.address4}/32 dev ${n.fabricIf}`);
      if (!inSubnet6(other.address6) || !inSubnet6(n.address6))
        add(config, n.netns, `route add ${other.address6}/128 dev ${n.fabricIf}`);
      add(
        config,
        n.netns,
        `neigh replace ${other.address4} lladdr ${other.fabricMac} dev ${n.fabricIf} nud permanent`,
      );
      add(
        config,
        n.netns,
        `neigh replace ${other.address6} lladdr ${other.fabricMac} dev ${n.fabricIf} nud permanent`,
      );
    }
    sysctls.set(n.netns, {
      "net/ipv4/ip_forward": "1",
      "net/ipv6/conf/all/forwarding": "1",
      "net/ipv4/conf/all/rp_filter": "0",
      "net/ipv4/conf/default/rp_filter": "0",
    });
  }
  for (const p of pods) {
    // A host-network pod is its node: nothing to wire.
    if (p.pod.hostNetwork) continue;
    const node = nodeByName.get(p.pod.node)!;
    add(
      links,
      p.nodeNetns,
      `link add ${p.hostIf} address ${p.hostMac} type veth peer name eth0 address ${p.podMac} netns ${p.netns}`,
    );
    add(config, p.nodeNetns, `link set ${p.hostIf} up`);
    add(config, p.netns, "link set lo up");
    add(config, p.netns, "link set eth0 up");
    if (p.pod.ipv4) {
      add(config, p.netns, `addr add ${p.pod.ipv4}/32 dev eth0`);
      add(config, p.netns, `neigh replace ${GATEWAY4} lladdr ${p.hostMac} dev eth0 nud permanent`);
      add(config, p.netns, `route add default via ${GATEWAY4} dev eth0 onlink`);
      add(config, p.nodeNetns, `route add ${p.pod.ipv4}/32 dev ${p.hostIf}`);
      add(
        config,
        p.nodeNetns,
        `neigh replace ${p.pod.ipv4} lladdr ${p.podMac} dev ${p.hostIf} nud permanent`,
      );
    }
    if (p.pod.ipv6) {
      add(config, p.netns, `addr add ${p.pod.ipv6}/128 dev eth0 nodad`);
      add(config, p.netns, `neigh replace ${GATEWAY6} lladdr ${p.hostMac} dev eth0 nud permanent`);
      add(config, p.netns, `route add ::/0 via ${GATEWAY6} dev eth0`);
      add(config, p.nodeNetns, `route add ${p.pod.ipv6}/128 dev ${p.hostIf}`);
      add(
        config,
        p.nodeNetns,
        `neigh replace ${p.pod.ipv6} lladdr ${p.podMac} dev ${p.hostIf} nud permanent`,
      );
    }
    // Other nodes reach this pod through this node's fabric address.
    for (const other of nodes) {
      if (other === node) continue;
      if (p.pod.ipv4)
        add(config, other.netns, `route add ${p.pod.ipv4}/32 via ${node.address4} dev ${other.fabricIf}`);
      if (p.pod.ipv6)
        add(config, other.netns, `route add ${p.pod.ipv6}/128 via ${node.address6} dev ${other.fabricIf}`);
    }
  }
  return { runId, fabricNetns, nodes, pods, links, config, sysctls };
}

export function allNetns(plan: LabPlan): string[] {
  const pods = plan.pods.filter((p) => !p.pod.hostNetwork);
  return [plan.fabricNetns, ...plan.nodes.map((n) => n.netns), ...pods.map((p) => p.netns)];
}

export function probeAddress(pod: LabPod, family?: 4 | 6): string | undefined {
  if (family === 4) return pod.ipv4;
  if (family === 6) return pod.ipv6;
  return pod.primaryIp;
}

export function isV6(ip: string): boolean {
  return isIPv6(ip);
}
