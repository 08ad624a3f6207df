// Issue 2 §6: the datapath is replaced hundreds of times (atomic link update) while a UDP stream to
// an allowed port, a UDP stream to a denied port and a long TCP stream cross an enforced path
// between nodes. A baseline run without replacement in the same test shows that the streams
// themselves lose nothing, so any loss would be the replacement's.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Lab } from "../../operator/src/lab/lab.ts";
import { runLiveTraffic } from "../../operator/src/lab/traffic.ts";
import { requirePrivileged } from "../support/privileged.ts";
import { agentMissing, basicTopology, DENIED_UDP, fixture, STREAMS, TOPOLOGY } from "./lab-support.ts";

test("live datapath replacement: 0 lost, 0 leaked, no TCP reset", async (t) => {
  if (!requirePrivileged(t, agentMissing)) return;
  const lab = await Lab.create(basicTopology(), { extraPorts: [{ port: DENIED_UDP, protocol: "UDP" }] });
  try {
    await lab.startAgents([TOPOLOGY, fixture("traffic")]);
    const opts = { ...STREAMS, durationMs: 4000 };
    const baseline = await runLiveTraffic(lab, { ...opts, replace: false });
    t.diagnostic(`baseline: ${JSON.stringify(baseline)}`);
    assert.equal(baseline.lost, 0, "baseline loses nothing");
    assert.equal(baseline.leaked, 0, "baseline: policy denies the second stream");
    assert.equal(baseline.tcpReset, false);
    assert.ok(baseline.sent >= 10000);

    const live = await runLiveTraffic(lab, { ...opts, replace: true, replaceTimes: 1000 });
    t.diagnostic(`with replacement: ${JSON.stringify(live)}`);
    assert.ok(live.replacements >= 400, `replaced ${live.replacements} times`);
    assert.equal(live.lost, 0, "no allowed datagram lost");
    assert.equal(live.leaked, 0, "no denied datagram leaked");
    assert.equal(live.tcpReset, false, `TCP stream survived (${live.tcpError})`);
    assert.ok(live.tcpBytes > 1e6 && live.tcpBytes === live.tcpBytesSent, "every TCP byte arrived");

    // v6 across the same path.
    const v6 = await runLiveTraffic(lab, { ...opts, family: 6, durationMs: 2000, replace: true });
    t.diagnostic(`IPv6 with replacement: ${JSON.stringify(v6)}`);
    assert.equal(v6.lost, 0);
    assert.equal(v6.leaked, 0);
    assert.equal(v6.tcpReset, false);
  } finally {
    await lab.destroy();
  }
});

test("live replacement on tc filters (kernels without tcx): 0 lost, 0 leaked, no TCP reset", async (t) => {
  if (!requirePrivileged(t, agentMissing)) return;
  const lab = await Lab.create(basicTopology(), {
    extraPorts: [{ port: DENIED_UDP, protocol: "UDP" }],
    agentArgs: ["--attach-mode", "tc"],
  });
  try {
    await lab.startAgents([TOPOLOGY, fixture("traffic")]);
    const live = await runLiveTraffic(lab, {
      ...STREAMS,
      durationMs: 3000,
      replace: true,
      replaceTimes: 500,
    });
    t.diagnostic(`tc filters with replacement: ${JSON.stringify(live)}`);
    assert.ok(live.replacements >= 200, `replaced ${live.replacements} times`);
    assert.equal(live.lost, 0, "no allowed datagram lost");
    assert.equal(live.leaked, 0, "no denied datagram leaked");
    assert.equal(live.tcpReset, false, `TCP stream survived (${live.tcpError})`);
    assert.ok(live.tcpBytes > 0 && live.tcpBytes === live.tcpBytesSent, "every TCP byte arrived");
  } finally {
    await lab.destroy();
  }
});
