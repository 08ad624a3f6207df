import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  applyDelta,
  compile,
  IncrementalCompiler,
  inputsFromObjects,
} from "../../operator/src/policy/index.ts";
import { diffIpcache } from "../../operator/src/policy/diff.ts";
import type { Change } from "../../operator/src/policy/incremental.ts";
import { type IpcacheEntry, ReservedIdentity, ReservedRuleId } from "../../operator/src/policy/mapstate.ts";
import {
  allowLocalhostMode,
  cluster,
  clusterPolicy,
  NODE_ADDRESSES,
  networkPolicy,
  pod,
  securityPolicy,
} from "./policy-fixtures.ts";
import { asObjects, audited } from "./policy-fixtures.ts";

const change = fc.oneof(
  networkPolicy(0).map((o): Change => ({ type: "upsert", object: o })),
  networkPolicy(7).map((o): Change => ({ type: "upsert", object: o })),
  securityPolicy(0).map((o): Change => ({ type: "upsert", object: o })),
  clusterPolicy(0).map((o): Change => ({ type: "upsert", object: o })),
  // The same objects in audit mode: a change of enforcement alone (Audit <-> Enforce) is a change.
  networkPolicy(0).map((o): Change => ({ type: "upsert", object: audited(o) })),
  securityPolicy(0).map((o): Change => ({ type: "upsert", object: audited(o) })),
  clusterPolicy(0).map((o): Change => ({ type: "upsert", object: audited(o) })),
  fc.constantFrom("a", "b").map(
    (n): Change => ({
      type: "delete",
      object: { kind: "NetworkPolicy", metadata: { name: "np0", namespace: n }, spec: { podSelector: {} } },
    }),
  ),
  fc.constant<Change>({
    type: "delete",
    object: {
      kind: "ClusterSecurityPolicy",
      metadata: { name: "csp0" },
      spec: { tier: "Admin", priority: 0, endpointSelector: {} },
    },
  }),
  fc.record({ app: fc.constantFrom("web", "db", "api"), n: fc.constantFrom("n1", "n2") }).map(
    (p): Change => ({
      type: "upsert",
      object: pod("a", "p0", { app: p.app }, "10.0.2.77", p.n, [{ name: "http", containerPort: 8080 }]),
    }),
  ),
);

test("incremental: old state + delta == full recompile, after every change (both allow-localhost modes)", () => {
  fc.assert(
    fc.property(
      cluster,
      allowLocalhostMode,
      fc.array(change, { minLength: 1, maxLength: 6 }),
      (c, mode, changes) => {
        const options = { node: "n1", allowLocalhost: mode, hostAddresses: NODE_ADDRESSES.get("n1") };
        const inputs = inputsFromObjects(asObjects(c));
        // Identities for every label set a change can introduce, allocated up front as the operator would.
        const extra = inputsFromObjects({
          ...asObjects(c),
          pods: [
            ...c.pods,
            ...["web", "db", "api"].map((app, i) => pod("a", `x${i}`, { app }, `10.9.9.${i}`)),
          ],
          securityIdentities: [],
          other: [],
        });
        inputs.identities = extra.identities;
        const inc = new IncrementalCompiler(inputs, options);
        assert.deepEqual(inc.state, compile(inputs, options).state);
        for (const ch of changes) {
          const before = inc.state;
          const { delta } = inc.apply(ch);
          const full = compile(inc.inputs(), options).state;
          // The delta carries policy entries, not the node's fail-closed policy (the compiler's own).
          const { failClosed: _closed, ...fullWithout } = full;
          assert.deepEqual(applyDelta(before, delta), fullWithout);
          assert.deepEqual(inc.state, full);
        }
      },
    ),
    { numRuns: 150 },
  );
});

