// A flow event (datapath/flow-events.ts) named with what the agent knows (view.ts): the local endpoint
// and the peer as pods or entities, and what decided, a policy rule by kind/namespace/name and index,
// the endpoint default (with the policies that isolate it) or the datapath's own reason. Pure.
import type { FlowEvent } from "../datapath/flow-events.ts";
import { ReservedIdentity, ReservedRuleId } from "../policy/mapstate.ts";
import { protocolName } from "../policy/ports.ts";
import { formatRule } from "../policy/rule-names.ts";
import type { AuditDecision, FlowPeer, FlowRecord, PeerEntity } from "./flow-record.ts";
import type { MonitorView } from "./view.ts";

const ENTITY_OF_BASE = new Map<number, PeerEntity>([
  [ReservedIdentity.HOST, "host"],
  [ReservedIdentity.REMOTE_NODE, "remote-node"],
  [ReservedIdentity.WORLD, "world"],
  [ReservedIdentity.INIT, "init"],
  [ReservedIdentity.UNMANAGED, "unmanaged"],
]);

// `view` undefined: before the agent's first pass, numbers only.
export function nameFlow(
  view: MonitorView | undefined,
  node: string,
  ev: FlowEvent,
  timeMs: number,
): FlowRecord {
  const endpoint = view?.endpoint(ev.epId)?.key ?? `endpoint:${ev.epId}`;
  const ingress = ev.direction === "ingress";
  const local: FlowPeer = {
    address: ingress ? ev.dst : ev.src,
    port: ingress ? ev.dport : ev.sport,
    identity: ev.epIdentity,
    entity: "pod",
    pod: endpoint,
  };
  const peer = peerOf(view, node, ingress ? ev.src : ev.dst, ingress ? ev.sport : ev.dport, ev.peerIdentity);
  const verdict = ev.verdict === "deny" ? "denied" : "allowed";
  const decision = decisionOf(view, ev, endpoint, verdict);
  const audit = ev.audit && auditOf(view, ev.audit, endpoint, ev.direction);
  return {
    type: "flow",
    time: new Date(timeMs).toISOString(),
    node,
    direction: ev.direction,
    verdict: audit ? "audit" : verdict,
    reason: ev.reason,
    endpoint,
    source: ingress ? peer : local,
    destination: ingress ? local : peer,
    protocol: protocolName(ev.protocol),
    port: ev.dport,
    length: ev.length,
    ...decision,
    ...(audit ? { enforced: verdict, audit } : {}),
  };
}

// The Audit policies' decision: a rule of theirs, or (rule id 0) the default of an endpoint they isolate.
function auditOf(
  view: MonitorView | undefined,
  a: { verdict: "allow" | "deny"; ruleId: number },
  endpoint: string,
  direction: FlowRecord["direction"],
): AuditDecision {
  const verdict = a.verdict === "deny" ? "denied" : "allowed";
  if (a.ruleId === ReservedRuleId.DEFAULT) {
    if (verdict === "allowed") return { verdict, decidedBy: "default allow (not isolated)" };
    const isolatedBy = view?.isolatedBy(endpoint, direction, true) ?? [];
    return {
      verdict,
      decidedBy:
        isolatedBy.length > 0 ? `default deny (isolated by ${isolatedBy.join(", ")})` : "default deny",
      isolatedBy,
    };
  }
  const rule = view?.rule(a.ruleId);
  if (!rule) return { verdict, decidedBy: `rule ${a.ruleId} (not among the agent's policies)` };
  return { verdict, decidedBy: formatRule(rule), rule };
}

function peerOf(
  view: MonitorView | undefined,
  node: string,
  address: string,
  port: number,
  identity: number,
): FlowPeer {
  const pod = view?.podAt(address);
  const p = view?.peerIdentity(identity);
  const entity = ENTITY_OF_BASE.get(p?.base ?? identity) ?? (pod || identity !== 0 ? "pod" : "world");
  const out: FlowPeer = { address, port, identity, entity };
  if (entity === "pod" && pod) out.pod = pod;
  if (entity === "host") out.node = node;
  if (entity === "remote-node") {
    const other = view?.nodeAt(address);
    if (other) out.node = other;
  }
  if (entity === "world" && p && p.prefixes.length > 0) out.cidr = narrowest(p.prefixes);
  return out;
}

function narrowest(prefixes: readonly string[]): string {
  const len = (c: string) => Number(c.slice(c.lastIndexOf("/") + 1));
  return prefixes.reduce((a, b) => (len(b) > len(a) ? b : a));
}

function decisionOf(
  view: MonitorView | undefined,
  ev: FlowEvent,
  endpoint: string,
  verdict: FlowRecord["verdict"],
): Pick<FlowRecord, "decidedBy" | "rule" | "isolatedBy"> {
  if (ev.reason !== "policy" && ev.reason !== "default") return { decidedBy: ev.reason };
  // An entry with rule id 0 is the endpoint default compiled in (no rule matched that port).
  if (ev.reason === "default" || ev.ruleId === ReservedRuleId.DEFAULT) {
    if (verdict === "allowed") return { decidedBy: "default allow (not isolated)" };
    const isolatedBy = view?.isolatedBy(endpoint, ev.direction) ?? [];
    return {
      decidedBy:
        isolatedBy.length > 0 ? `default deny (isolated by ${isolatedBy.join(", ")})` : "default deny",
      isolatedBy,
    };
  }
  const rule = view?.rule(ev.ruleId);
  if (!rule) return { decidedBy: `rule ${ev.ruleId} (not among the agent's policies)` };
  return { decidedBy: formatRule(rule), rule };
}
