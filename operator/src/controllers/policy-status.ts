// Policy status aggregation, the pure part: from a policy, the pods it selects and the nodes'
// reports, the status the policy should show. Deterministic in its inputs, so two operator replicas
// (or one before and after a restart) compute the same status and a failover writes nothing new.
// lastTransitionTime is carried over from the current status while a condition's status is
// unchanged, so recomputing never changes it.
import type { LabelSelector } from "../api/k8s.ts";
import type { SecurityPolicyStatus } from "../api/types.generated.ts";
import type { NodeError } from "../kube/node-status.ts";
import type { NamespaceMatch } from "../policy/normalize.ts";
import { matchesSelector } from "../policy/selector.ts";

// The CRD's status (the same for SecurityPolicy and ClusterSecurityPolicy), every field set: the
// operator always writes all of them.
export type PolicyStatus = Required<SecurityPolicyStatus>;
export type Condition = PolicyStatus["conditions"][number];

export interface PolicyView {
  uid: string;
  generation: number;
  subjectNamespace?: NamespaceMatch;
  subjectPods: LabelSelector;
  /** Semantic problems; empty when the policy is accepted. */
  errors: ReadonlyArray<{ field: string; message: string }>;
}

export interface PodView {
  namespace: string;
  labels: Readonly<Record<string, string>>;
  nodeName?: string;
}

/** What one node's report says about one policy (the status controller reads it out of the report). */
export interface NodeEnforcement {
  errors: ReadonlyArray<NodeError>;
  /** The generation of the policy the node is known to enforce; undefined: none known. */
  generation?: number;
}

export interface AggregationInput {
  policy: PolicyView;
  pods: Iterable<PodView>;
  namespaceLabels: (namespace: string) => Readonly<Record<string, string>> | undefined;
  nodes: ReadonlyMap<string, NodeEnforcement>;
  current?: { conditions?: Condition[] };
  now: Date;
}

export interface Aggregation {
  status: PolicyStatus;
  /** Node errors that name this policy (for events). */
  nodeErrors: Array<{ node: string; message: string }>;
}

const MAX_NODES_IN_MESSAGE = 5;

export function selects(
  policy: PolicyView,
  pod: PodView,
  nsLabels: (ns: string) => Readonly<Record<string, string>> | undefined,
): boolean {
  const subj = policy.subjectNamespace;
  if (subj?.kind === "name" && subj.name !== pod.namespace) return false;
  if (subj?.kind === "selector" && !matchesSelector(subj.selector, nsLabels(pod.namespace) ?? {}))
    return false;
  return matchesSelector(policy.subjectPods, pod.labels);
}

function condition(
  type: string,
  status: Condition["status"],
  reason: string,
  message: string,
  generation: number,
  current: Condition[] | undefined,
  now: Date,
): Condition {
  const prev = current?.find((c) => c.type === type);
  const lastTransitionTime =
    prev && prev.status === status && prev.lastTransitionTime
      ? prev.lastTransitionTime
      : now.toISOString().replace(/\.\d{3}Z$/, "Z");
  return { type, status, observedGeneration: generation, lastTransitionTime, reason, message };
}

function listNodes(nodes: string[]): string {
  const shown = nodes.slice(0, MAX_NODES_IN_MESSAGE).join(", ");
  return nodes.length > MAX_NODES_IN_MESSAGE
    ? `${shown} and ${nodes.length - MAX_NODES_IN_MESSAGE} more`
    : shown;
}

