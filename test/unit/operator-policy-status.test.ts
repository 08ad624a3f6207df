import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PolicySetLog } from "../../operator/src/controllers/policy-set-log.ts";
import {
  aggregate,
  type NodeEnforcement,
  ownConditions,
  type PodView,
  type PolicyView,
  sameConditions,
  sameStatus,
  upstreamConditions,
} from "../../operator/src/controllers/policy-status.ts";
import {
  buildNodeStatus,
  MAX_RECENT_POLICIES,
  parseNodeReport,
  policySetHash,
  RecentPolicies,
} from "../../operator/src/kube/node-status.ts";

const policy = (over: Partial<PolicyView> = {}): PolicyView => ({
  uid: "u1",
  generation: 2,
  subjectNamespace: { kind: "name", name: "shop" },
  subjectPods: { matchLabels: { app: "web" } },
  errors: [],
  ...over,
});
const pods: PodView[] = [
  { namespace: "shop", labels: { app: "web" }, nodeName: "n1" },
  { namespace: "shop", labels: { app: "web" }, nodeName: "n2" },
  { namespace: "shop", labels: { app: "db" }, nodeName: "n3" },
  { namespace: "other", labels: { app: "web" }, nodeName: "n3" },
  { namespace: "shop", labels: { app: "web" } }, // not scheduled yet
];
// What a node's report says about policy u1 (the status controller reads it out of the report).
const report = (
  _node: string,
  policies: Record<string, number>,
  errors: NodeEnforcement["errors"] = [],
): NodeEnforcement => ({ errors, generation: policies.u1 });
const now = new Date("2030-01-01T00:00:00Z");
const cond = (s: ReturnType<typeof aggregate>["status"], type: string) =>
  s.conditions.find((c) => c.type === type)!;

