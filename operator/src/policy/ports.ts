// Port specs → protocol/port ranges, named ports resolved against a pod's container ports.
import type { Pod } from "../api/k8s.ts";
import { Protocol } from "./mapstate.ts";
import type { PortSpec, ProtocolName } from "./normalize.ts";

// proto 0 = any protocol (then lo..hi is the whole port space).
export interface PortRange {
  proto: number;
  lo: number;
  hi: number;
}

export interface NamedPort {
  port: number;
  protocol: number;
}
export type NamedPorts = ReadonlyMap<string, readonly NamedPort[]>;

const BY_NAME: Record<ProtocolName, number> = {
  TCP: Protocol.TCP,
  UDP: Protocol.UDP,
  SCTP: Protocol.SCTP,
  ICMP: Protocol.ICMP,
  ICMPv6: Protocol.ICMPV6,
  ANY: Protocol.ANY,
};
const PORT_PROTOCOLS = [Protocol.TCP, Protocol.UDP, Protocol.SCTP];

export function protocolNumber(name: string | undefined): number {
  return BY_NAME[(name ?? "TCP") as ProtocolName] ?? Protocol.TCP;
}

export function protocolName(n: number): string {
  for (const [k, v] of Object.entries(BY_NAME)) if (v === n) return k;
  return String(n);
}

// Peer pods share one frozen container list per distinct spec (kube/cache-view.ts peerPodView): the
// named ports of a shared list are computed once, not once per pod of a 50,000-pod universe, and so
// is their key (namedPortsKey), which the universe asks for every address.
const ofSharedContainers = new WeakMap<object, NamedPorts>();
const keyOfShared = new WeakMap<NamedPorts, string>();

export function namedPortsOf(pod: Pod): NamedPorts {
  const containers = pod.spec?.containers;
  const shared = containers !== undefined && Object.isFrozen(containers);
  const known = shared ? ofSharedContainers.get(containers) : undefined;
  if (known) return known;
  const out = new Map<string, NamedPort[]>();
  for (const c of containers ?? [])
    for (const p of c.ports ?? []) {
      if (!p.name) continue;
      const list = out.get(p.name) ?? [];
      list.push({ port: p.containerPort, protocol: protocolNumber(p.protocol) });
      out.set(p.name, list);
    }
  if (shared) {
    ofSharedContainers.set(containers, out);
    keyOfShared.set(out, keyOf(out));
  }
  return out;
}

export function namedPortsKey(named: NamedPorts | undefined): string {
  if (!named || named.size === 0) return "";
  return keyOfShared.get(named) ?? keyOf(named);
}

function keyOf(named: NamedPorts): string {
  return [...named.entries()]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([n, ps]) => `${n}=${ps.map((p) => `${p.port}/${p.protocol}`).join("+")}`)
    .join(",");
}

export function usesNamedPorts(ports: readonly PortSpec[] | undefined): boolean {
  return (ports ?? []).some((p) => typeof p.port === "string");
}

// `named` resolves port names: the destination pod's ports (undefined when the destination is not
// a pod, so named ports match nothing).
export function resolvePorts(
  ports: readonly PortSpec[] | undefined,
  named: NamedPorts | undefined,
): PortRange[] {
  if (!ports) return [{ proto: Protocol.ANY, lo: 0, hi: 0xffff }];
  const out: PortRange[] = [];
  for (const p of ports) {
    const proto = BY_NAME[p.protocol] ?? Protocol.TCP;
    if (proto === Protocol.ICMP || proto === Protocol.ICMPV6) {
      if (p.type === undefined) out.push({ proto, lo: 0, hi: 0xffff });
      else if (p.code === undefined) out.push({ proto, lo: p.type << 8, hi: (p.type << 8) | 0xff });
      else out.push({ proto, lo: (p.type << 8) | p.code, hi: (p.type << 8) | p.code });
      continue;
    }
    if (typeof p.port === "string") {
      for (const np of named?.get(p.port) ?? [])
        if (proto === Protocol.ANY || np.protocol === proto)
          out.push({ proto: np.protocol, lo: np.port, hi: np.port });
      continue;
    }
    const protos = proto === Protocol.ANY ? PORT_PROTOCOLS : [proto];
    if (p.port === undefined) {
      if (proto === Protocol.ANY) out.push({ proto: Protocol.ANY, lo: 0, hi: 0xffff });
      else out.push({ proto, lo: 0, hi: 0xffff });
      continue;
    }
    const hi = p.endPort !== undefined && p.endPort >= p.port ? p.endPort : p.port;
    for (const pr of protos) out.push({ proto: pr, lo: p.port, hi });
  }
  return out;
}

export function rangesKey(ranges: readonly PortRange[]): string {
  return ranges.map((r) => `${r.proto}:${r.lo}-${r.hi}`).join(",");
}

export function inRanges(ranges: readonly PortRange[], proto: number, port: number): boolean {
  for (const r of ranges)
    if ((r.proto === 0 || r.proto === proto) && port >= r.lo && port <= r.hi) return true;
  return false;
}
