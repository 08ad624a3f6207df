// What `sluice monitor` receives from an agent: one JSON object a line (NDJSON), either a named flow
// (a datapath verdict event with the pods, identities and the deciding policy rule spelled out) or the
// stream's stats (what was lost and where). The agent's monitor server writes these, the CLI reads them:
// this file is the contract between the two and imports nothing but types.
import type { Direction } from "../policy/mapstate.ts";
import type { RuleName } from "../policy/rule-names.ts";

// What the datapath did: allowed or denied; "audit" where the Audit policies would have decided this
// packet's fate otherwise (`enforced` says what the datapath did, `audit` what they would have).
export type FlowVerdict = "allowed" | "denied" | "audit";
export type EnforcedVerdict = Exclude<FlowVerdict, "audit">;

// What a peer address is, when no pod owns it: the identity's reserved base.
export type PeerEntity = "pod" | "host" | "remote-node" | "world" | "init" | "unmanaged";

export interface FlowPeer {
  address: string;
  port: number;
  identity: number;
  entity: PeerEntity;
  // "namespace/name" of the pod that owns the address (host-network pods are their node's).
  pod?: string;
  // host / remote-node: which node.
  node?: string;
  // A world address inside a policy CIDR: the narrowest such CIDR.
  cidr?: string;
  // With ?labels=true: the identity's labels (pod labels and the namespace).
  labels?: Record<string, string>;
}

// The rule of a policy that decided: its RuleRef, the rule's name where the kind has one, its action
// and the rule id the map entry and the event carry (as `sluice explain` names rules).
export type FlowRule = RuleName;

export interface FlowRecord {
  type: "flow";
  // Wall-clock time of the verdict, RFC 3339 with milliseconds.
  time: string;
  node: string;
  // The local endpoint's direction: ingress into it, egress out of it.
  direction: Direction;
  verdict: FlowVerdict;
  // The datapath's reason (sl_reason): policy, default, ct_reply, ct_established, source_spoofed, ...;
  // allow-localhost where the compiler's allow-localhost entry decided.
  reason: string;
  // "namespace/name" of the local endpoint the verdict was taken for.
  endpoint: string;
  source: FlowPeer;
  destination: FlowPeer;
  protocol: string;
  // Destination port; ICMP type << 8 | code.
  port: number;
  length: number;
  // What decided, for people: "NetworkPolicy/shop/db ingress[0]", "default deny (isolated by ...)".
  decidedBy: string;
  rule?: FlowRule;
  // reason default, verdict denied: the policies that isolate the endpoint in this direction.
  isolatedBy?: string[];
  // verdict audit: what the datapath did (decidedBy, rule) and what the Audit policies would have done.
  enforced?: EnforcedVerdict;
  audit?: AuditDecision;
}

// What the Audit policies would have decided: their rule, or the default of an endpoint they isolate.
export interface AuditDecision {
  verdict: EnforcedVerdict;
  decidedBy: string;
  rule?: FlowRule;
  isolatedBy?: string[];
}

export interface FlowCounts {
  allowed: number;
  denied: number;
}

// Sent first, every few seconds while following, and last: how complete the stream is.
export interface StatsRecord {
  type: "stats";
  time: string;
  node: string;
  // Event sampling in the datapath (sl_config): 1 of N allowed / denied packets, per-CPU rate limit.
  sampling: { allow: number; deny: number; perSecond: number };
  // Events the agent read from the ring buffer since it started.
  received: FlowCounts;
  // Packets the datapath judged since the agent started (node-wide verdict counters); with a sample
  // rate of 1, packets - received are what the rate limit or a full ring buffer dropped.
  judged?: FlowCounts;
  // Events that failed to decode or name (never expected; counted, not thrown).
  undecodable: number;
  // The agent's buffer of recent flows: its size, and how many older flows it has overwritten.
  buffered: number;
  capacity: number;
  overwritten: number;
  // Flows this stream skipped because its reader was slower than the events.
  readerDropped: number;
}

export type MonitorRecord = FlowRecord | StatsRecord;
