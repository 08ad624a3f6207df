// The legacy tc clsact path for kernels without tcx (issue 2 §2). This kernel has tcx, so:
// - the automatic fallback runs against the real kernel with an addon whose tcx attach fails the way
//   a pre-6.6 kernel's does (EOPNOTSUPP), everything else real: filters attached, recorded, upgraded
//   in place, adopted by a restarted agent (which stays on tc), removed;
// - the whole lab runs with agents forced onto tc filters (`--attach-mode tc`): real packets measure
//   what `sluice matrix` says, live replacement and agent restarts keep the verdicts, `datapath remove`
//   deletes the filters.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { attachAll, detachStale, replaceAll } from "../../operator/src/datapath/kernel/attachments.ts";
import { type BpfAddon, type BpfError, loadAddon } from "../../operator/src/datapath/kernel/bpf-addon.ts";
import {
  attachedProgramId,
  attachOrReplace,
  recordedAttachment,
} from "../../operator/src/datapath/kernel/links.ts";
import { DatapathPins } from "../../operator/src/datapath/kernel/pins.ts";
import { type Datapath, loadDatapath } from "../../operator/src/datapath/kernel/programs.ts";
import { Lab } from "../../operator/src/lab/lab.ts";
import { diffMatrices, type MatrixJson } from "../../operator/src/api/matrix-rows.ts";
import { pinRoot, testInterface } from "../kernel/addon-rig.ts";
import { requirePrivileged } from "../support/privileged.ts";
import {
  agentMissing,
  basicTopology,
  fixture,
  matrixMissing,
  SLUICE,
  sluice,
  TOPOLOGY,
} from "./lab-support.ts";

// The real addon, except that tcx attach fails as on a kernel that predates tcx links.
function addonWithoutTcx(): BpfAddon {
  const real = loadAddon();
  return Object.assign(Object.create(real) as BpfAddon, {
    attachTcx(): number {
      const e = new Error("bpf_prog_attach_opts(tcx): Operation not supported") as BpfError;
      e.op = "bpf_prog_attach_opts";
      e.errno = 95;
      e.code = "EOPNOTSUPP";
      throw e;
    },
  });
}

function programIds(dp: Datapath): { ingress: number; egress: number } {
  return {
    ingress: dp.addon.progInfo(dp.programFor("ingress")).id,
    egress: dp.addon.progInfo(dp.programFor("egress")).id,
  };
}