describe("policy status aggregation", () => {
  it("counts selected endpoints and nodes; Enforced only when every node enforces the generation", () => {
    const nodes = new Map([
      ["n1", report("n1", { u1: 2 })],
      ["n2", report("n2", { u1: 1 })],
    ]);
    let a = aggregate({ policy: policy(), pods, namespaceLabels: () => ({}), nodes, now });
    assert.equal(a.status.selectedEndpoints, 3);
    assert.equal(a.status.totalNodes, 2);
    assert.equal(a.status.enforcingNodes, 1);
    assert.equal(a.status.enforced, "1/2");
    assert.equal(cond(a.status, "Enforced").status, "False");
    assert.equal(cond(a.status, "Enforced").reason, "Pending");
    assert.match(cond(a.status, "Enforced").message, /n2/);
    nodes.set("n2", report("n2", { u1: 2 }));
    a = aggregate({ policy: policy(), pods, namespaceLabels: () => ({}), nodes, now, current: a.status });
    assert.equal(cond(a.status, "Enforced").status, "True");
    assert.equal(a.status.enforced, "2/2");
    assert.equal(a.status.observedGeneration, 2);
    assert.equal(cond(a.status, "Accepted").status, "True");
  });

  it("cluster policy selects by namespace labels", () => {
    const p = policy({ subjectNamespace: { kind: "selector", selector: { matchLabels: { env: "prod" } } } });
    const a = aggregate({
      policy: p,
      pods,
      namespaceLabels: (ns) => (ns === "other" ? { env: "prod" } : ({} as Record<string, string>)),
      nodes: new Map(),
      now,
    });
    assert.equal(a.status.selectedEndpoints, 1);
    assert.equal(a.status.enforced, "0/1");
  });

  it("invalid policy: Accepted=False with the reason, Enforced=False NotAccepted", () => {
    const a = aggregate({
      policy: policy({ errors: [{ field: "spec.ingress[0].cidr", message: "invalid CIDR" }] }),
      pods,
      namespaceLabels: () => ({}),
      nodes: new Map(),
      now,
    });
    assert.equal(cond(a.status, "Accepted").status, "False");
    assert.match(cond(a.status, "Accepted").message, /spec.ingress\[0\].cidr: invalid CIDR/);
    assert.equal(cond(a.status, "Enforced").reason, "NotAccepted");
  });

  it("node errors about the policy → EnforcementFailed", () => {
    const nodes = new Map([
      ["n1", report("n1", { u1: 2 })],
      ["n2", report("n2", {}, [{ uid: "u1", message: "map full" }])],
    ]);
    const a = aggregate({ policy: policy(), pods, namespaceLabels: () => ({}), nodes, now });
    assert.equal(cond(a.status, "Enforced").reason, "EnforcementFailed");
    assert.deepEqual(a.nodeErrors, [{ node: "n2", message: "map full" }]);
  });

  it("recomputing with the current status is a no-op (no flapping, stable lastTransitionTime)", () => {
    const nodes = new Map([
      ["n1", report("n1", { u1: 2 })],
      ["n2", report("n2", { u1: 2 })],
    ]);
    const first = aggregate({ policy: policy(), pods, namespaceLabels: () => ({}), nodes, now });
    const later = new Date(now.getTime() + 60_000);
    const again = aggregate({
      policy: policy(),
      pods,
      namespaceLabels: () => ({}),
      nodes,
      now: later,
      current: first.status,
    });
    assert.ok(sameStatus(again.status, first.status));
  });

  it("node status is compact whatever the number of policies: the set's hash, the recent changes", () => {
    const enforced = Array.from({ length: 5000 }, (_, i) => ({
      uid: `p${String(i).padStart(5, "0")}`,
      generation: 1,
    }));
    const recent = enforced.slice(0, 200).map((e) => ({ ...e, generation: 1 }));
    const s = buildNodeStatus({
      datapathVersion: "1",
      endpoints: 3,
      enforced,
      recent,
      errors: Array.from({ length: 50 }, () => ({ message: "x".repeat(1000) })),
    });
    assert.equal(s.policyCount, 5000);
    assert.equal(s.policySetHash, policySetHash([...enforced].reverse()), "order-independent");
    assert.equal(Object.keys(s.recentPolicies).length, MAX_RECENT_POLICIES);
    assert.equal(s.errors.length, 16);
    assert.ok(s.errors.every((e) => e.message.length <= 256));
    const { errors: _e, ...rest } = s;
    assert.ok(JSON.stringify(rest).length < 4_000, `${JSON.stringify(rest).length} bytes without errors`);
    const r = parseNodeReport({ metadata: { name: "n1" }, status: s });
    assert.equal(r.setHash, s.policySetHash);
    assert.equal(r.recent.size, MAX_RECENT_POLICIES);
    // A recent entry names only a policy the node enforces.
    const gone = buildNodeStatus({ datapathVersion: "1", endpoints: 0, enforced: [], recent });
    assert.deepEqual(gone.recentPolicies, {});
  });

  it("recent policies: the last changes, newest first, bounded; the first set and deletions are not changes", () => {
    const r = new RecentPolicies(3);
    r.observe([
      { uid: "a", generation: 1 },
      { uid: "b", generation: 1 },
    ]);
    assert.deepEqual(r.entries(), [], "the set hash covers what was enforced at the start");
    r.observe([
      { uid: "a", generation: 2 },
      { uid: "b", generation: 1 },
    ]);
    r.observe([
      { uid: "a", generation: 2 },
      { uid: "b", generation: 1 },
      { uid: "c", generation: 1 },
    ]);
    assert.deepEqual(
      r.entries().map((e) => `${e.uid}=${e.generation}`),
      ["c=1", "a=2"],
    );
    r.observe([
      { uid: "a", generation: 2 },
      { uid: "b", generation: 2 },
      { uid: "d", generation: 1 },
      { uid: "e", generation: 1 },
    ]);
    assert.deepEqual(
      r.entries().map((e) => e.uid),
      ["e", "d", "b"],
      "c is gone, a pushed out by the bound",
    );
  });

  it("policy set log: a reported hash is a state seen, and gives each policy's generation then", () => {
    const log = new PolicySetLog(4);
    log.set("a", 1);
    log.set("b", 1);
    const h1 = log.currentHash();
    const s1 = log.seq;
    assert.equal(
      h1,
      policySetHash([
        { uid: "a", generation: 1 },
        { uid: "b", generation: 1 },
      ]),
    );
    assert.equal(log.set("b", 1), false, "the same generation is no new state");
    log.set("a", 2);
    log.set("c", 5);
    const h2 = log.currentHash();
    assert.equal(log.stateOf(h1), s1);
    assert.equal(log.generationAt(s1, "a"), 1, "a node at the old state enforces a's generation 1");
    assert.equal(log.generationAt(s1, "b"), 1);
    assert.equal(log.generationAt(s1, "c"), undefined, "c came later");
    assert.equal(log.generationAt(log.stateOf(h2) as number, "a"), 2);
    assert.equal(log.stateOf("unknown"), undefined);
    assert.deepEqual([...(log.changedBetween(s1, log.seq) ?? [])].sort(), ["a", "c"]);
    // Past the bound, old states are forgotten: never a guess.
    log.set("b", undefined);
    log.set("d", 1);
    log.set("e", 1);
    assert.equal(log.stateOf(h1), undefined);
    assert.equal(log.generationAt(s1, "a"), undefined);
    assert.equal(log.changedBetween(s1, log.seq), undefined);
    assert.equal(log.generationAt(log.seq, "b"), undefined, "b deleted");
  });
});

