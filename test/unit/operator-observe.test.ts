// The operator's health checks (controllers/checks.ts) and metric definitions (controllers/metrics.ts)
// without an API server: readiness reasons, the wedged-renewal liveness rule, metric names and units,
// and gauges that read their sources at scrape time.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Registry } from "prom-client";
import {
  cachesSyncedCheck,
  leaderKnownCheck,
  leaseRenewalCheck,
} from "../../operator/src/controllers/checks.ts";
import { OperatorMetrics } from "../../operator/src/controllers/metrics.ts";
import { parseSamples, type Sample } from "../support/prometheus.ts";

describe("operator readiness and liveness checks", () => {
  it("caches: names every unsynced cache until all have synced", () => {
    const state = { pods: false, securityidentities: false, leases: true };
    const check = cachesSyncedCheck(
      Object.fromEntries(
        Object.entries(state).map(([k]) => [k, { hasSynced: () => state[k as keyof typeof state] }]),
      ),
    );
    assert.equal(check.check(), "not synced: pods, securityidentities");
    state.pods = true;
    assert.equal(check.check(), "not synced: securityidentities");
    state.securityidentities = true;
    assert.equal(check.check(), undefined);
  });

  it("leader-election: ready when leading or standing by for a known leader", () => {
    const e = { leading: false, leader: "" };
    const check = leaderKnownCheck("me", {
      isLeader: () => e.leading,
      get leader() {
        return e.leader;
      },
    });
    assert.equal(check.check(), "no leader known yet");
    e.leader = "other";
    assert.equal(check.check(), undefined, "a standby is ready");
    e.leader = "me";
    assert.match(check.check() ?? "", /lost the lease/);
    e.leading = true;
    assert.equal(check.check(), undefined);
  });

  it("lease-renewal: fails only for a leader that has not renewed for lease + tolerance", () => {
    let ago: number | undefined;
    const check = leaseRenewalCheck({ renewedAgoMs: () => ago, leaseDurationMs: 15_000 }, 20_000);
    assert.equal(check.check(), undefined, "a standby has nothing to renew");
    ago = 30_000;
    assert.equal(check.check(), undefined);
    ago = 35_001;
    assert.match(check.check() ?? "", /last renewed 35\.0 s ago \(lease 15 s\)/);
  });
});

describe("OperatorMetrics", () => {
  it("names carry the sluice_ prefix and their unit; counters end in _total", async () => {
    const registry = new Registry();
    new OperatorMetrics(registry);
    const metrics = await registry.getMetricsAsJSON();
    assert.ok(metrics.length >= 10);
    for (const m of metrics) {
      assert.match(m.name, /^sluice_operator_/);
      const type = String(m.type);
      if (type === "counter") assert.match(m.name, /_total$/, m.name);
      if (type === "histogram") assert.match(m.name, /_seconds$/, m.name);
    }
  });

  it("gauges read their sources at scrape time; the frame's hooks land in the queue metrics", async () => {
    const registry = new Registry();
    const m = new OperatorMetrics(registry);
    const scrape = async () => parseSamples(await registry.metrics());
    const value = (s: Sample[], name: string, labels: Record<string, string> = {}) =>
      s.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))?.value;

    let leading = false;
    let live = 3;
    m.bind({ isLeader: () => leading, liveIdentities: () => live });
    let s = await scrape();
    assert.equal(value(s, "sluice_operator_leader"), 0);
    assert.equal(value(s, "sluice_operator_identities"), 3);
    assert.equal(value(s, "sluice_operator_policy_status_writes_total", { result: "ok" }), 0);
    leading = true;
    live = 5;
    let depth = 7;
    m.controllers.queueDepth("identity", () => depth);
    m.controllers.retried("identity");
    m.controllers.reconciled("identity", 0.002, false);
    m.statusWrite("ok");
    m.apiError("securityidentities", "create");
    m.allocationSeconds.observe(0.04);
    s = await scrape();
    assert.equal(value(s, "sluice_operator_leader"), 1);
    assert.equal(value(s, "sluice_operator_identities"), 5);
    assert.equal(value(s, "sluice_operator_workqueue_depth", { controller: "identity" }), 7);
    assert.equal(value(s, "sluice_operator_workqueue_retries_total", { controller: "identity" }), 1);
    assert.equal(
      value(s, "sluice_operator_reconcile_duration_seconds_count", {
        controller: "identity",
        result: "error",
      }),
      1,
    );
    assert.equal(value(s, "sluice_operator_policy_status_writes_total", { result: "ok" }), 1);
    assert.equal(
      value(s, "sluice_operator_api_errors_total", { resource: "securityidentities", verb: "create" }),
      1,
    );
    assert.equal(value(s, "sluice_operator_identity_allocation_duration_seconds_count"), 1);
    assert.equal(value(s, "sluice_operator_identity_allocation_duration_seconds_bucket", { le: "0.05" }), 1);
    assert.equal(value(s, "sluice_operator_identity_allocation_duration_seconds_bucket", { le: "0.025" }), 0);
    depth = 0;
    m.controllers.queueDepth("identity", undefined);
    s = await scrape();
    assert.equal(value(s, "sluice_operator_workqueue_depth", { controller: "identity" }), 0);
  });
});
