// The node-wide verdict counters (sl_vcnt) through BPF_PROG_RUN: each judged packet moves exactly the
// (direction, verdict, reason) row of its decision, by one packet and its length, and readVerdictCounters
// sums them over CPUs. Also that the benchmark's variant (bpf/build/variants/sluice_no_vcnt.bpf.o) really
// counts nothing there, or the benchmark would price nothing.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { canonicalEntry } from "../../operator/src/datapath/codec/keys.ts";
import { repoRoot } from "../../operator/src/datapath/kernel/bpf-addon.ts";
import { type Datapath, loadDatapath } from "../../operator/src/datapath/kernel/programs.ts";
import { readVerdictCounters, type VerdictCounter } from "../../operator/src/datapath/kernel/verdicts.ts";
import { endpointValueOf } from "../../operator/src/datapath/writer/endpoint-value.ts";
import { writePolicyChanges } from "../../operator/src/datapath/writer/policy-store.ts";
import { writeIpcache } from "../../operator/src/datapath/writer/sync.ts";
import type { PolicyEntry } from "../../operator/src/policy/mapstate.ts";
import { IPPROTO, packet, truncate } from "../support/packets.ts";
import { privilegeProblem, requirePrivileged } from "../support/privileged.ts";
import { pinRoot } from "./addon-rig.ts";

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
const POD = "10.0.0.10";
const PEER = "10.0.1.20";
const PEER_ID = 1000;
// Ingress denied by default, audited alike (SL_EP_DEFAULT_DENY_INGRESS | SL_EP_AUDIT_DENY_INGRESS).
const DENY_INGRESS = 1 | 8;
const variantObject = join(repoRoot(), "bpf/build/variants/sluice_no_vcnt.bpf.o");

const skip = privilegeProblem() !== undefined && process.env.CI !== "true";

function rowKey(r: Pick<VerdictCounter, "direction" | "verdict" | "reason">): string {
  return `${r.direction} ${r.verdict} ${r.reason}`;
}

// The rows that moved between two reads, with how much.
function moved(before: VerdictCounter[], after: VerdictCounter[]): Map<string, [number, number]> {
  const was = new Map(before.map((r) => [rowKey(r), r]));
  const out = new Map<string, [number, number]>();
  for (const r of after) {
    const b = was.get(rowKey(r));
    const d: [number, number] = [r.packets - (b?.packets ?? 0), r.bytes - (b?.bytes ?? 0)];
    if (d[0] !== 0 || d[1] !== 0) out.set(rowKey(r), d);
  }
  return out;
}

