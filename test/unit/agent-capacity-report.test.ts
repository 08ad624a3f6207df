// How an endpoint that fails closed is reported (issue 14 §2), the pure parts: the node status errors
// with the numbers, the affected policies' Enforced condition, and the agent's map pressure metrics.
import assert from "node:assert/strict";
import { test } from "node:test";
import { nodeCapacityErrors, nodeErrorsOf } from "../../operator/src/agent/capacity-report.ts";
import { AgentMetrics } from "../../operator/src/agent/metrics.ts";
import { aggregate } from "../../operator/src/controllers/policy-status.ts";
import { buildNodeStatus, parseNodeReport } from "../../operator/src/kube/node-status.ts";
import { newRegistry } from "../../operator/src/observe/server.ts";
import { parseSamples } from "../support/prometheus.ts";

const failed = [{ key: "shop/db", needed: 300, available: 120, capacity: 1000 }];
const uids: Record<string, string> = { "NetworkPolicy/shop/a": "ua", "NetworkPolicy/shop/b": "ub" };

test("a node-wide failure names every policy selecting the endpoint, with needed and available entries", () => {
  const errors = nodeCapacityErrors(failed, () => ["NetworkPolicy/shop/a", "NetworkPolicy/shop/b"]);
  assert.equal(errors.length, 1);
  assert.match(
    errors[0].message,
    /endpoint shop\/db needs 300 entries in the node's policy map .* 120 of its 1000 are left; it fails closed/,
  );
  const nodeErrors = nodeErrorsOf(errors, (p) => uids[p]);
  assert.deepEqual(
    nodeErrors.map((e) => [e.policy, e.uid, e.reason, e.endpoint, e.needed, e.capacity]),
    [
      ["NetworkPolicy/shop/a", "ua", "CapacityExceeded", "shop/db", 300, 120],
      ["NetworkPolicy/shop/b", "ub", "CapacityExceeded", "shop/db", 300, 120],
    ],
  );
  // The node status carries them and the count; the operator reads them back.
  const status = buildNodeStatus({
    datapathVersion: "v",
    endpoints: 3,
    enforced: [],
    errors: nodeErrors,
    failedClosedEndpoints: 1,
  });
  assert.equal(status.failedClosedEndpoints, 1);
  assert.deepEqual(status.errors[0], nodeErrors[0]);
  const report = parseNodeReport({ metadata: { name: "node-b" }, status });
  assert.equal(report.failedClosedEndpoints, 1);
  // Each affected policy: Enforced=False with the node and the numbers.
  for (const uid of ["ua", "ub"]) {
    const a = aggregate({
      policy: { uid, generation: 1, subjectPods: {}, errors: [] },
      pods: [{ namespace: "shop", labels: {}, nodeName: "node-b" }],
      namespaceLabels: () => ({}),
      nodes: new Map([["node-b", report]]),
      now: new Date("2030-01-01T00:00:00Z"),
    });
    const enforced = a.status.conditions.find((c) => c.type === "Enforced");
    assert.equal(enforced?.status, "False");
    assert.equal(enforced?.reason, "EnforcementFailed");
    assert.match(
      enforced?.message ?? "",
      /node-b: endpoint shop\/db needs 300 .* 120 of its 1000 are left; it fails closed/,
    );
    assert.equal(a.nodeErrors.length, 1, "what the operator's event says");
  }
});

test("an endpoint refused by a full endpoint map: an error for each policy selecting it, with the node's numbers", () => {
  const errors = nodeCapacityErrors([], () => ["NetworkPolicy/shop/a"], [
    { key: "shop/web", wanted: 5, capacity: 4 },
  ]);
  assert.equal(errors.length, 1);
  assert.match(
    errors[0].message,
    /endpoint shop\/web: the node's endpoint map is full \(5 endpoints want its 4 places\); it is not enforced/,
  );
  assert.deepEqual(
    nodeErrorsOf(errors, (p) => uids[p]).map((e) => [e.policy, e.reason, e.endpoint, e.needed, e.capacity]),
    [["NetworkPolicy/shop/a", "CapacityExceeded", "shop/web", 5, 4]],
  );
});

test("metrics: fill ratios before the limit, endpoints failed closed by the limit they hit", async () => {
  const m = new AgentMetrics(newRegistry());
  m.setSources({
    mapUsage: () => [
      { map: "sl_pset_v4", entries: 750, capacity: 1000 },
      { map: "sl_ep_v4", entries: 3, capacity: 4096 },
    ],
    policyBudget: () => ({ entries: 900, capacity: 1000 }),
  });
  const before = parseSamples(await m.registry.metrics());
  const value = (s: typeof before, name: string, labels: Record<string, string> = {}) =>
    s.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))?.value;
  assert.equal(value(before, "sluice_datapath_map_fill_ratio", { map: "sl_pset_v4" }), 0.75);
  assert.equal(value(before, "sluice_datapath_policy_fill_ratio"), 0.9);
  assert.equal(value(before, "sluice_agent_endpoints_failed_closed", { limit: "policy_map" }), 0);
  assert.equal(value(before, "sluice_agent_endpoints_failed_closed", { limit: "endpoint" }), 0);
  assert.equal(value(before, "sluice_agent_endpoints_failed_closed", { limit: "endpoint_map" }), 0);
  m.failedClosed({ endpointLimit: 2, policyMap: 1, endpointMap: 3 });
  const after = parseSamples(await m.registry.metrics());
  assert.equal(value(after, "sluice_agent_endpoints_failed_closed", { limit: "policy_map" }), 1);
  assert.equal(value(after, "sluice_agent_endpoints_failed_closed", { limit: "endpoint" }), 2);
  assert.equal(value(after, "sluice_agent_endpoints_failed_closed", { limit: "endpoint_map" }), 3);
});
