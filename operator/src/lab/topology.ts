// The lab's view of a cluster: nodes and pods taken from ordinary Namespace, Node and Pod manifests
// (as `kubectl get ns,nodes,pods -A -o yaml` prints them). Pure: no kernel, no files.
//
// A Node object's InternalIP addresses (one per family) become that lab node's own address; nodes
// without one get an address the lab picks. A host-network pod (spec.hostNetwork) lives in its node's
// network namespace and carries its node's address: its status.podIPs when given (a kubelet reports
// the node's), which then are the node's address, else the Node object's.
import { isIP } from "node:net";
import type { ProbePort } from "../api/matrix-rows.ts";

// cli/probe.ts imports the old name; this line goes when it imports ProbePort from api/matrix-rows.ts.

export interface LabPod {
  namespace: string;
  name: string;
  // "namespace/name", the key used in matrix rows.
  key: string;
  node: string;
  ipv4?: string;
  ipv6?: string;
  // status.podIP when given, else the first of podIPs: the address probes go to by default.
  primaryIp: string;
  ports: ProbePort[];
  // In its node's network namespace, with the node's address (no veth, no endpoint).
  hostNetwork: boolean;
}

export interface NodeAddresses {
  ipv4?: string;
  ipv6?: string;
}

export interface LabTopology {
  nodes: string[];
  pods: LabPod[];
  // The nodes' own addresses where the manifests give them (Node InternalIP, host-network pods).
  nodeAddresses: Map<string, NodeAddresses>;
}

export class TopologyError extends Error {
  override name = "TopologyError";
}

interface Loose {
  [key: string]: unknown;
}

function isObject(v: unknown): v is Loose {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}

// Expands `kind: List` (and `items` of *List kinds kubectl prints) into the objects they hold.
export function flattenObjects(objects: readonly unknown[]): Loose[] {
  const out: Loose[] = [];
  const visit = (o: unknown): void => {
    if (!isObject(o)) return;
    const kind = str(o.kind);
    if (kind?.endsWith("List") && Array.isArray(o.items)) {
      for (const item of o.items) visit(item);
      return;
    }
    out.push(o);
  };
  for (const o of objects) visit(o);
  return out;
}

function podPorts(pod: Loose, where: string): ProbePort[] {
  const spec = isObject(pod.spec) ? pod.spec : {};
  const ports: ProbePort[] = [];
  const seen = new Set<string>();
  // Only regular containers listen for traffic (as `sluice matrix` counts them).
  for (const field of ["containers"] as const) {
    const containers = spec[field];
    if (!Array.isArray(containers)) continue;
    containers.forEach((c, ci) => {
      if (!isObject(c) || !Array.isArray(c.ports)) return;
      c.ports.forEach((p, pi) => {
        const at = `${where}: spec.${field}[${ci}].ports[${pi}]`;
        if (!isObject(p)) throw new TopologyError(`${at}: not an object`);
        const port = p.containerPort;
        if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535)
          throw new TopologyError(`${at}.containerPort: must be an integer in 1..65535`);
        const protocol = p.protocol ?? "TCP";
        if (protocol !== "TCP" && protocol !== "UDP" && protocol !== "SCTP")
          throw new TopologyError(`${at}.protocol: must be TCP, UDP or SCTP`);
        const k = `${port}/${protocol}`;
        if (seen.has(k)) return;
        seen.add(k);
        ports.push({ port, protocol });
      });
    });
  }
  return ports;
}

// One address per family, IPv6 lower-cased; what is wrong names `field` (a list of addresses).
function byFamily(ips: readonly string[], where: string, field: string): NodeAddresses {
  let ipv4: string | undefined;
  let ipv6: string | undefined;
  for (const ip of ips) {
    const family = isIP(ip);
    if (family === 4 && !ipv4) ipv4 = ip;
    else if (family === 6 && !ipv6) ipv6 = ip.toLowerCase();
    else if (family === 0) throw new TopologyError(`${where}: ${field}: "${ip}" is not an IP address`);
    else throw new TopologyError(`${where}: ${field}: more than one IPv${family} address`);
  }
  return { ipv4, ipv6 };
}

function podIpList(pod: Loose, where: string): string[] {
  const status = isObject(pod.status) ? pod.status : {};
  const ips: string[] = [];
  const podIP = str(status.podIP);
  if (podIP) ips.push(podIP);
  if (Array.isArray(status.podIPs)) {
    status.podIPs.forEach((e, i) => {
      const ip = isObject(e) ? str(e.ip) : undefined;
      if (!ip) throw new TopologyError(`${where}: status.podIPs[${i}].ip: missing`);
      if (!ips.includes(ip)) ips.push(ip);
    });
  }
  return ips;
}

// A Node object's InternalIP addresses (ExternalIP and host names are not the lab's business).
function nodeObjectAddresses(node: Loose, where: string): NodeAddresses {
  const status = isObject(node.status) ? node.status : {};
  const list = Array.isArray(status.addresses) ? status.addresses : [];
  const ips = list
    .filter((a): a is Loose => isObject(a) && a.type === "InternalIP")
    .map((a) => str(a.address) ?? "");
  return byFamily(ips, where, "status.addresses (InternalIP)");
}

function sameAddresses(a: NodeAddresses, b: NodeAddresses): boolean {
  return (!a.ipv4 || !b.ipv4 || a.ipv4 === b.ipv4) && (!a.ipv6 || !b.ipv6 || a.ipv6 === b.ipv6);
}

