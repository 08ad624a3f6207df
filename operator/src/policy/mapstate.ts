// The desired datapath state: what the compiler produces and the agent writes into the BPF maps.
// It is independent of byte layouts (those come from the BPF object's BTF in datapath/); it only
// mirrors the lookup the BPF program performs, so lookup.ts can simulate it exactly.

export type Direction = "ingress" | "egress";
export type Verdict = "allow" | "deny";

// The compiler's own copies of constants that bpf/include/sluice_shared.h defines for the programs: the
// compiler does not import the datapath layout. test/unit/policy-constants.test.ts holds each of them to
// the BTF-generated layout, so a drift fails there.

// IP protocol numbers, 0 for any (enum sl_proto).
export const Protocol = { ANY: 0, ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58, SCTP: 132 } as const;

// Reserved identities (enum sl_identity).
export const ReservedIdentity = {
  ANY: 0,
  HOST: 1,
  WORLD: 2,
  UNMANAGED: 3,
  INIT: 5,
  REMOTE_NODE: 6,
  CLUSTER_MIN: 256,
} as const;

// Rule ids the compiler gives entries that no policy rule wrote (policy rules get hashes of their
// RuleRef, never these; normalize.ts ruleId). Flow events carry them like any rule id.
export const ReservedRuleId = {
  // The endpoint default decided (no entry matched).
  DEFAULT: 0,
  // Allow-localhost: the local node (identity HOST) may open connections into every local endpoint,
  // whatever its policies say (CompileOptions.allowLocalhost "always").
  LOCALHOST: 0xffffffff,
} as const;

// Whether the local node reaches its own pods regardless of policy ("always", the default: kubelet
// probes keep working under default deny) or only as policies allow the `host` entity ("policy").
export const ALLOW_LOCALHOST_MODES = ["always", "policy"] as const;
export type AllowLocalhost = (typeof ALLOW_LOCALHOST_MODES)[number];

// One policy map entry of one endpoint. The BPF program looks up (identity, proto, port) with
// longest-prefix match: first with the peer's identity, then with identity ANY; the first hit decides.
// protocol 0 matches any protocol (and port is ignored); portPrefixLen is how many leading bits of
// the 16-bit port must match (0 = any port of that protocol). For ICMP/ICMPv6 the port is type << 8 | code.
export interface PolicyEntry {
  direction: Direction;
  identity: number;
  protocol: number;
  port: number;
  portPrefixLen: number;
  verdict: Verdict;
  // Opaque id of the rule that decided, reported in flow events; see RuleTable.
  ruleId: number;
  // Present only where the Audit policies (spec.enforcement: Audit) change this entry's fate: the verdict
  // and rule its packets would get if those policies were enforced. The datapath enforces `verdict` and
  // reports (event, counter) every packet that takes this entry.
  audit?: AuditOutcome;
}

// What the Audit policies would decide instead of the enforced verdict.
export interface AuditOutcome {
  verdict: Verdict;
  ruleId: number;
}

export interface EndpointPolicy {
  // When no entry matches: deny if the endpoint is isolated in that direction, else allow.
  defaultDeny: { ingress: boolean; egress: boolean };
  // The default if the Audit policies were enforced (an Audit policy can isolate the endpoint), where it
  // differs from defaultDeny; absent: the same.
  auditDefaultDeny?: { ingress: boolean; egress: boolean };
  entries: PolicyEntry[];
}

// A local endpoint (pod on this node) with its compiled policy.
export interface EndpointState {
  // Stable key "namespace/name".
  key: string;
  // Numeric id, unique on the node, used in map keys.
  id: number;
  identity: number;
  policy: EndpointPolicy;
  // The pod's own addresses: the datapath drops what the pod sends from any other (and ARP or neighbor
  // advertisements that claim another). The agent always gives them; without them (tools, tests that
  // write policy only) the endpoint's sources are not checked.
  addresses?: readonly string[];
}

// An ipcache entry: every address in cidr has this identity. Misses mean world.
export interface IpcacheEntry {
  cidr: string;
  identity: number;
}

export interface MapState {
  ipcache: IpcacheEntry[];
  endpoints: EndpointState[];
  // The policy an endpoint enforces when its own does not fit in the node's policy map (the map writer
  // fails it closed); the compiler's PolicyCompiler.failClosed. Absent: deny both ways, keeping only
  // the endpoint's allow-localhost entries.
  failClosed?: EndpointPolicy;
}

// Canonical string for one policy entry's key; two entries with the same key cannot coexist. Joined,
// one flat string: a template literal's cons strings cost more than the key (cidr.ts formatPrefix).
export function policyEntryKey(
  e: Pick<PolicyEntry, "direction" | "identity" | "protocol" | "port" | "portPrefixLen">,
): string {
  if (e.protocol === 0) return [e.direction, e.identity, "*"].join("|");
  return [e.direction, e.identity, e.protocol, `${e.port}/${e.portPrefixLen}`].join("|");
}
