// Rule counters and audit outcomes in the kernel (issue 13 §3/§4), through BPF_PROG_RUN on maps the map
// writer fills from hand-built MapStates with audit entries and audited defaults: each rule's slot counts
// packets, bytes and flows (a tracked flow's later packets and replies to its rule); a packet whose fate
// the Audit policies would change counts in the audit slot and is reported with audit_verdict; the
// slots survive a restarted writer. And for random audit states, the program's verdict, deciding rule
// and audit outcome equal lookupVerdict's.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type FlowEvent, openFlowEvents } from "../../operator/src/datapath/flow-events.ts";
import { type Datapath, loadDatapath } from "../../operator/src/datapath/kernel/programs.ts";
import { MapSync, type RuleCounterRow } from "../../operator/src/datapath/writer/sync.ts";
import { lookupVerdict } from "../../operator/src/policy/lookup.ts";
import type { Direction, MapState, PolicyEntry, Verdict } from "../../operator/src/policy/mapstate.ts";
import { packet } from "../support/packets.ts";
import { privilegeProblem, requirePrivileged } from "../support/privileged.ts";
import { pinRoot } from "./addon-rig.ts";

const TC_ACT_OK = 0;
const EP_ID = 7;
const POD = "10.0.0.10";
const PEER = "10.1.0.20";
const PEER_ID = 1000;
const OTHER = "10.2.0.30";
const OTHER_ID = 1001;
const IPCACHE = [
  { cidr: `${PEER}/32`, identity: PEER_ID },
  { cidr: `${OTHER}/32`, identity: OTHER_ID },
];

const tcpEntry = (
  direction: Direction,
  identity: number,
  port: number,
  verdict: Verdict,
  ruleId: number,
  audit?: { verdict: Verdict; ruleId: number },
): PolicyEntry => ({
  direction,
  identity,
  protocol: 6,
  port,
  portPrefixLen: 16,
  verdict,
  ruleId,
  ...(audit && { audit }),
});

function stateOf(policy: MapState["endpoints"][number]["policy"]): MapState {
  return { ipcache: IPCACHE, endpoints: [{ key: "ns/pod", id: EP_ID, identity: 500, policy }] };
}

// Egress: TCP 5432 to the peer allowed by rule 11; TCP 6000 allowed by rule 12 that an Audit policy
// (rule 21) would deny; the rest denied by default. Ingress: allowed by default, which an Audit policy
// would isolate.
const AUDITED = stateOf({
  defaultDeny: { ingress: false, egress: true },
  auditDefaultDeny: { ingress: true, egress: true },
  entries: [
    tcpEntry("egress", PEER_ID, 5432, "allow", 11),
    tcpEntry("egress", PEER_ID, 6000, "allow", 12, { verdict: "deny", ruleId: 21 }),
  ],
});

const skip = privilegeProblem() !== undefined && process.env.CI !== "true";