// Builds the topology from every Pod and Node in the objects (other kinds are ignored: policies travel
// in the same files). Pods without a node cannot be placed and are errors.
export function topologyFromObjects(objects: readonly unknown[]): LabTopology {
  const pods: LabPod[] = [];
  const nodes: string[] = [];
  const byIp = new Map<string, string>();
  const keys = new Set<string>();
  const all = flattenObjects(objects);
  // Node objects first: host-network pods are checked against their addresses.
  const nodeAddresses = new Map<string, NodeAddresses>();
  for (const o of all) {
    if (o.kind !== "Node") continue;
    const name = str(isObject(o.metadata) ? o.metadata.name : undefined);
    if (!name) throw new TopologyError("Node: metadata.name: missing");
    const a = nodeObjectAddresses(o, `Node/${name}`);
    if (a.ipv4 || a.ipv6) nodeAddresses.set(name, a);
  }
  const hostPorts = new Map<string, string>();
  for (const o of all) {
    if (o.kind !== "Pod") continue;
    const meta = isObject(o.metadata) ? o.metadata : {};
    const name = str(meta.name);
    const namespace = str(meta.namespace) ?? "default";
    if (!name) throw new TopologyError(`Pod in namespace ${namespace}: metadata.name: missing`);
    const key = `${namespace}/${name}`;
    const where = `Pod/${key}`;
    if (keys.has(key)) throw new TopologyError(`${where}: defined twice`);
    keys.add(key);
    const spec = isObject(o.spec) ? o.spec : {};
    const hostNetwork = spec.hostNetwork === true;
    const node = str(spec.nodeName);
    if (!node)
      throw new TopologyError(`${where}: spec.nodeName: missing (the lab places pods on nodes by it)`);
    const ports = podPorts(o, where);
    if (hostNetwork) {
      const pod = hostNetworkPod(o, where, node, ports, nodeAddresses, hostPorts);
      if (!nodes.includes(node)) nodes.push(node);
      pods.push({ namespace, name, key, node, ...pod, ports, hostNetwork });
      continue;
    }
    const ips = podIpList(o, where);
    if (ips.length === 0)
      throw new TopologyError(`${where}: status.podIP: missing (the lab needs the pod's address)`);
    const { ipv4, ipv6 } = byFamily(ips, where, "status.podIPs");
    const primary = isIP(ips[0]) === 6 ? ips[0].toLowerCase() : ips[0];
    for (const ip of [ipv4, ipv6]) {
      if (!ip) continue;
      const other = byIp.get(ip);
      if (other)
        throw new TopologyError(`${where}: status.podIPs: ${ip} is also the address of Pod/${other}`);
      byIp.set(ip, key);
    }
    if (!nodes.includes(node)) nodes.push(node);
    pods.push({ namespace, name, key, node, ipv4, ipv6, primaryIp: primary, ports, hostNetwork });
  }
  if (pods.length === 0) throw new TopologyError("no Pod objects in the input: the lab has nothing to build");
  for (const [node, a] of nodeAddresses)
    for (const ip of [a.ipv4, a.ipv6]) {
      const other = ip ? byIp.get(ip) : undefined;
      if (other) throw new TopologyError(`Node/${node}: ${ip} is also the address of Pod/${other}`);
    }
  nodes.sort();
  pods.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { nodes, pods, nodeAddresses };
}

// A host-network pod: its node's address (the pod's status.podIPs, which then are the node's, or the
// Node object's), and ports no other host-network pod of the node listens on (one namespace).
function hostNetworkPod(
  o: Loose,
  where: string,
  node: string,
  ports: readonly ProbePort[],
  nodeAddresses: Map<string, NodeAddresses>,
  hostPorts: Map<string, string>,
): Pick<LabPod, "ipv4" | "ipv6" | "primaryIp"> {
  const ips = podIpList(o, where);
  const own = byFamily(ips, where, "status.podIPs");
  const known = nodeAddresses.get(node);
  if (known && !sameAddresses(own, known))
    throw new TopologyError(
      `${where}: status.podIPs: a host-network pod has its node's address, and ${ips.join(", ")} is not node ${node}'s (${[known.ipv4, known.ipv6].filter(Boolean).join(", ")})`,
    );
  const a: NodeAddresses = { ipv4: own.ipv4 ?? known?.ipv4, ipv6: own.ipv6 ?? known?.ipv6 };
  if (!a.ipv4 && !a.ipv6)
    throw new TopologyError(
      `${where}: spec.hostNetwork: the lab needs node ${node}'s address: give the pod's status.podIP (as a kubelet reports it) or a Node ${node} with an InternalIP in status.addresses`,
    );
  nodeAddresses.set(node, a);
  for (const p of ports) {
    const k = `${node} ${p.port}/${p.protocol}`;
    const other = hostPorts.get(k);
    if (other)
      throw new TopologyError(
        `${where}: port ${p.port}/${p.protocol}: Pod/${other} listens on it too, in the same node network namespace`,
      );
    hostPorts.set(k, where.slice("Pod/".length));
  }
  const first = ips[0] ?? a.ipv4 ?? a.ipv6!;
  return { ...a, primaryIp: isIP(first) === 6 ? first.toLowerCase() : first };
}
