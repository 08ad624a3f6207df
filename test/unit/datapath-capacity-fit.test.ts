// Node-wide fail-closed (issue 14 §2), the planner's part: when every endpoint's policy does not fit
// the node's policy maps, which endpoints fail closed, what they enforce instead, the numbers they
// report, and their recovery once capacity returns. No kernel (test/kernel/capacity.test.ts writes
// real maps and probes real traffic).
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { planWithinCapacity } from "../../operator/src/datapath/writer/capacity-fit.ts";
import {
  type AppliedState,
  type Capacities,
  type DesiredState,
  desiredState,
  EMPTY_STATE,
  planSync,
} from "../../operator/src/datapath/writer/sync-plan.ts";
import { enums } from "../../operator/src/datapath/codec/layout.generated.ts";
import { MapCapacityError } from "../../operator/src/datapath/kernel/typed-map.ts";
import {
  type EndpointPolicy,
  type EndpointState,
  type PolicyEntry,
  ReservedIdentity,
  ReservedRuleId,
} from "../../operator/src/policy/mapstate.ts";

const EPF = enums.sl_endpoint_flags;
// Deny both ways, the audited default alike.
const CLOSED =
  EPF.SL_EP_DEFAULT_DENY_INGRESS |
  EPF.SL_EP_DEFAULT_DENY_EGRESS |
  EPF.SL_EP_AUDIT_DENY_INGRESS |
  EPF.SL_EP_AUDIT_DENY_EGRESS;
// Ingress default deny, audited alike (no Audit policy).
const DENY_INGRESS = EPF.SL_EP_DEFAULT_DENY_INGRESS | EPF.SL_EP_AUDIT_DENY_INGRESS;
const ifindexOf = (ep: EndpointState) => 100 + ep.id;
const cap = (policy: number): Capacities => ({ ipcache: 100, endpoints: 100, policy, sources: 100 });

const LOCALHOST: PolicyEntry = {
  direction: "ingress",
  identity: ReservedIdentity.HOST,
  protocol: 0,
  port: 0,
  portPrefixLen: 0,
  verdict: "allow",
  ruleId: ReservedRuleId.LOCALHOST,
};
const FAIL_CLOSED: EndpointPolicy = { defaultDeny: { ingress: true, egress: true }, entries: [LOCALHOST] };

// An endpoint with n ingress allow entries (ports 1..n) besides the node's way in.
function ep(id: number, n: number): EndpointState {
  const entries: PolicyEntry[] = [LOCALHOST];
  for (let p = 1; p <= n; p++)
    entries.push({
      direction: "ingress",
      identity: 300,
      protocol: 6,
      port: p,
      portPrefixLen: 16,
      verdict: "allow",
      ruleId: 7,
    });
  return {
    key: `ns/p${id}`,
    id,
    identity: 256 + id,
    policy: { defaultDeny: { ingress: true, egress: false }, entries },
  };
}

function desired(eps: EndpointState[], failClosed: EndpointPolicy | undefined = FAIL_CLOSED): DesiredState {
  return desiredState({ ipcache: [], endpoints: eps, ...(failClosed && { failClosed }) }, ifindexOf).desired;
}

// What each endpoint enforces after the plan: its entry count and flags.
function enforced(a: AppliedState): Map<number, { size: number; flags: number }> {
  const out = new Map<number, { size: number; flags: number }>();
  for (const r of a.endpoints.values())
    out.set(r.id, { size: a.policy.get(r.id)?.[r.gen].size ?? 0, flags: r.flags });
  return out;
}

test("the policies fit: the plan is planSync's, nobody fails closed", () => {
  const d = desired([ep(1, 10), ep(2, 20)]);
  const f = planWithinCapacity(EMPTY_STATE, d, cap(1000));
  assert.deepEqual(f.failedClosed, []);
  assert.deepEqual(f.plan, planSync(EMPTY_STATE, d, cap(1000)));
});

