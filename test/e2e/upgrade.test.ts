// An agent upgrade across a map layout change, under traffic: the lab's nodes run the agent of the
// last commit of the previous layout (test/support/previous-layout.ts, built from git history into a
// temporary directory), then each node's agent is replaced by this tree's while UDP streams and a TCP
// stream cross the enforced path. The new agent writes this layout's maps, swaps the programs and
// carries conntrack over from the previous layout's maps: nothing allowed is lost, nothing denied
// leaks, the TCP stream survives, a flow whose packets to an ingress-isolated pod pass only as replies
// keeps passing, and no pin of the previous layout is left.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  collect,
  firstLine,
  NODE,
  NODE_FLAGS,
  SLUICE_MAIN,
  spawnIn,
} from "../../operator/src/lab/children.ts";
import { LAYOUT_VERSION } from "../../operator/src/datapath/kernel/maps.ts";
import { Lab } from "../../operator/src/lab/lab.ts";
import { runLiveTraffic } from "../../operator/src/lab/traffic.ts";
import { PREVIOUS_LAYOUT_VERSION as FROM, previousLayoutTree } from "../support/previous-layout.ts";
import { requirePrivileged } from "../support/privileged.ts";
import { agentMissing, basicTopology, DENIED_UDP, fixture, ROOT, STREAMS, TOPOLOGY } from "./lab-support.ts";

const PUSH_PORT = 7070;
const PUSH_SCRIPT = join(ROOT, "test/e2e/udp-push.ts");
const MIGRATED = new RegExp(`upgraded the datapath from layout ${FROM}: (\\d+) conntrack entries`);

// That commit's tree with its BPF objects, addon and generated layout built (its bpf/Makefile's
// default target: everything its agent loads); the dependencies and the toolchain are this tree's
// (the same lockfile).
function buildPreviousLayout(): string {
  const dir = previousLayoutTree();
  try {
    symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
    symlinkSync(join(ROOT, ".tooling"), join(dir, ".tooling"));
    execFileSync("make", ["-C", join(dir, "bpf")], { stdio: ["ignore", "ignore", "pipe"] });
    return dir;
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

test(`agent upgrade from layout ${FROM} to ${LAYOUT_VERSION} under traffic: 0 lost, 0 leaked, no TCP reset, old maps gone`, async (t) => {
  if (!requirePrivileged(t, agentMissing)) return;
  const old = buildPreviousLayout();
  const logs = mkdtempSync(join(tmpdir(), "sluice-upgrade-logs-"));
  const files = [TOPOLOGY, fixture("traffic")];
  let lab: Lab | undefined;
  try {
    lab = await Lab.create(basicTopology(), {
      extraPorts: [{ port: DENIED_UDP, protocol: "UDP" }],
      agentMain: join(old, "operator/src/cli/main.ts"),
      agentLogDir: logs,
    });
    await lab.startAgents(files);
    const nodes = lab.plan.nodes.map((n) => n.name);
    for (const n of nodes)
      assert.ok(readdirSync(lab.nodeBpffsRoot(n)).includes(`sl_ct4_v${FROM}`), `${n} runs layout ${FROM}`);

    const l = lab;
    const verdicts = async () =>
      (await l.probe()).results.map((r) => `${r.from} ${r.to} ${r.port}/${r.protocol} ${r.verdict}`).sort();
    const before = await verdicts();
    // shop/db (ingress-isolated: only TCP 5432 and UDP 5433 from ops) asks ops/probe for a stream: what
    // comes back passes db's ingress only as replies of the flow db's datagram opened.
    const pushServer = spawnIn(l.pod("ops/probe").netns, "push server", [
      NODE,
      ...NODE_FLAGS,
      PUSH_SCRIPT,
      "server",
      String(PUSH_PORT),
      "2000",
      "5000",
    ]);
    assert.equal(await firstLine(pushServer, 10000), "ready");
    const pushed = collect(pushServer, "", 20000);
    const probeIp = l.pod("ops/probe").pod.primaryIp;
    const pushClient = collect(
      spawnIn(l.pod("shop/db").netns, "push client", [
        NODE,
        ...NODE_FLAGS,
        PUSH_SCRIPT,
        "client",
        probeIp,
        String(PUSH_PORT),
        "5000",
      ]),
      "",
      20000,
    );
    const traffic = runLiveTraffic(l, { ...STREAMS, durationMs: 5000, replace: false });
    // Mid-stream, node by node: the old agent stops (its pins and links keep enforcing), the new
    // one starts on the same root.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    l.agentMain = SLUICE_MAIN;
    for (const n of nodes) {
      await l.stopAgent(n);
      await l.startAgent(n, files);
    }
    const r = await traffic;
    t.diagnostic(`upgrade under traffic: ${JSON.stringify(r)}`);
    const { sent } = JSON.parse(await pushed) as { sent: number };
    const { received, overflowed } = JSON.parse(await pushClient) as { received: number; overflowed: number };
    t.diagnostic(
      `reply-only stream to the isolated pod: sent ${sent}, received ${received}, socket overflows ${overflowed}`,
    );
    assert.ok(sent >= 8000, `pushed ${sent}`);
    // Every reply passed the datapath: it arrived, or the kernel counted it at the client's full
    // socket buffer (a client starved of CPU on a loaded machine), which is not a datapath loss.
    assert.ok(
      received + overflowed >= sent,
      `replies lost in the datapath: ${sent - received - overflowed} of ${sent}`,
    );
    assert.ok(r.sent >= 10000, `sent ${r.sent}`);
    assert.equal(r.lost, 0, "no allowed datagram lost");
    assert.equal(r.leaked, 0, "no denied datagram leaked");
    assert.equal(r.tcpReset, false, `TCP stream survived (${r.tcpError})`);
    assert.ok(r.tcpBytes > 1e6 && r.tcpBytes === r.tcpBytesSent, "every TCP byte arrived");

    for (const n of nodes) {
      const pins = readdirSync(l.nodeBpffsRoot(n));
      assert.deepEqual(
        pins.filter((p) => p.endsWith(`_v${FROM}`)),
        [],
        `${n}: layout ${FROM}'s maps removed`,
      );
      assert.ok(pins.includes(`sl_ct4_v${LAYOUT_VERSION}`), `${n} runs layout ${LAYOUT_VERSION}`);
      const log = readFileSync(join(logs, `agent-${n}.log`), "utf8");
      const m = MIGRATED.exec(log);
      assert.ok(m, `${n}: the new agent reports the migration\n${log}`);
    }
    // The streams' flows were tracked by the previous layout's programs and carried over on some node.
    const carried = nodes
      .map((n) => readFileSync(join(logs, `agent-${n}.log`), "utf8"))
      .map((log) => Number(MIGRATED.exec(log)?.[1] ?? 0));
    t.diagnostic(`conntrack entries carried over, by node: ${carried.join(", ")}`);
    assert.ok(
      carried.some((c) => c > 0),
      `conntrack entries carried over: ${carried.join(", ")}`,
    );

    // Every probe gets the verdict it got from the previous layout's datapath.
    const after = await verdicts();
    assert.ok(before.some((v) => v.endsWith("deny")) && before.some((v) => v.endsWith("allow")));
    assert.deepEqual(after, before);
  } finally {
    await lab?.destroy();
    rmSync(old, { recursive: true, force: true });
    rmSync(logs, { recursive: true, force: true });
  }
});
