// The lab with the static agent enforcing policy: measured verdicts follow the policies and agree
// with `sluice matrix` on the same inputs (issue 3 §4); they survive the agent being killed, and a
// restarted agent adopts the pinned state.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { Lab } from "../../operator/src/lab/lab.ts";
import { diffMatrices, type MatrixJson, sortRows } from "../../operator/src/api/matrix-rows.ts";
import { requirePrivileged } from "../support/privileged.ts";
import {
  agentMissing,
  basicTopology,
  fixture,
  labNetns,
  matrixMissing,
  sluice,
  TOPOLOGY,
  verdictOf,
} from "./lab-support.ts";

async function matrixOf(files: string[]): Promise<MatrixJson> {
  const args = ["matrix", "-o", "json"];
  for (const f of files) args.push("-f", f);
  const r = await sluice(args);
  assert.equal(r.code, 0, `sluice matrix failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as MatrixJson;
}

describe("lab with the static agent", () => {
  test("no policy: every probe allowed (agents attached)", async (t) => {
    if (!requirePrivileged(t, agentMissing)) return;
    const lab = await Lab.create(basicTopology());
    try {
      await lab.startAgents([TOPOLOGY]);
      const report = await lab.probe();
      assert.deepEqual(
        report.results.filter((r) => r.verdict !== "allow"),
        [],
      );
    } finally {
      await lab.destroy();
    }
  });

  for (const scenario of ["ingress", "egress", "traffic"]) {
    test(`scenario ${scenario}: lab run agrees with sluice matrix, v4 and v6`, async (t) => {
      if (!requirePrivileged(t, () => agentMissing() ?? matrixMissing())) return;
      const files = [TOPOLOGY, fixture(scenario)];
      const expected = await matrixOf(files);
      const r = await sluice(["lab", "run", "-o", "json", ...files.flatMap((f) => ["-f", f])]);
      assert.equal(r.code, 0, `sluice lab run failed: ${r.stderr}`);
      const measured = JSON.parse(r.stdout) as MatrixJson;
      assert.deepEqual(Object.keys(measured), ["results"]);
      for (const row of measured.results)
        assert.deepEqual(Object.keys(row), ["from", "to", "port", "protocol", "verdict"]);
      assert.deepEqual(diffMatrices(sortRows(measured.results), sortRows(expected.results)), []);
      assert.ok(
        measured.results.some((x) => x.verdict === "deny"),
        "the scenario denies something",
      );
      const v6 = await sluice(["lab", "run", "--ipv6", "-o", "json", ...files.flatMap((f) => ["-f", f])]);
      assert.equal(v6.code, 0, v6.stderr);
      assert.deepEqual(diffMatrices((JSON.parse(v6.stdout) as MatrixJson).results, expected.results), []);
    });
  }

  describe("agent restarts (ingress scenario)", () => {
    let lab: Lab | undefined;
    const files = [TOPOLOGY, fixture("ingress")];
    before(async () => {
      if (process.getuid?.() !== 0 || agentMissing()) return;
      lab = await Lab.create(basicTopology());
      await lab.startAgents(files);
    });
    after(async () => {
      await lab?.destroy();
    });

    test("policy verdicts as written", async (t) => {
      if (!requirePrivileged(t, agentMissing)) return;
      const rows = (await lab!.probe()).results;
      assert.equal(verdictOf(rows, "ops/probe", "shop/web", 80, "TCP"), "allow");
      assert.equal(verdictOf(rows, "ops/probe", "shop/web", 53, "UDP"), "deny");
      assert.equal(verdictOf(rows, "shop/db", "shop/web", 80, "TCP"), "deny");
      assert.equal(verdictOf(rows, "shop/web", "shop/db", 5432, "TCP"), "allow");
      assert.equal(verdictOf(rows, "ops/probe", "shop/db", 5432, "TCP"), "deny");
      assert.equal(verdictOf(rows, "shop/web", "ops/probe", 8080, "TCP"), "allow");
    });

    test("agents killed -9: verdicts unchanged; restarted agents adopt the pins", async (t) => {
      if (!requirePrivileged(t, agentMissing)) return;
      const before = (await lab!.probe()).results;
      await lab!.stopAgents("SIGKILL");
      const without = (await lab!.probe()).results;
      assert.deepEqual(diffMatrices(without, before), [], "enforcement goes on without the agent");
      await lab!.startAgents(files);
      const adopted = (await lab!.probe()).results;
      assert.deepEqual(diffMatrices(adopted, before), [], "a restarted agent keeps the verdicts");
      await lab!.stopAgents("SIGTERM");
      const stopped = (await lab!.probe()).results;
      assert.deepEqual(diffMatrices(stopped, before), [], "a stopped agent leaves enforcement in place");
    });
  });

  test("Ctrl-C during sluice lab run removes everything it created", async (t) => {
    if (!requirePrivileged(t, agentMissing)) return;
    const existing = new Set(labNetns());
    let pid = 0;
    const running = sluice(["lab", "run", "-o", "json", "-f", TOPOLOGY, "-f", fixture("ingress")], (p) => {
      pid = p;
    });
    let ours: string[] = [];
    for (let i = 0; i < 500 && ours.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
      ours = labNetns().filter((n) => !existing.has(n));
    }
    assert.ok(ours.length > 0, "the lab started");
    await new Promise((r) => setTimeout(r, 300));
    process.kill(pid, "SIGINT");
    const r = await running;
    assert.equal(r.code, 130, r.stderr);
    const runId = ours[0].slice(2, 6);
    assert.deepEqual(labNetns(runId), []);
    assert.equal(existsSync(`/sys/fs/bpf/sluice-lab-${runId}`), false);
  });
});