test("the biggest new policy that does not fit fails closed, with the numbers; the others are enforced whole", () => {
  // Two generations each: 2 x (11 + 21 + 41) = 146 > 100; without p3: 2 x (11 + 21 + 1) = 66.
  const f = planWithinCapacity(EMPTY_STATE, desired([ep(1, 10), ep(2, 20), ep(3, 40)]), cap(100));
  assert.deepEqual(f.failedClosed, [{ key: "ns/p3", needed: 82, available: 100 - 64, capacity: 100 }]);
  const e = enforced(f.plan.result);
  assert.deepEqual(e.get(1), { size: 11, flags: DENY_INGRESS });
  assert.deepEqual(e.get(2), { size: 21, flags: DENY_INGRESS });
  assert.deepEqual(e.get(3), { size: 1, flags: CLOSED }, "deny both ways, only the node's way in");
  const closed = [...(f.plan.result.policy.get(3)?.[0].values() ?? [])];
  assert.deepEqual(closed, [LOCALHOST]);
  assert.equal(f.plan.result.policy.get(3)?.[1].size, 1, "never an empty or half-written generation");
});

test("an endpoint enforced as it should be keeps its policy; among changes the smaller goes first", () => {
  const first = planWithinCapacity(EMPTY_STATE, desired([ep(1, 30)]), cap(100));
  assert.deepEqual(first.failedClosed, []);
  // p2 is smaller than p1, but p1 is enforced as it should be: p2's arrival does not evict it.
  const second = planWithinCapacity(first.plan.result, desired([ep(1, 30), ep(2, 25)]), cap(100));
  assert.deepEqual(
    second.failedClosed.map((x) => x.key),
    ["ns/p2"],
  );
  assert.equal(enforced(second.plan.result).get(1)?.size, 31);
  // p1 grows: its new policy is a change like p2's, and among changes the smaller goes first. p1 fails
  // closed (never kept at its old policy: that is not what the policies say), p2 gets its own.
  const third = planWithinCapacity(second.plan.result, desired([ep(1, 45), ep(2, 25)]), cap(100));
  assert.deepEqual(third.failedClosed, [{ key: "ns/p1", needed: 92, available: 100 - 52, capacity: 100 }]);
  assert.deepEqual(enforced(third.plan.result).get(1), { size: 1, flags: CLOSED });
  assert.equal(enforced(third.plan.result).get(2)?.size, 26);
});

test("capacity returns (another endpoint goes): the endpoint failed closed recovers at the next write", () => {
  const a = planWithinCapacity(EMPTY_STATE, desired([ep(1, 40), ep(2, 40)]), cap(100));
  assert.deepEqual(
    a.failedClosed.map((x) => x.key),
    ["ns/p2"],
  );
  const b = planWithinCapacity(a.plan.result, desired([ep(2, 40)]), cap(100));
  // Within one write p1's entries go only after the barrier: the peak still counts them...
  const c = b.failedClosed.length > 0 ? planWithinCapacity(b.plan.result, desired([ep(2, 40)]), cap(100)) : b;
  // ...and the writer's next round (MapSync.applyDesired) admits p2 once they are gone.
  assert.deepEqual(c.failedClosed, []);
  assert.deepEqual(enforced(c.plan.result).get(2), { size: 41, flags: DENY_INGRESS });
});

test("without the compiler's fail-closed policy, an endpoint keeps only its own allow-localhost entries", () => {
  const f = planWithinCapacity(EMPTY_STATE, desired([ep(1, 10), ep(2, 60)], undefined), cap(100));
  assert.deepEqual(
    f.failedClosed.map((x) => x.key),
    ["ns/p2"],
  );
  assert.deepEqual([...(f.plan.result.policy.get(2)?.[0].values() ?? [])], [LOCALHOST]);
});

test("allow-localhost policy: an endpoint failed closed has no entry at all, and denies both ways", () => {
  const strict: EndpointPolicy = { defaultDeny: { ingress: true, egress: true }, entries: [] };
  const f = planWithinCapacity(EMPTY_STATE, desired([ep(1, 10), ep(2, 60)], strict), cap(100));
  assert.deepEqual(enforced(f.plan.result).get(2), { size: 0, flags: CLOSED });
});