describe("conditions in SIG Network's shared conditions list", () => {
  const now = new Date("2025-03-01T10:00:00Z");
  const nodes = new Map([["n1", report("n1", { u1: 2 })]]);
  const computed = (current?: ReturnType<typeof ownConditions>) =>
    aggregate({
      policy: policy(),
      pods,
      namespaceLabels: () => ({}),
      nodes,
      current: { conditions: current },
      now,
    }).status;
  const foreign = {
    type: "Ready-In-Zone-a",
    status: "True" as const,
    reason: "Programmed",
    message: "another implementation",
    lastTransitionTime: "2025-01-01T00:00:00Z",
  };

  it("qualifies Sluice's types with its domain and puts the counts into the Enforced message", () => {
    const own = upstreamConditions(computed());
    assert.deepEqual(
      own.map((c) => c.type),
      ["sluice.dev/Accepted", "sluice.dev/Enforced"],
    );
    const e = own.find((c) => c.type === "sluice.dev/Enforced");
    assert.equal(e?.reason, "Pending");
    assert.match(e?.message ?? "", /Nodes enforcing: 1\/2; selected pods: 3\.$/);
    assert.ok(own.every((c) => c.observedGeneration === 2));
  });

  it("reads back only Sluice's own conditions, unqualified, so lastTransitionTime carries over", () => {
    const written = upstreamConditions(computed());
    const later = new Date("2025-03-01T11:00:00Z");
    const current = ownConditions([foreign, ...written]);
    assert.deepEqual(
      current.map((c) => c.type),
      ["Accepted", "Enforced"],
    );
    const again = upstreamConditions(
      aggregate({
        policy: policy(),
        pods,
        namespaceLabels: () => ({}),
        nodes,
        current: { conditions: current },
        now: later,
      }).status,
    );
    assert.deepEqual(again, written, "recomputing with nothing changed changes nothing");
  });

  it("compares only Sluice's conditions: another implementation's never cause a write", () => {
    const own = upstreamConditions(computed());
    assert.equal(sameConditions(own, [foreign, ...own]), true);
    assert.equal(sameConditions(own, own.slice(0, 1)), false, "one missing");
    assert.equal(sameConditions(own, [foreign]), false, "none written yet");
    const stale = own.map((c) => (c.type === "sluice.dev/Enforced" ? { ...c, observedGeneration: 1 } : c));
    assert.equal(sameConditions(own, stale), false, "an older generation");
  });
});
