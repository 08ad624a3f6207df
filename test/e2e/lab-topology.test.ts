// The lab without enforcement: namespaces, routes and servers alone must let every probe through,
// over IPv4 and IPv6, and everything must be gone afterwards.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { Lab } from "../../operator/src/lab/lab.ts";
import { requirePrivileged } from "../support/privileged.ts";
import { basicTopology, labNetns } from "./lab-support.ts";

test("lab without agents: every pod reaches every other pod on every port, v4 and v6", async (t) => {
  if (!requirePrivileged(t)) return;
  const topology = basicTopology();
  const lab = await Lab.create(topology);
  const runId = lab.plan.runId;
  try {
    assert.equal(labNetns(runId).length, 1 + topology.nodes.length + topology.pods.length);
    // Each pod's row count: every other pod's container ports.
    const expected = topology.pods.reduce(
      (n, from) => n + topology.pods.filter((to) => to !== from).reduce((m, to) => m + to.ports.length, 0),
      0,
    );
    for (const family of [4, 6] as const) {
      const report = await lab.probe({ family });
      assert.equal(report.results.length, expected);
      const denied = report.results.filter((r) => r.verdict !== "allow");
      assert.deepEqual(denied, [], `IPv${family}: all allowed without policy`);
      assert.deepEqual(report.notes, [], "every probe was answered by the pod it was meant for");
      t.diagnostic(`IPv${family}: ${report.results.length} probes in ${Math.round(report.durationMs)} ms`);
    }
    // A closed port is still "reachable" (refused), which shows the probe sees real replies.
    const extra = await lab.probe({ ports: [{ port: 9, protocol: "TCP" }], from: ["shop/web"] });
    assert.ok(extra.results.every((r) => r.verdict === "allow"));
    assert.ok(extra.notes.every((n) => n.includes("refused")));
  } finally {
    await lab.destroy();
  }
  assert.deepEqual(labNetns(runId), [], "no namespace of the run is left");
  assert.equal(existsSync(lab.bpffsRoot), false, "no bpffs root is left");
});
