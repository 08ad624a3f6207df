// The scale rig (test/scale, issue 14 §1) at a hundredth of its size, so `npm test` keeps it working:
// 10 nodes (one real agent on a network-namespace lab, nine simulated), 500 pods in 50 namespaces with
// 100 label sets, 10 policies of every kind, the real operator process, a policy change, a burst of
// new label sets and their GC, and churn. It checks what the rig measures is there and right, not
// how fast (speed is the benchmark's: test/bench/scale.bench.ts): every label set in use has exactly
// one identity, the burst's identities are collected, the agent's maps hold every pod address, the
// policy change reaches Enforced=True on every node with O(nodes) status writes, and the API server's
// audit log attributes requests to each component.
import assert from "node:assert/strict";
import { test } from "node:test";
import { runRig } from "../scale/rig.ts";
import { scaled } from "../scale/shape.ts";
import { requirePrivileged } from "../support/privileged.ts";
import { hostImageEnv } from "../support/image-env.ts";

test("scale rig at 1/100: identities, enforcement status, agent maps and request accounting", {
  timeout: 240_000,
}, async (t) => {
  if (!requirePrivileged(t)) return;
  const shape = scaled(0.01);
  const lines: string[] = [];
  const r = await runRig({
    shape,
    burst: 20,
    churnSeconds: 3,
    churnPerSecond: 20,
    steadySeconds: 2,
    gcGraceSeconds: 2,
    // As in a pod: jemalloc preloaded (image/env).
    env: hostImageEnv(),
    log: (l) => lines.push(l),
  });
  t.diagnostic(lines.join("\n"));
  assert.equal(r.identities.duplicates, 0, "no label set has two live identities");
  assert.equal(r.identities.missing, 0, "every label set in use has an identity");
  assert.ok(r.identities.usedLabelSets >= shape.labelSets, `${r.identities.usedLabelSets} label sets in use`);
  assert.equal(r.burst.gcDeleted >= r.burst.labelSets, true, "the burst's identities were collected");
  // Every pod address (the lab's two included) is in the agent's host map.
  // (The map's name carries the datapath layout's version: found by its prefix.)
  const [name, usage] = Object.entries(r.agent.maps).find(([m]) => m.startsWith("sl_ip4h_")) ?? [
    "sl_ip4h",
    "0/0",
  ];
  const [entries] = usage.split("/").map(Number);
  assert.ok(entries >= shape.pods + 2, `${name} holds ${entries} entries for ${shape.pods + 2} pods`);
  assert.ok(r.policyChange.nodes === shape.nodes);
  // One write per coalesced batch of node reports at most, and none for the other policies.
  assert.ok(
    r.policyChange.statusWrites >= 1 && r.policyChange.statusWrites <= shape.nodes + 2,
    `${r.policyChange.statusWrites} status writes for one policy change on ${shape.nodes} nodes`,
  );
  assert.ok(r.policyChange.nodeStatusWrites >= shape.nodes - 1, "every simulated node reported");
  assert.ok(r.api.churn.perSecond["sluice-operator"] > 0, "the audit log counts the operator's requests");
  assert.ok(r.api.policyChange.perSecond["sluice-agent"] > 0, "...and the real agent's status write");
  assert.ok(r.agent.rss > 0 && r.agent.rssEnd > 0 && r.operator.rss > 0 && r.agent.heapUsed > 0);
  assert.ok(
    r.operator.cpuSeconds > 0 && r.agent.cpuSecondsAfterSteady > 0,
    "CPU seconds from the daemons' metrics",
  );
});