describe("tc fallback", () => {
  test("auto mode: a kernel refusing tcx gets tc filters, upgraded in place, adopted, removed", (t) => {
    if (!requirePrivileged(t)) return;
    const root = pinRoot();
    const dev = testInterface();
    const opened: Datapath[] = [];
    try {
      execFileSync("ip", ["link", "set", dev.name, "up"]);
      const iface = { ifname: dev.name, ifindex: loadAddon().ifNameToIndex(dev.name) };
      const old = loadDatapath({ pinRoot: root.path, addon: addonWithoutTcx() });
      opened.push(old);
      const first = attachAll(old, [iface]);
      assert.deepEqual(
        first.map((a) => [a.hook, a.mode, a.adopted]),
        [
          ["ingress", "tc", false],
          ["egress", "tc", false],
        ],
      );
      assert.equal(existsSync(join(root.path, "links")), false, "no tcx link pinned");
      assert.deepEqual(
        new DatapathPins(root.path)
          .links()
          .map((l) => `${l.mode}:${l.ifname}-${l.hook}`)
          .sort(),
        [`tc:${dev.name}-egress`, `tc:${dev.name}-ingress`],
      );
      for (const a of first) assert.equal(attachedProgramId(old.addon, a), programIds(old)[a.hook]);

      // An upgrade: a new build's programs replace the filters' programs in place.
      const next = loadDatapath({ pinRoot: root.path, addon: addonWithoutTcx() });
      opened.push(next);
      assert.equal(replaceAll(next), 2);
      for (const a of first) assert.equal(attachedProgramId(next.addon, a), programIds(next)[a.hook]);

      // A restarted agent with the real addon: the endpoint stays on tc (no tcx link beside the filter).
      const restarted = loadDatapath({ pinRoot: root.path });
      opened.push(restarted);
      const again = attachAll(restarted, [iface]);
      assert.deepEqual(
        again.map((a) => [a.mode, a.adopted]),
        [
          ["tc", true],
          ["tc", true],
        ],
      );
      assert.equal(existsSync(join(root.path, "links")), false, "still no tcx link");
      for (const a of again)
        assert.equal(attachedProgramId(restarted.addon, a), programIds(restarted)[a.hook]);

      // An explicit mode moves a hook: the tcx link first, then the filter and its record go; and back.
      const records = () =>
        new DatapathPins(root.path)
          .links()
          .map((l) => `${l.mode}:${l.hook}`)
          .sort();
      const ingress = { pins: restarted.pins, ifname: dev.name, hook: "ingress" as const };
      const progFd = restarted.programFor("ingress");
      const moved = attachOrReplace(restarted.addon, { ...ingress, progFd, mode: "tcx" });
      assert.equal(moved.mode, "tcx");
      assert.equal(attachedProgramId(restarted.addon, moved), programIds(restarted).ingress);
      assert.equal(attachedProgramId(restarted.addon, again[0]), undefined, "the tc filter is gone");
      assert.deepEqual(records(), ["tc:egress", "tcx:ingress"]);
      const back = attachOrReplace(restarted.addon, { ...ingress, progFd, mode: "tc" });
      assert.equal(attachedProgramId(restarted.addon, back), programIds(restarted).ingress);
      assert.equal(attachedProgramId(restarted.addon, moved), undefined, "the tcx link is gone");
      assert.deepEqual(records(), ["tc:egress", "tc:ingress"]);

      // The endpoint is gone from policy: its filters and records are removed.
      assert.equal(detachStale(restarted, new Set()).length, 2);
      for (const a of again) assert.equal(attachedProgramId(restarted.addon, a), undefined);
      assert.deepEqual(new DatapathPins(root.path).links(), []);
    } finally {
      for (const dp of opened) dp.close();
      dev.remove();
      root.remove();
    }
  });

  test("a record of a device that is gone is dropped without error", (t) => {
    if (!requirePrivileged(t)) return;
    const root = pinRoot();
    const dev = testInterface();
    let dp: Datapath | undefined;
    try {
      execFileSync("ip", ["link", "set", dev.name, "up"]);
      dp = loadDatapath({ pinRoot: root.path, attachMode: "tc" });
      attachAll(dp, [{ ifname: dev.name, ifindex: dp.addon.ifNameToIndex(dev.name) }]);
      dev.remove();
      const rec = recordedAttachment(dp.addon, new DatapathPins(root.path).links()[0]);
      assert.equal(rec.ifindex, 0);
      assert.equal(replaceAll(dp), 0, "nothing to replace on a device that is gone");
      assert.equal(detachStale(dp, new Set()).length, 2);
      assert.deepEqual(new DatapathPins(root.path).links(), []);
    } finally {
      dp?.close();
      dev.remove();
      root.remove();
    }
  });

  describe("lab with agents on tc filters (--attach-mode tc)", () => {
    let lab: Lab | undefined;
    const files = [TOPOLOGY, fixture("ingress")];
    let expected: MatrixJson;
    before(async () => {
      if (process.getuid?.() !== 0 || agentMissing() || matrixMissing()) return;
      const m = await sluice(["matrix", "-o", "json", ...files.flatMap((f) => ["-f", f])]);
      assert.equal(m.code, 0, m.stderr);
      expected = JSON.parse(m.stdout) as MatrixJson;
      lab = await Lab.create(basicTopology(), { agentArgs: ["--attach-mode", "tc"] });
      await lab.startAgents(files);
    });
    after(async () => {
      await lab?.destroy();
    });

    // tc filters hang off devices in the node's network namespace: the CLI runs there, as the agent does.
    const sluiceIn = (node: string, args: string[]): { code: number; stdout: string; stderr: string } => {
      const n = lab!.plan.nodes.find((x) => x.name === node)!;
      // nsenter, not `ip netns exec`: that remounts /sys, hiding bpffs.
      const r = spawnSync("nsenter", [`--net=/run/netns/${n.netns}`, "--", SLUICE, ...args], {
        encoding: "utf8",
      });
      return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
    };

    const tcFilters = (node: string): string => {
      const n = lab!.plan.nodes.find((x) => x.name === node)!;
      const devs = readdirSync(join(lab!.nodeBpffsRoot(node), "tc"));
      return devs
        .map((d) => {
          const m = /^(.+)-(ingress|egress)$/.exec(d)!;
          return execFileSync("ip", ["netns", "exec", n.netns, "tc", "filter", "show", "dev", m[1], m[2]], {
            encoding: "utf8",
          });
        })
        .join("");
    };

    test("verdicts agree with sluice matrix; the programs sit in tc filters, no tcx links", async (t) => {
      if (!requirePrivileged(t, () => agentMissing() ?? matrixMissing())) return;
      const got = (await lab!.probe()).results;
      assert.deepEqual(diffMatrices(got, expected.results), []);
      assert.ok(got.some((r) => r.verdict === "deny"));
      for (const n of lab!.plan.nodes) {
        const root = lab!.nodeBpffsRoot(n.name);
        assert.equal(existsSync(join(root, "links")), false, `${n.name}: no tcx links`);
        const links = new DatapathPins(root).links();
        assert.ok(links.length > 0 && links.every((l) => l.mode === "tc"), `${n.name}: tc records`);
        assert.match(tcFilters(n.name), /bpf .*direct-action/);
      }
    });

    test("live replacement of tc filters and agent restarts keep the verdicts", async (t) => {
      if (!requirePrivileged(t, () => agentMissing() ?? matrixMissing())) return;
      for (const n of lab!.plan.nodes) {
        const root = lab!.nodeBpffsRoot(n.name);
        const before = tcFilters(n.name);
        const r = sluiceIn(n.name, ["datapath", "replace", "--bpffs-root", root, "--times", "5"]);
        assert.equal(r.code, 0, r.stderr);
        const out = JSON.parse(r.stdout) as { replacements: number; links: number };
        assert.equal(out.replacements, 5 * out.links);
        assert.notEqual(tcFilters(n.name), before, `${n.name}: the filters run new programs`);
      }
      assert.deepEqual(diffMatrices((await lab!.probe()).results, expected.results), []);
      await lab!.stopAgents("SIGKILL");
      await lab!.startAgents(files);
      assert.deepEqual(diffMatrices((await lab!.probe()).results, expected.results), []);
      for (const n of lab!.plan.nodes)
        assert.equal(existsSync(join(lab!.nodeBpffsRoot(n.name), "links")), false, "restart stayed on tc");
    });

    test("sluice datapath remove deletes the filters", async (t) => {
      if (!requirePrivileged(t, () => agentMissing() ?? matrixMissing())) return;
      await lab!.stopAgents("SIGTERM");
      for (const n of lab!.plan.nodes) {
        const root = lab!.nodeBpffsRoot(n.name);
        const devs = new DatapathPins(root).links();
        const r = sluiceIn(n.name, ["datapath", "remove", "--bpffs-root", root]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(existsSync(root), false);
        for (const l of devs) {
          const shown = execFileSync(
            "ip",
            ["netns", "exec", n.netns, "tc", "filter", "show", "dev", l.ifname, l.hook],
            { encoding: "utf8" },
          );
          assert.equal(shown.trim(), "", `${l.ifname} ${l.hook}: filter removed`);
        }
      }
      const got = (await lab!.probe()).results;
      assert.ok(
        got.every((r) => r.verdict === "allow"),
        "no enforcement left",
      );
    });
  });
});