export function aggregate(input: AggregationInput): Aggregation {
  const { policy, now } = input;
  const gen = policy.generation;
  const current = input.current?.conditions;
  let selected = 0;
  const nodesWithEndpoints = new Set<string>();
  for (const pod of input.pods) {
    if (!selects(policy, pod, input.namespaceLabels)) continue;
    selected++;
    if (pod.nodeName) nodesWithEndpoints.add(pod.nodeName);
  }
  const sortedNodes = [...nodesWithEndpoints].sort();
  const pending: string[] = [];
  const nodeErrors: Aggregation["nodeErrors"] = [];
  let enforcing = 0;
  for (const node of sortedNodes) {
    const report = input.nodes.get(node);
    for (const e of report?.errors ?? [])
      if (e.uid === policy.uid) nodeErrors.push({ node, message: e.message });
    if (report?.generation !== undefined && report.generation >= gen) enforcing++;
    else pending.push(node);
  }
  const accepted = policy.errors.length === 0;
  const conditions: Condition[] = [];
  if (accepted) {
    conditions.push(
      condition("Accepted", "True", "Valid", "The policy is valid and compiled.", gen, current, now),
    );
  } else {
    const first = policy.errors.slice(0, 5).map((e) => `${e.field}: ${e.message}`);
    const more = policy.errors.length > 5 ? ` (and ${policy.errors.length - 5} more)` : "";
    conditions.push(
      condition("Accepted", "False", "Invalid", `${first.join("; ")}${more}`, gen, current, now),
    );
  }
  if (!accepted) {
    conditions.push(
      condition("Enforced", "False", "NotAccepted", "The policy is not accepted.", gen, current, now),
    );
  } else if (nodeErrors.length > 0) {
    const failed = [...new Set(nodeErrors.map((e) => e.node))];
    conditions.push(
      condition(
        "Enforced",
        "False",
        "EnforcementFailed",
        `Enforcement failed on ${listNodes(failed)}: ${nodeErrors[0].message}`,
        gen,
        current,
        now,
      ),
    );
  } else if (sortedNodes.length === 0) {
    conditions.push(
      condition(
        "Enforced",
        "True",
        "NoSelectedEndpoints",
        "The policy selects no scheduled pod.",
        gen,
        current,
        now,
      ),
    );
  } else if (pending.length === 0) {
    conditions.push(
      condition(
        "Enforced",
        "True",
        "Enforced",
        `All ${sortedNodes.length} nodes with selected pods enforce generation ${gen}.`,
        gen,
        current,
        now,
      ),
    );
  } else {
    conditions.push(
      condition(
        "Enforced",
        "False",
        "Pending",
        `${pending.length} of ${sortedNodes.length} nodes with selected pods do not enforce generation ${gen} yet: ${listNodes(pending)}.`,
        gen,
        current,
        now,
      ),
    );
  }
  return {
    status: {
      observedGeneration: gen,
      conditions,
      selectedEndpoints: selected,
      enforcingNodes: enforcing,
      totalNodes: sortedNodes.length,
      enforced: `${enforcing}/${sortedNodes.length}`,
    },
    nodeErrors,
  };
}

/** Equal as far as a write is concerned (field order and absent-vs-default ignored). */
export function sameStatus(a: PolicyStatus, b: Partial<PolicyStatus> | undefined): boolean {
  if (!b) return false;
  if (
    a.observedGeneration !== b.observedGeneration ||
    a.selectedEndpoints !== b.selectedEndpoints ||
    a.enforcingNodes !== b.enforcingNodes ||
    a.totalNodes !== b.totalNodes ||
    a.enforced !== b.enforced
  )
    return false;
  const bc = b.conditions ?? [];
  if (a.conditions.length !== bc.length) return false;
  for (const c of a.conditions) {
    const d = bc.find((x) => x.type === c.type);
    if (
      !d ||
      d.status !== c.status ||
      d.reason !== c.reason ||
      d.message !== c.message ||
      d.observedGeneration !== c.observedGeneration ||
      d.lastTransitionTime !== c.lastTransitionTime
    )
      return false;
  }
  return true;
}

// SIG Network's policy kinds (ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy)
// have only `status.conditions`, a list of metav1.Conditions keyed by type that every implementation
// in the cluster shares; upstream leaves their content to each implementation. Sluice writes two, its
// own Accepted and Enforced qualified by its domain so they never collide with another's, and owns
// only those through server-side apply. The counts a Sluice policy has as fields would be pruned by
// the upstream schema, so they go into the Enforced message.
export const UPSTREAM_CONDITION_PREFIX = "sluice.dev/";

/** Sluice's conditions among an upstream policy's, with the prefix taken off (aggregate's current). */
export function ownConditions(conditions: readonly Condition[] | undefined): Condition[] {
  return (conditions ?? [])
    .filter((c) => c.type.startsWith(UPSTREAM_CONDITION_PREFIX))
    .map((c) => ({ ...c, type: c.type.slice(UPSTREAM_CONDITION_PREFIX.length) }));
}

/** The conditions Sluice writes into an upstream policy's status, from the status it computed. */
export function upstreamConditions(status: PolicyStatus): Condition[] {
  return status.conditions.map((c) => ({
    ...c,
    type: `${UPSTREAM_CONDITION_PREFIX}${c.type}`,
    message:
      c.type === "Enforced"
        ? `${c.message} Nodes enforcing: ${status.enforced}; selected pods: ${status.selectedEndpoints}.`
        : c.message,
  }));
}

/** Whether the written conditions already are these (other implementations' ignored). */
export function sameConditions(
  own: readonly Condition[],
  current: readonly Condition[] | undefined,
): boolean {
  const mine = (current ?? []).filter((c) => c.type.startsWith(UPSTREAM_CONDITION_PREFIX));
  if (mine.length !== own.length) return false;
  return own.every((c) => {
    const d = mine.find((x) => x.type === c.type);
    return (
      d !== undefined &&
      d.status === c.status &&
      d.reason === c.reason &&
      d.message === c.message &&
      d.observedGeneration === c.observedGeneration &&
      d.lastTransitionTime === c.lastTransitionTime
    );
  });
}