describe("rule counters and audit", { skip: skip ? privilegeProblem() : false }, () => {
  let root: ReturnType<typeof pinRoot>;
  let dp: Datapath;
  const ctx = new Uint8Array(192);
  new DataView(ctx.buffer).setUint32(40, 1, true); // __sk_buff.ifindex: loopback

  before(() => {
    if (privilegeProblem()) return;
    root = pinRoot();
    dp = loadDatapath({ pinRoot: root.path });
  });
  after(() => {
    dp?.close();
    root?.remove();
  });

  const run = (dir: Direction, frame: Uint8Array) =>
    dp.addon.progTestRun(dp.programFor(dir === "egress" ? "ingress" : "egress"), { data: frame, ctx });
  const tcp = (src: string, dst: string, sport: number, dport: number, flags = 0x02) =>
    packet({ src, dst, l4: { kind: "tcp", sport, dport, flags } });
  const row = (rows: RuleCounterRow[], ruleId: number, audit: boolean, direction: Direction = "egress") =>
    rows.find((r) => r.ruleId === ruleId && r.audit === audit && r.direction === direction);

  test("each rule's slot counts packets, bytes and flows; audit slots count what the Audit policies would change", async (t) => {
    if (!requirePrivileged(t)) return;
    const sync = MapSync.adopt(dp.addon, dp.maps, { barrier: false });
    const report = sync.apply(AUDITED, () => 1);
    assert.equal(report.uncountedRules, undefined);
    const slots = sync.ruleSlots();
    assert.deepEqual(slots.map((s) => [s.endpointKey, s.direction, s.ruleId, s.audit]).sort(), [
      ["ns/pod", "egress", 11, false],
      ["ns/pod", "egress", 12, false],
      ["ns/pod", "egress", 21, true],
      ["ns/pod", "ingress", 0, true],
    ]);
    assert.equal(new Set(slots.map((s) => s.slot)).size, 4, "one slot each");
    assert.ok(slots.every((s) => s.slot > 0));

    dp.maps.config.write({ event_sample_allow: 0, event_sample_deny: 1, events_per_sec: 0, flags: 0 });
    const events: FlowEvent[] = [];
    const stream = openFlowEvents(dp.addon, dp.maps.eventsFd, { pollMs: 10 });
    stream.on("events", (b) => events.push(...b));
    try {
      const syn = tcp(POD, PEER, 40000, 5432);
      assert.equal(run("egress", syn).retval, TC_ACT_OK);
      const ack = tcp(POD, PEER, 40000, 5432, 0x10);
      assert.equal(run("egress", ack).retval, TC_ACT_OK, "established");
      const reply = tcp(PEER, POD, 5432, 40000, 0x12);
      assert.equal(run("ingress", reply).retval, TC_ACT_OK, "reply");
      let rows = sync.ruleCounterTable();
      assert.deepEqual(
        { ...row(rows, 11, false) },
        {
          ...row(rows, 11, false),
          packets: 3n,
          flows: 1n,
          bytes: BigInt(syn.length + ack.length + reply.length),
        },
      );
      for (const r of rows.filter((r) => r.ruleId !== 11)) assert.equal(r.packets, 0n, `slot ${r.slot}`);

      // Allowed by rule 12, which the Audit policies would deny by rule 21: counted in both.
      const audited = tcp(POD, PEER, 40001, 6000);
      assert.equal(run("egress", audited).retval, TC_ACT_OK, "audit changes no packet's fate");
      assert.equal(run("egress", tcp(POD, PEER, 40001, 6000, 0x10)).retval, TC_ACT_OK);
      assert.equal(run("ingress", tcp(PEER, POD, 6000, 40001, 0x12)).retval, TC_ACT_OK);
      rows = sync.ruleCounterTable();
      assert.deepEqual([row(rows, 12, false)?.packets, row(rows, 12, false)?.flows], [3n, 1n]);
      assert.deepEqual([row(rows, 21, true)?.packets, row(rows, 21, true)?.flows], [3n, 1n]);

      // Ingress from another peer: allowed by the default, which the Audit policies would deny.
      assert.equal(run("ingress", tcp(OTHER, POD, 50000, 80)).retval, TC_ACT_OK);
      rows = sync.ruleCounterTable();
      const def = row(rows, 0, true, "ingress");
      assert.deepEqual([def?.packets, def?.flows], [1n, 1n]);

      await waitFor(() => events.length >= 2);
      const audits = events.filter((e) => e.audit);
      assert.deepEqual(
        audits.map((e) => [e.direction, e.verdict, e.ruleId, e.audit?.verdict, e.audit?.ruleId]),
        [
          ["egress", "allow", 12, "deny", 21],
          ["ingress", "allow", 0, "deny", 0],
        ],
      );
      assert.equal(events.length, 2, "no other event: allowed packets are not sampled here");
    } finally {
      stream.stop();
      dp.maps.config.write({ event_sample_allow: 0, event_sample_deny: 0, events_per_sec: 0, flags: 0 });
    }

    // A restarted writer reads the slots back: same slots, counts kept, nothing rewritten.
    const before = sync.ruleCounterTable();
    const again = MapSync.adopt(dp.addon, dp.maps, { barrier: false });
    const r = again.apply(AUDITED, () => 1);
    assert.deepEqual([r.flips, r.policyWritten, r.endpointsWritten], [0, 0, 0]);
    assert.deepEqual(again.ruleCounterTable(), before);

    // Promoting the Audit policy (rule 21 enforced): rule 12's pair goes, 21 is counted as enforced, from 0.
    const promoted = stateOf({
      defaultDeny: { ingress: true, egress: true },
      entries: [
        tcpEntry("egress", PEER_ID, 5432, "allow", 11),
        tcpEntry("egress", PEER_ID, 6000, "deny", 21),
      ],
    });
    again.apply(promoted, () => 1);
    const after = again.ruleCounterTable();
    assert.deepEqual(after.map((s) => [s.ruleId, s.audit]).sort(), [
      [11, false],
      [21, false],
    ]);
    assert.equal(row(after, 11, false)?.slot, row(before, 11, false)?.slot, "a pair keeps its slot");
    assert.equal(row(after, 11, false)?.packets, 3n);
    assert.equal(row(after, 21, false)?.packets, 0n, "a slot handed out again starts from zero");
    assert.notEqual(run("egress", tcp(POD, PEER, 40002, 6000)).retval, TC_ACT_OK);
    assert.equal(row(again.ruleCounterTable(), 21, false)?.flows, 1n);
    again.apply({ ipcache: [], endpoints: [] }, () => 1);
    assert.deepEqual(again.ruleCounterTable(), []);
  });

  test("random audit states: the program's verdict, deciding rule and audit outcome equal lookupVerdict's", (t) => {
    if (!requirePrivileged(t)) return;
    const sync = MapSync.adopt(dp.addon, dp.maps, { barrier: false });
    let seed = Number(process.env.SLUICE_DIFF_SEED ?? Date.now() % 100000);
    t.diagnostic(`seed ${seed}`);
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const verdict = (): Verdict => (rand(2) === 0 ? "allow" : "deny");
    const ports = [80, 81, 443, 5432];
    let sport = 20000;
    for (let run_ = 0; run_ < 40; run_++) {
      const entries = new Map<string, PolicyEntry>();
      let ruleId = 100;
      for (let i = rand(8); i > 0; i--) {
        const direction: Direction = rand(2) === 0 ? "ingress" : "egress";
        const identity = [0, PEER_ID, OTHER_ID][rand(3)];
        const any = rand(5) === 0;
        const port = ports[rand(ports.length)];
        const len = [16, 14, 0][rand(3)];
        const v = verdict();
        const e: PolicyEntry = {
          direction,
          identity,
          protocol: any ? 0 : 6,
          port: any ? 0 : port & ((0xffff << (16 - len)) & 0xffff),
          portPrefixLen: any ? 0 : len,
          verdict: v,
          ruleId: ruleId++,
          ...(rand(2) === 0 && { audit: { verdict: v === "allow" ? "deny" : "allow", ruleId: ruleId++ } }),
        };
        entries.set(`${direction}|${identity}|${e.protocol}|${e.port}|${e.portPrefixLen}`, e);
      }
      const defaultDeny = { ingress: rand(2) === 0, egress: rand(2) === 0 };
      const policy = {
        defaultDeny,
        ...(rand(2) === 0 && { auditDefaultDeny: { ingress: rand(2) === 0, egress: rand(2) === 0 } }),
        entries: [...entries.values()],
      };
      sync.apply(stateOf(policy), () => 1);
      for (const direction of ["ingress", "egress"] as const)
        for (const [peer, peerId] of [
          [PEER, PEER_ID],
          [OTHER, OTHER_ID],
        ] as const)
          for (const port of [...ports, 8080]) {
            const want = lookupVerdict(policy, direction, peerId, 6, port);
            const before = sync.ruleCounterTable();
            sport++;
            const frame = direction === "egress" ? tcp(POD, peer, sport, port) : tcp(peer, POD, sport, port);
            const got = run(direction, frame).retval === TC_ACT_OK ? "allow" : "deny";
            const what = `run ${run_} ${direction} ${peer}:${port} ${JSON.stringify(policy)}`;
            assert.equal(got, want.verdict, what);
            const moved = sync
              .ruleCounterTable()
              .filter((r) => r.flows !== (before.find((b) => b.slot === r.slot)?.flows ?? 0n));
            const rule = moved.filter((r) => !r.audit).map((r) => r.ruleId);
            const audit = moved.filter((r) => r.audit).map((r) => r.ruleId);
            assert.deepEqual(rule, want.entry ? [want.entry.ruleId] : [], `deciding rule: ${what}`);
            assert.deepEqual(audit, want.audit ? [want.audit.ruleId] : [], `audit outcome: ${what}`);
            if (want.audit) assert.notEqual(want.audit.verdict, want.verdict);
          }
    }
    sync.apply({ ipcache: [], endpoints: [] }, () => 1);
  });
});

async function waitFor(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
}