test("overflow: an endpoint over capacity fails closed, names the policies and the numbers, and recovers", () => {
  const objects = [
    { kind: "Namespace", metadata: { name: "a" } },
    pod("a", "web", { app: "web" }, "10.0.0.1", "n1"),
    pod("a", "db", { app: "db" }, "10.0.0.2", "n1"),
  ];
  const small = {
    kind: "NetworkPolicy",
    metadata: { name: "small", namespace: "a" },
    spec: { podSelector: { matchLabels: { app: "web" } }, ingress: [{ ports: [{ port: 80 }] }] },
  };
  const big = {
    kind: "NetworkPolicy",
    metadata: { name: "big", namespace: "a" },
    spec: {
      podSelector: { matchLabels: { app: "web" } },
      ingress: [{ ports: Array.from({ length: 20 }, (_, i) => ({ port: 1000 + 3 * i })) }],
    },
  };
  const inputs = inputsFromObjects([...objects, small]);
  const inc = new IncrementalCompiler(inputs, { node: "n1", capacity: 5 });
  const good = inc.state.endpoints.find((e) => e.key === "a/web")!;
  assert.ok(good.policy.entries.length > 0 && good.policy.entries.length <= 5);
  const r = inc.apply({ type: "upsert", object: big as never });
  assert.equal(r.errors.length, 1);
  assert.equal(r.errors[0].reason, "Overflow");
  assert.equal(r.errors[0].endpoint, "a/web");
  assert.deepEqual(r.errors[0].policies.sort(), ["NetworkPolicy/a/big", "NetworkPolicy/a/small"]);
  assert.equal(r.errors[0].needed, 22, "20 ports, port 80, and the node's way in");
  assert.equal(r.errors[0].capacity, 5);
  assert.match(
    r.errors[0].message,
    /needs 22 policy entries, more than the 5 one endpoint may have; it fails closed/,
  );
  // Fails closed, not kept at its previous policy: deny both ways, only the node's way in (allow-localhost).
  const closed = inc.state.endpoints.find((e) => e.key === "a/web")!.policy;
  assert.deepEqual(closed.defaultDeny, { ingress: true, egress: true });
  assert.ok(closed.entries.length > 0);
  for (const e of closed.entries) {
    assert.equal(e.direction, "ingress");
    assert.equal(e.identity, ReservedIdentity.HOST);
    assert.equal(e.ruleId, ReservedRuleId.LOCALHOST);
  }
  assert.deepEqual(inc.state.failClosed, closed);
  // A full compile, with or without the previous state, fails it closed the same way.
  for (const previous of [inc.state, undefined]) {
    const full = compile(inc.inputs(), { node: "n1", capacity: 5, previous });
    assert.deepEqual(full.state.endpoints.find((e) => e.key === "a/web")!.policy, closed);
  }
  // With allow-localhost "policy" not even the node gets in.
  const strict = compile(inc.inputs(), { node: "n1", capacity: 5, allowLocalhost: "policy" });
  assert.deepEqual(strict.state.endpoints.find((e) => e.key === "a/web")!.policy, {
    defaultDeny: { ingress: true, egress: true },
    entries: [],
  });
  // Capacity returns (the big policy goes): the endpoint recovers its own policy.
  const back = inc.apply({ type: "delete", object: big as never });
  assert.equal(back.errors.length, 0);
  assert.deepEqual(inc.state.endpoints.find((e) => e.key === "a/web")!.policy, good.policy);
});

test("diffIpcache: the merge walk over sorted sides gives what the maps give, and unsorted sides still diff", () => {
  const byMaps = (before: IpcacheEntry[], after: IpcacheEntry[]) => {
    const old = new Map(before.map((e) => [e.cidr, e.identity]));
    const now = new Map(after.map((e) => [e.cidr, e.identity]));
    return {
      ipcacheUpsert: after.filter((e) => old.get(e.cidr) !== e.identity),
      ipcacheRemove: before.filter((e) => !now.has(e.cidr)),
    };
  };
  const side = fc.uniqueArray(
    fc.record({
      cidr: fc.constantFrom(...Array.from({ length: 12 }, (_, i) => `10.0.0.${i}/32`)),
      identity: fc.integer({ min: 256, max: 259 }),
    }),
    { selector: (e) => e.cidr, maxLength: 12 },
  );
  const sorted = (xs: IpcacheEntry[]) =>
    [...xs].sort((a, b) => (a.cidr < b.cidr ? -1 : a.cidr > b.cidr ? 1 : 0));
  fc.assert(
    fc.property(side, side, (a, b) => {
      assert.deepEqual(diffIpcache(sorted(a), sorted(b)), byMaps(sorted(a), sorted(b)));
      assert.deepEqual(diffIpcache(a, b), byMaps(a, b));
    }),
  );
});
