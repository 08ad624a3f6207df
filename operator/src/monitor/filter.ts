// Which flows a monitor stream carries: one parser for the CLI's flags and the agent's query parameters
// (the CLI checks its flags with it before connecting, the agent applies the same filter to its
// buffer), and one matcher. A flow matches when it passes every filter given. Pure.
import { parsePorts, PortsError, type ProbePort } from "../api/matrix-rows.ts";
import type { FlowPeer, FlowRecord, FlowVerdict } from "./flow-record.ts";

// The query parameters of GET /v1/flows, named as the CLI's flags.
export const FILTER_PARAMS = [
  "verdict",
  "namespace",
  "pod",
  "from",
  "to",
  "port",
  "policy",
  "since",
] as const;
export type FilterParam = (typeof FILTER_PARAMS)[number];

const VERDICTS: readonly FlowVerdict[] = ["allowed", "denied", "audit"];

export interface FlowFilter {
  verdicts?: ReadonlySet<FlowVerdict>;
  // Source or destination pod in this namespace.
  namespace?: string;
  // Source or destination is this peer; from / to: the source / the destination is.
  pod?: string;
  from?: string;
  to?: string;
  ports?: readonly ProbePort[];
  // The deciding rule's policy, or one that isolates the endpoint of a default deny (or the Audit ones').
  policy?: string;
  // Flows at or after this time (ms since the epoch).
  sinceMs?: number;
}

export class FilterError extends Error {
  override name = "FilterError";
  readonly param: FilterParam;
  constructor(param: FilterParam, message: string) {
    super(`--${param}: ${message}`);
    this.param = param;
  }
}

// `get` reads one parameter (a flag's value, a query parameter). A pod or peer without a namespace
// ("db") is in `namespace` when one is given.
export function parseFlowFilter(get: (p: FilterParam) => string | undefined): FlowFilter {
  const f: FlowFilter = {};
  const verdict = get("verdict");
  if (verdict !== undefined) {
    const vs = verdict.split(",").map((v) => v.trim().toLowerCase());
    for (const v of vs)
      if (!VERDICTS.includes(v as FlowVerdict))
        throw new FilterError("verdict", `${JSON.stringify(v)} is not one of ${VERDICTS.join(", ")}`);
    f.verdicts = new Set(vs as FlowVerdict[]);
  }
  const ns = get("namespace");
  if (ns !== undefined) {
    if (ns === "" || ns.includes("/"))
      throw new FilterError("namespace", `${JSON.stringify(ns)} is not a namespace`);
    f.namespace = ns;
  }
  for (const p of ["pod", "from", "to"] as const) {
    const v = get(p);
    if (v === undefined) continue;
    if (v === "") throw new FilterError(p, "a value is required (namespace/pod, an entity, an address)");
    f[p] = !v.includes("/") && ns !== undefined && p === "pod" ? `${ns}/${v}` : v;
  }
  const port = get("port");
  if (port !== undefined) {
    try {
      f.ports = parsePorts(port);
    } catch (e) {
      if (!(e instanceof PortsError)) throw e;
      throw new FilterError("port", e.message.replace(/^--ports: /, ""));
    }
  }
  const policy = get("policy");
  if (policy !== undefined) {
    if (policy === "")
      throw new FilterError("policy", "a value is required (Kind/namespace/name, namespace/name or name)");
    f.policy = policy;
  }
  const since = get("since");
  if (since !== undefined) {
    const ms = /^\d+$/.test(since) ? Number(since) : Date.parse(since);
    if (!Number.isFinite(ms))
      throw new FilterError(
        "since",
        `${JSON.stringify(since)} is not a time (RFC 3339 or ms since the epoch)`,
      );
    f.sinceMs = ms;
  }
  return f;
}

// The filter as query parameters (the CLI → the agent); since as ms since the epoch.
export function filterQuery(f: FlowFilter): URLSearchParams {
  const q = new URLSearchParams();
  if (f.verdicts) q.set("verdict", [...f.verdicts].join(","));
  if (f.namespace !== undefined) q.set("namespace", f.namespace);
  for (const p of ["pod", "from", "to", "policy"] as const) {
    const v = f[p];
    if (v !== undefined) q.set(p, v);
  }
  if (f.ports) q.set("port", f.ports.map((p) => `${p.port}/${p.protocol}`).join(","));
  if (f.sinceMs !== undefined) q.set("since", String(f.sinceMs));
  return q;
}

// "ns/pod", an entity (world, host, remote-node), an address, a policy CIDR or a node's name.
export function peerMatches(peer: FlowPeer, v: string): boolean {
  return (
    v === peer.pod ||
    v === peer.address ||
    v === peer.entity ||
    v === peer.cidr ||
    (v === peer.node && !peer.pod)
  );
}

function policyMatches(key: string, v: string): boolean {
  return key === v || key.endsWith(`/${v}`);
}

export function matchesFlow(r: FlowRecord, f: FlowFilter): boolean {
  // An audit flow is also what the datapath did with it: --verdict denied lists every drop.
  if (f.verdicts && !f.verdicts.has(r.verdict) && !(r.enforced && f.verdicts.has(r.enforced))) return false;
  if (f.sinceMs !== undefined && Date.parse(r.time) < f.sinceMs) return false;
  if (f.namespace !== undefined) {
    const inNs = (p: FlowPeer) => p.pod?.startsWith(`${f.namespace}/`) ?? false;
    if (!inNs(r.source) && !inNs(r.destination)) return false;
  }
  if (f.pod !== undefined && !peerMatches(r.source, f.pod) && !peerMatches(r.destination, f.pod))
    return false;
  if (f.from !== undefined && !peerMatches(r.source, f.from)) return false;
  if (f.to !== undefined && !peerMatches(r.destination, f.to)) return false;
  if (f.ports && !f.ports.some((p) => p.port === r.port && p.protocol === r.protocol)) return false;
  if (f.policy !== undefined) {
    const v = f.policy;
    const keys = [
      ...(r.rule ? [r.rule.policy] : []),
      ...(r.isolatedBy ?? []),
      ...(r.audit?.rule ? [r.audit.rule.policy] : []),
      ...(r.audit?.isolatedBy ?? []),
    ];
    if (!keys.some((k) => policyMatches(k, v))) return false;
  }
  return true;
}
