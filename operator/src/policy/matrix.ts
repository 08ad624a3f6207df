// Pod-to-pod connectivity as the datapath would decide it: compile every node, then for each probe
// look up the source's egress on its node and the destination's ingress on its node, through the
// same longest-prefix lookups as the BPF program. Both must allow.
import type { Pod } from "../api/k8s.ts";
import { type CompileOptions, compile, type PolicyInputs } from "./compile.ts";
import { lookupIdentity, lookupVerdict } from "./lookup.ts";
import type { EndpointState, MapState, Verdict } from "./mapstate.ts";
import { protocolName, protocolNumber } from "./ports.ts";
import { isNetworkedPod, podIps } from "./universe.ts";

export type ProbeProtocol = "TCP" | "UDP" | "SCTP";

export interface MatrixRow {
  from: string;
  to: string;
  port: number;
  protocol: ProbeProtocol;
  verdict: Verdict;
}

export interface PortProtocol {
  port: number;
  protocol: ProbeProtocol;
}

export interface MatrixOptions extends Omit<CompileOptions, "node"> {
  // Probe these on every destination; default: each destination's container ports.
  ports?: PortProtocol[];
}

export function parsePortList(text: string): PortProtocol[] {
  return text
    .split(",")
    .filter((s) => s.trim() !== "")
    .map((s) => {
      const m = /^\s*(\d+)(?:\/(TCP|UDP|SCTP))?\s*$/i.exec(s);
      if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535)
        throw new Error(`invalid port ${JSON.stringify(s)}: want PORT[/TCP|UDP|SCTP]`);
      return { port: Number(m[1]), protocol: (m[2] ?? "TCP").toUpperCase() as ProbeProtocol };
    });
}

export function podKey(p: Pod): string {
  return `${p.metadata.namespace ?? "default"}/${p.metadata.name ?? ""}`;
}

export function containerPorts(p: Pod): PortProtocol[] {
  const seen = new Set<string>();
  const out: PortProtocol[] = [];
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

// An address of dst and one of src in the same family (the pair a connection would use).
export function addressPair(src: Pod, dst: Pod): { srcIp: string; dstIp: string } | undefined {
  for (const d of podIps(dst)) {
    const v6 = d.includes(":");
    const s = podIps(src).find((ip) => ip.includes(":") === v6);
    if (s) return { srcIp: s, dstIp: d };
  }
  return undefined;
}

export function computeMatrix(inputs: PolicyInputs, options: MatrixOptions = {}): MatrixRow[] {
  const pods = inputs.pods
    .filter((p) => isNetworkedPod(p) && p.spec?.nodeName)
    .sort((a, b) => (podKey(a) < podKey(b) ? -1 : 1));
  const states = new Map<string, MapState>();
  const endpoint = new Map<string, EndpointState>();
  for (const node of new Set(pods.map((p) => p.spec!.nodeName!))) {
    const { state } = compile(inputs, { ...options, node });
    states.set(node, state);
    for (const ep of state.endpoints) endpoint.set(ep.key, ep);
  }
  const rows: MatrixRow[] = [];
  for (const src of pods)
    for (const dst of pods) {
      if (src === dst) continue;
      const pair = addressPair(src, dst);
      if (!pair) continue;
      const srcState = states.get(src.spec!.nodeName!)!;
      const dstState = states.get(dst.spec!.nodeName!)!;
      const srcEp = endpoint.get(podKey(src))!;
      const dstEp = endpoint.get(podKey(dst))!;
      for (const pp of options.ports ?? containerPorts(dst)) {
        const proto = protocolNumber(pp.protocol);
        const egress = lookupVerdict(
          srcEp.policy,
          "egress",
          lookupIdentity(srcState.ipcache, pair.dstIp),
          proto,
          pp.port,
        );
        const ingress = lookupVerdict(
          dstEp.policy,
          "ingress",
          lookupIdentity(dstState.ipcache, pair.srcIp),
          proto,
          pp.port,
        );
        const verdict = egress.verdict === "allow" && ingress.verdict === "allow" ? "allow" : "deny";
        rows.push({ from: podKey(src), to: podKey(dst), port: pp.port, protocol: pp.protocol, verdict });
      }
    }
  return rows;
}
