// How an endpoint that fails closed is reported (issue 14 §2): the compiler's per-endpoint overflow and
// the writer's node-wide one become the same kind of error, and each becomes one node status error per
// policy that selects the endpoint, with the numbers, so that every affected policy's Enforced
// condition (the operator matches node errors by policy uid) and its event say why.
import {
  describeFailedClosed,
  describeRefused,
  type FailedClosedEndpoint,
  type RefusedEndpoint,
} from "../datapath/writer/capacity-fit.ts";
import type { NodeError } from "../kube/node-status.ts";
import type { CompileError } from "../policy/index.ts";

// The writer's node-wide failures as compile errors; policiesOf names the policies selecting an endpoint.
// A refused endpoint's numbers are the node's: endpoints that want a place, and the map's places.
export function nodeCapacityErrors(
  failed: readonly FailedClosedEndpoint[],
  policiesOf: (endpoint: string) => string[],
  refused: readonly RefusedEndpoint[] = [],
): CompileError[] {
  return [
    ...failed.map(
      (f): CompileError => ({
        reason: "Overflow",
        policies: policiesOf(f.key),
        endpoint: f.key,
        needed: f.needed,
        capacity: f.available,
        message: describeFailedClosed(f),
      }),
    ),
    ...refused.map(
      (r): CompileError => ({
        reason: "Overflow",
        policies: policiesOf(r.key),
        endpoint: r.key,
        needed: r.wanted,
        capacity: r.capacity,
        message: describeRefused(r),
      }),
    ),
  ];
}

// Node status errors of compile errors: an overflow gives one per policy involved (each policy's
// condition finds its own), any other error one for its first policy.
export function nodeErrorsOf(
  errors: readonly CompileError[],
  uidOf: (policy: string) => string | undefined,
): NodeError[] {
  return errors.flatMap((e): NodeError[] => {
    if (e.reason !== "Overflow")
      return [{ policy: e.policies[0], uid: uidOf(e.policies[0] ?? ""), message: e.message }];
    const common = {
      message: e.message,
      reason: "CapacityExceeded" as const,
      ...(e.endpoint && { endpoint: e.endpoint }),
      ...(e.needed !== undefined && { needed: e.needed }),
      ...(e.capacity !== undefined && { capacity: e.capacity }),
    };
    return e.policies.length === 0
      ? [common]
      : e.policies.map((policy) => ({ policy, uid: uidOf(policy), ...common }));
  });
}

// Endpoints failing closed, by the limit they hit: the per-endpoint one (compiler), the node's policy
// map, or the node's endpoint map (refused a place: no program, and sluice-cni holds their pods).
export interface FailedClosedCounts {
  endpointLimit: number;
  policyMap: number;
  endpointMap: number;
}

export function failedClosedCounts(
  compileErrors: readonly CompileError[],
  failed: readonly FailedClosedEndpoint[],
  refused: readonly RefusedEndpoint[] = [],
): FailedClosedCounts {
  return {
    endpointLimit: compileErrors.filter((e) => e.reason === "Overflow").length,
    policyMap: failed.length,
    endpointMap: refused.length,
  };
}
