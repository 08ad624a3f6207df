// The lab's view of a cluster: nodes and pods taken from ordinary Namespace and Pod manifests (as
// `kubectl get ns,pods -A -o yaml` prints them). Pure: no kernel, no files.
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
}

export interface LabTopology {
  nodes: string[];
  pods: LabPod[];
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

function podAddresses(pod: Loose, where: string): { ipv4?: string; ipv6?: string; primary: string } {
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
  if (ips.length === 0)
    throw new TopologyError(`${where}: status.podIP: missing (the lab needs the pod's address)`);
  let ipv4: string | undefined;
  let ipv6: string | undefined;
  for (const ip of ips) {
    const family = isIP(ip);
    if (family === 4 && !ipv4) ipv4 = ip;
    else if (family === 6 && !ipv6) ipv6 = ip.toLowerCase();
    else if (family === 0) throw new TopologyError(`${where}: status.podIPs: "${ip}" is not an IP address`);
    else throw new TopologyError(`${where}: status.podIPs: more than one IPv${family} address`);
  }
  const primary = isIP(ips[0]) === 6 ? ips[0].toLowerCase() : ips[0];
  return { ipv4, ipv6, primary };
}

// Builds the topology from every Pod in the objects (other kinds are ignored: policies travel in the
// same files). Pods in hostNetwork or without a node cannot be simulated and are errors.
export function topologyFromObjects(objects: readonly unknown[]): LabTopology {
  const pods: LabPod[] = [];
  const nodes: string[] = [];
  const byIp = new Map<string, string>();
  const keys = new Set<string>();
  for (const o of flattenObjects(objects)) {
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
    if (spec.hostNetwork === true)
      throw new TopologyError(`${where}: spec.hostNetwork: not supported by the lab`);
    const node = str(spec.nodeName);
    if (!node)
      throw new TopologyError(`${where}: spec.nodeName: missing (the lab places pods on nodes by it)`);
    const { ipv4, ipv6, primary } = podAddresses(o, where);
    for (const ip of [ipv4, ipv6]) {
      if (!ip) continue;
      const other = byIp.get(ip);
      if (other)
        throw new TopologyError(`${where}: status.podIPs: ${ip} is also the address of Pod/${other}`);
      byIp.set(ip, key);
    }
    if (!nodes.includes(node)) nodes.push(node);
    pods.push({ namespace, name, key, node, ipv4, ipv6, primaryIp: primary, ports: podPorts(o, where) });
  }
  if (pods.length === 0) throw new TopologyError("no Pod objects in the input: the lab has nothing to build");
  nodes.sort();
  pods.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { nodes, pods };
}
