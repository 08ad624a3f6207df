// The node's own addresses, as its network stack has them (the agent runs in the node's network
// namespace): the sources the node uses when it opens a connection to one of its pods (kubelet
// probes). The route to a pod's host-side veth has no source address of its own, so the kernel picks
// one of the node's other addresses: the primary address of the main interface, a CNI gateway
// address (cni0, cilium_host, vxlan.calico), whatever the node is configured with. The compiler maps
// all of them to identity host (CompileOptions.hostAddresses), beside the Node object's addresses.
import { type NetworkInterfaceInfo, networkInterfaces } from "node:os";
import { parseIp } from "../policy/cidr.ts";

// Loopback never reaches a pod (it is martian off lo); link-local addresses are per link and never
// the source towards a pod's routable address. Everything else is kept.
export function isNodeSourceAddress(
  a: Pick<NetworkInterfaceInfo, "address" | "family" | "internal">,
): boolean {
  if (a.internal) return false;
  const ip = parseIp(a.address);
  if (!ip) return false;
  if (ip.family === 4) return ip.addr >> 24n !== 127n && ip.addr >> 16n !== 0xa9fen; // 127/8, 169.254/16
  return ip.addr !== 1n && ip.addr >> 118n !== 0x3fan; // ::1, fe80::/10
}

// Every such address of the current network namespace, sorted (one string per address).
export function nodeAddresses(
  interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces(),
): string[] {
  const out = new Set<string>();
  for (const list of Object.values(interfaces))
    for (const a of list ?? []) if (isNodeSourceAddress(a)) out.add(a.address.toLowerCase());
  return [...out].sort();
}
