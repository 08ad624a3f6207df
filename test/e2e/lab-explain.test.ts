// `sluice explain` against real packets: in a lab enforcing test/e2e/fixtures/explain (Admin Pass and
// Deny, an Admin Allow on a named port, isolation, Deny over Allow, an egress CIDR with an except, a
// Baseline Deny), for every pair of pods and every port, IPv4 and IPv6, the verdict explain gives is the
// one the lab's probe measures, and the rule explain names on each side is the rule id the datapath put
// in its flow events for that packet (read from each node's pinned ring buffer). IPv4 through the
// command (bin/sluice explain -o json), IPv6 through the same code in process.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { MatrixRow } from "../../operator/src/api/matrix-rows.ts";
import { type FlowEvent, openFlowEvents } from "../../operator/src/datapath/flow-events.ts";
import { loadAddon } from "../../operator/src/datapath/kernel/bpf-addon.ts";
import { openPinnedMaps } from "../../operator/src/datapath/kernel/maps.ts";
import { mapLimit } from "../../operator/src/lab/exec.ts";
import { Lab } from "../../operator/src/lab/lab.ts";
import { topologyFromObjects } from "../../operator/src/lab/topology.ts";
import { loadObjects } from "../../operator/src/manifests/load.ts";
import { explainRequest } from "../../operator/src/cli/explain.ts";
import { parseIp } from "../../operator/src/policy/cidr.ts";
import type { SideExplanation } from "../../operator/src/policy/explain.ts";
import { inputsFromObjects } from "../../operator/src/policy/index.ts";
import { protocolNumber } from "../../operator/src/policy/ports.ts";
import { requirePrivileged } from "../support/privileged.ts";
import { agentMissing, fixture, labNetns, sluice } from "./lab-support.ts";

interface ExplainJson {
  verdict: "allow" | "deny";
  from: { address: string };
  to: { address: string };
  egress?: SideExplanation;
  ingress?: SideExplanation;
}

// Events a policy lookup produced (not conntrack's): they carry the deciding rule id.
const DECISIVE = new Set(["policy", "default", "allow-localhost"]);

function sameIp(a: string, b: string): boolean {
  const x = parseIp(a);
  const y = parseIp(b);
  return x !== undefined && y !== undefined && x.family === y.family && x.addr === y.addr;
}

test("explain == lab probe (verdict) == flow events (rule id), every pair and port, v4 and v6", async (t) => {
  if (!requirePrivileged(t, agentMissing)) return;
  const dir = fixture("explain");
  const inputs = inputsFromObjects(loadObjects([dir]));
  const existing = new Set(labNetns());
  // Every verdict sampled into the ring buffer; the agents do not read it (no --events), this test does.
  const lab = await Lab.create(topologyFromObjects(loadObjects([dir])), {
    agentArgs: ["--event-sample-allow", "1", "--event-sample-deny", "1"],
  });
  const addon = loadAddon();
  const closers: Array<() => void> = [];
  const events: FlowEvent[] = [];
  const outcomes = new Set<string>();
  try {
    await lab.startAgents([dir]);
    for (const n of lab.plan.nodes) {
      const maps = openPinnedMaps(addon, lab.nodeBpffsRoot(n.name));
      closers.push(() => maps.close());
      const stream = openFlowEvents(addon, maps.eventsFd, { pollMs: 10 });
      stream.on("events", (batch) => events.push(...batch));
      closers.push(() => stream.stop());
    }
    for (const family of [4, 6] as const) {
      events.length = 0;
      const report = await lab.probe({ family });
      assert.ok(report.results.length === 18, `${report.results.length} probes`);
      assert.deepEqual(report.skipped, []);
      // The ring buffer is polled every 10 ms: let the last probes' events arrive.
      await new Promise((r) => setTimeout(r, 300));
      const mismatches: string[] = [];
      await mapLimit(report.results, 4, async (row: MatrixRow) => {
        const where = `IPv${family} ${row.from} -> ${row.to} ${row.port}/${row.protocol}`;
        const port = `${row.port}/${row.protocol}`;
        let x: ExplainJson;
        if (family === 4) {
          // The command as people run it (a process per probe), for IPv4; IPv6 through the same code
          // in this process.
          const r = await sluice([
            "explain",
            "--from",
            row.from,
            "--to",
            row.to,
            "--port",
            port,
            "-f",
            dir,
            "-o",
            "json",
          ]);
          assert.equal(r.code, 0, `${where}: ${r.stderr}`);
          x = JSON.parse(r.stdout) as ExplainJson;
        } else
          x = explainRequest(inputs, { from: row.from, to: row.to, port, ipv6: true })
            .json as unknown as ExplainJson;
        if (x.verdict !== row.verdict)
          mismatches.push(`${where}: explain ${x.verdict}, probe ${row.verdict}`);
        const proto = protocolNumber(row.protocol);
        const ruleIds = (direction: "egress" | "ingress") => [
          ...new Set(
            events
              .filter(
                (e) =>
                  e.direction === direction &&
                  DECISIVE.has(e.reason) &&
                  e.protocol === proto &&
                  e.dport === row.port &&
                  sameIp(e.src, x.from.address) &&
                  sameIp(e.dst, x.to.address),
              )
              .map((e) => e.ruleId),
          ),
        ];
        for (const side of [x.egress, x.ingress]) {
          assert.ok(side, `${where}: both ends are pods`);
          assert.ok(side.agrees, `${where}: ${side.problem}`);
          for (const s of side.steps) outcomes.add(`${s.tier} ${s.outcome}`);
          outcomes.add(`decided by ${side.decision.by}`);
        }
        const egress = x.egress!;
        const ingress = x.ingress!;
        const seen = { egress: ruleIds("egress"), ingress: ruleIds("ingress") };
        const want = {
          egress: [egress.decision.ruleId],
          // A packet dropped at the source never reaches the destination's program.
          ingress: egress.decision.verdict === "deny" ? [] : [ingress.decision.ruleId],
        };
        if (JSON.stringify(seen) !== JSON.stringify(want))
          mismatches.push(
            `${where}: flow events name rules ${JSON.stringify(seen)}, explain ${JSON.stringify(want)}`,
          );
      });
      assert.deepEqual(mismatches, []);
      t.diagnostic(`IPv${family}: ${report.results.length} probes, ${events.length} flow events`);
    }
    // The fixture exercises every kind of step explain names.
    for (const o of [
      "admin pass",
      "admin deny",
      "admin allow",
      "admin no-match",
      "namespace allow",
      "namespace deny",
      "namespace overridden",
      "namespace isolates",
      "baseline deny",
      "decided by rule",
      "decided by default",
    ])
      assert.ok(outcomes.has(o), `the fixture has no step "${o}": ${[...outcomes].join(", ")}`);
  } finally {
    for (const c of closers.reverse()) c();
    await lab.destroy();
  }
  assert.deepEqual(
    labNetns().filter((n) => !existing.has(n)),
    [],
  );
});