describe("node-wide verdict counters", { skip: skip ? privilegeProblem() : false }, () => {
  let root: ReturnType<typeof pinRoot>;
  let dp: Datapath;
  const ctx = new Uint8Array(192); // struct __sk_buff; ifindex (offset 40) = 1: BPF_PROG_RUN's loopback
  new DataView(ctx.buffer).setUint32(40, 1, true);

  before(() => {
    if (privilegeProblem()) return;
    root = pinRoot();
    dp = loadDatapath({ pinRoot: root.path });
    writeIpcache(dp.maps, [], [[`${PEER}/32`, PEER_ID]]);
    const rule = (port: number, verdict: "allow" | "deny", ruleId: number): PolicyEntry =>
      canonicalEntry({
        direction: "ingress",
        identity: PEER_ID,
        protocol: IPPROTO.TCP,
        port,
        portPrefixLen: 16,
        verdict,
        ruleId,
      });
    const entries = [rule(80, "allow", 1), rule(23, "deny", 2)];
    writePolicyChanges(
      dp.maps,
      () => new Map(),
      [],
      entries.map((entry) => ({ epId: 1, gen: 0 as const, entry })),
    );
    // Ingress denied by default, egress allowed by default.
    dp.maps.endpoints.set(
      { ifindex: 1 },
      endpointValueOf(
        { id: 1, identity: 500, policyRev: 1, gen: 0, flags: DENY_INGRESS, slot: 0, auditSlot: [0, 0] },
        entries,
      ),
    );
  });
  after(() => {
    dp?.close();
    root?.remove();
  });

  const run = (d: Datapath, prog: "from" | "to", frame: Uint8Array) =>
    d.addon.progTestRun(d.programFor(prog === "from" ? "ingress" : "egress"), { data: frame, ctx }).retval;
  const tcp = (src: string, dst: string, sport: number, dport: number) =>
    packet({ src, dst, l4: { kind: "tcp", sport, dport, flags: 0x10 }, payload: 20 });

  test("every (direction, verdict, reason) row but no-endpoint, zeros included", (t) => {
    if (!requirePrivileged(t)) return;
    const rows = readVerdictCounters(dp);
    assert.equal(rows.length, 2 * 2 * 9);
    assert.equal(new Set(rows.map(rowKey)).size, rows.length);
    const reasons = [...new Set(rows.map((r) => r.reason))].sort();
    assert.deepEqual(reasons, [
      "ct-established",
      "ct-related",
      "ct-reply",
      "default",
      "fragment",
      "malformed",
      "ndp",
      "policy",
      "source-spoofed",
    ]);
  });

  test("each verdict moves its own row by the packet and its bytes", (t) => {
    if (!requirePrivileged(t)) return;
    const cases: [string, "from" | "to", Uint8Array, number, string][] = [
      ["allowed by policy", "to", tcp(PEER, POD, 40000, 80), TC_ACT_OK, "ingress allowed policy"],
      ["denied by policy", "to", tcp(PEER, POD, 40001, 23), TC_ACT_SHOT, "ingress denied policy"],
      ["denied by default", "to", tcp(PEER, POD, 40002, 9999), TC_ACT_SHOT, "ingress denied default"],
      ["conntrack reply", "from", tcp(POD, PEER, 80, 40000), TC_ACT_OK, "egress allowed ct-reply"],
      ["conntrack established", "to", tcp(PEER, POD, 40000, 80), TC_ACT_OK, "ingress allowed ct-established"],
      ["allowed by default", "from", tcp(POD, PEER, 41000, 443), TC_ACT_OK, "egress allowed default"],
      [
        "malformed",
        "to",
        truncate(tcp(PEER, POD, 40003, 80), 14 + 20 + 10),
        TC_ACT_SHOT,
        "ingress denied malformed",
      ],
    ];
    for (const [what, prog, frame, verdict, row] of cases) {
      const before = readVerdictCounters(dp);
      assert.equal(run(dp, prog, frame), verdict, what);
      assert.deepEqual(moved(before, readVerdictCounters(dp)), new Map([[row, [1, frame.length]]]), what);
    }
    // Repeated, the packets add up on the same row.
    const before = readVerdictCounters(dp);
    const frame = tcp(PEER, POD, 40001, 23);
    for (let i = 0; i < 5; i++) run(dp, "to", frame);
    assert.deepEqual(
      moved(before, readVerdictCounters(dp)),
      new Map([["ingress denied policy", [5, 5 * frame.length]]]),
    );
  });

  test("the benchmark's variant, compiled with SL_NO_VERDICT_COUNTERS, judges alike and counts nothing there", (t) => {
    if (!requirePrivileged(t)) return;
    const variant = loadDatapath({ pinRoot: root.path, objectPath: variantObject });
    try {
      const before = readVerdictCounters(dp);
      const slot = dp.maps.counters.total(0, 0, 2).packets;
      assert.equal(run(variant, "to", tcp(PEER, POD, 40001, 23)), TC_ACT_SHOT);
      assert.equal(run(variant, "to", tcp(PEER, POD, 40004, 80)), TC_ACT_OK);
      assert.deepEqual(moved(before, readVerdictCounters(dp)), new Map());
      assert.equal(dp.maps.counters.total(0, 0, 2).packets, slot + 1n, "the endpoint's counter still counts");
    } finally {
      variant.close();
    }
  });
});
