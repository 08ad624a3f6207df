// Pod-to-pod connectivity as the datapath would decide it: compile every node, then for each probe
// look up the source's egress on its node and the destination's ingress on its node, through the
// same longest-prefix lookups as the BPF program. Both must allow.
import { type Pod, podKey } from "../api/k8s.ts";
import type { MatrixRow, ProbePort, ProbeProtocol } from "../api/matrix-rows.ts";
import { type CompileOptions, compile, type PolicyInputs } from "./compile.ts";
import { lookupIdentity, lookupVerdict } from "./lookup.ts";
import type { EndpointState, MapState } from "./mapstate.ts";
import { protocolName, protocolNumber } from "./ports.ts";
import { isNetworkedPod, podIps } from "./universe.ts";

export interface MatrixOptions extends Omit<CompileOptions, "node"> {
  // Probe these on every destination; default: each destination's container ports.
  ports?: ProbePort[];
}

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