test("a map too small even for the fail-closed policies: the capacity error, nothing planned", () => {
  assert.throws(
    () => planWithinCapacity(EMPTY_STATE, desired([ep(1, 10), ep(2, 10)]), cap(3)),
    (e: unknown) => e instanceof MapCapacityError && e.map === "policy",
  );
});

test("a full endpoint map: endpoints in it keep their place, new ones are admitted by key, the rest refused", () => {
  // p9 is in the map; p1..p3 are new: p1 and p2 get the places left, p3 is refused (nothing written).
  const first = planWithinCapacity(EMPTY_STATE, desired([ep(9, 1)]), { ...cap(100), endpoints: 3 });
  assert.deepEqual(first.refused, []);
  const eps = [ep(3, 1), ep(1, 1), ep(9, 1), ep(2, 1)];
  const f = planWithinCapacity(first.plan.result, desired(eps), { ...cap(100), endpoints: 3 });
  assert.deepEqual(f.refused, [{ key: "ns/p3", wanted: 4, capacity: 3 }]);
  assert.deepEqual([...enforced(f.plan.result).keys()].sort(), [1, 2, 9]);
  assert.equal(f.plan.result.policy.has(3), false, "no entry of a refused endpoint is written");
  // A place frees (p1 goes): p3 is admitted at the next write.
  const g = planWithinCapacity(f.plan.result, desired([ep(3, 1), ep(9, 1), ep(2, 1)]), {
    ...cap(100),
    endpoints: 3,
  });
  assert.deepEqual(g.refused, []);
  assert.deepEqual([...enforced(g.plan.result).keys()].sort(), [2, 3, 9]);
  // Policy fitting applies to the admitted ones only: the refused endpoint takes no policy entries.
  const h = planWithinCapacity(first.plan.result, desired([ep(9, 1), ep(1, 40), ep(2, 1)]), {
    ...cap(20),
    endpoints: 2,
  });
  assert.deepEqual(
    h.refused.map((r) => r.key),
    ["ns/p2"],
  );
  assert.deepEqual(
    h.failedClosed.map((x) => x.key),
    ["ns/p1"],
  );
});

test("other capacities are not failed closed: the ipcache's limit is thrown as before", () => {
  const d = desiredState(
    {
      ipcache: [
        { cidr: "10.0.0.1/32", identity: 300 },
        { cidr: "10.0.0.2/32", identity: 300 },
      ],
      endpoints: [ep(1, 1)],
      failClosed: FAIL_CLOSED,
    },
    ifindexOf,
  ).desired;
  assert.throws(
    () => planWithinCapacity(EMPTY_STATE, d, { ...cap(100), ipcache: 1 }),
    (e: unknown) => e instanceof MapCapacityError && e.map === "ipcache",
  );
});

test("property: whatever the sizes, the result fits, failed endpoints are closed, and one more would not fit", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 60 }), { minLength: 1, maxLength: 8 }),
      fc.array(fc.integer({ min: 0, max: 60 }), { minLength: 1, maxLength: 8 }),
      fc.integer({ min: 40, max: 400 }),
      (before, after, policy) => {
        let applied = EMPTY_STATE;
        for (const sizes of [before, after]) {
          const eps = sizes.map((n, i) => ep(i + 1, n));
          let f = planWithinCapacity(applied, desired(eps), cap(policy));
          // The writer's second round (entries of the previous content gone after the barrier).
          if (f.failedClosed.length > 0) f = planWithinCapacity(f.plan.result, desired(eps), cap(policy));
          applied = f.plan.result;
          let total = 0;
          for (const g of applied.policy.values()) total += g[0].size + g[1].size;
          assert.ok(total <= policy, `${total} entries in a map of ${policy}`);
          const failed = new Set(f.failedClosed.map((x) => x.key));
          for (const e of eps) {
            const got = enforced(applied).get(e.id)!;
            if (failed.has(e.key)) assert.deepEqual(got, { size: 1, flags: CLOSED });
            else assert.equal(got.size, e.policy.entries.length);
          }
          // Any failed endpoint admitted on top would not fit.
          for (const x of f.failedClosed) assert.ok(total - 2 + x.needed > policy, `${x.key} would have fit`);
        }
      },
    ),
    { numRuns: 200 },
  );
});
