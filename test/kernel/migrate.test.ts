// Upgrading from layout 4 (and 3): a node whose conntrack and counters live in an older layout's pinned
// maps (loaded from bpf/testdata/layout4_maps.bpf.c and layout3_maps.bpf.c, same names, types and sizes)
// gets them carried into this layout's maps, and the replies of flows tracked before the upgrade keep
// passing the new program.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Enforcer } from "../../operator/src/agent/enforcer.ts";
import { repoRoot } from "../../operator/src/datapath/kernel/bpf-addon.ts";
import * as C from "../../operator/src/datapath/codec/codecs.ts";
import { LayoutMigration } from "../../operator/src/datapath/migrate.ts";
import { type Datapath, loadDatapath } from "../../operator/src/datapath/kernel/programs.ts";
import { MapSync } from "../../operator/src/datapath/writer/sync.ts";
import { PerCpuMap, TypedMap, u32Key } from "../../operator/src/datapath/kernel/typed-map.ts";
import type { MapState } from "../../operator/src/policy/mapstate.ts";
import { packet } from "../support/packets.ts";
import { privilegeProblem, requirePrivileged } from "../support/privileged.ts";
import { addon, pinRoot, testInterface } from "./addon-rig.ts";

const layout3Object = join(repoRoot(), "bpf/build/testdata/layout3_maps.bpf.o");
const layout4Object = join(repoRoot(), "bpf/build/testdata/layout4_maps.bpf.o");
const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
const EP_ID = 7;
const POD4 = "10.0.0.10";
const PEER4 = "10.1.0.20";
const POD6 = "fd00::10";
const PEER6 = "fd00:1::20";
const PEER_ID = 1000;

// One endpoint on ifindex 1 (BPF_PROG_RUN's device) that may only open TCP 5432 to the peer: a reply
// from the peer passes only as a reply of a tracked flow.
const state: MapState = {
  ipcache: [
    { cidr: `${PEER4}/32`, identity: PEER_ID },
    { cidr: `${PEER6}/128`, identity: PEER_ID },
  ],
  endpoints: [
    {
      key: "ns/pod",
      id: EP_ID,
      identity: 500,
      policy: {
        defaultDeny: { ingress: true, egress: true },
        entries: [
          {
            direction: "egress",
            identity: PEER_ID,
            protocol: 6,
            port: 5432,
            portPrefixLen: 16,
            verdict: "allow",
            ruleId: 1,
          },
        ],
      },
    },
  ],
};

const skip = privilegeProblem() !== undefined && process.env.CI !== "true";

describe("layout migration", { skip: skip ? privilegeProblem() : false }, () => {
  let root: ReturnType<typeof pinRoot>;
  let dp: Datapath;
  const ctx = new Uint8Array(192);
  new DataView(ctx.buffer).setUint32(40, 1, true); // __sk_buff.ifindex: loopback

  before(() => {
    if (privilegeProblem()) return;
    root = pinRoot();
    // The node before the upgrade: layout 3's maps pinned under the root.
    addon().loadObject(layout3Object, { pinRoot: root.path }).close();
    dp = loadDatapath({ pinRoot: root.path });
    MapSync.adopt(addon(), dp.maps).apply(state, () => 1);
  });
  after(() => {
    dp?.close();
    root?.remove();
  });

  const run = (prog: "from" | "to", frame: Uint8Array) =>
    addon().progTestRun(dp.programFor(prog === "from" ? "ingress" : "egress"), { data: frame, ctx }).retval;
  const tcp = (src: string, dst: string, sport: number, dport: number) =>
    packet({ src, dst, l4: { kind: "tcp", sport, dport, flags: 0x10 } });

  test("conntrack and counters of layout 3 are carried over, then its pins removed", (t) => {
    if (!requirePrivileged(t)) return;
    const a = addon();
    const oldCt = new TypedMap(a, a.objGet(join(root.path, "sl_ct_v3")), "sl_ct_v3", C.v3CtKey, C.ctValue);
    const oldCnt = new PerCpuMap(
      a,
      a.objGet(join(root.path, "sl_cnt_v3")),
      "sl_cnt_v3",
      C.v3CounterKey,
      C.counterValue,
    );
    try {
      assert.deepEqual(dp.pins.olderLayoutMaps().sort(), ["sl_cnt_v3", "sl_ct_v3"]);
      // Flows the pod opened, tracked by the new program, then moved into the old map as layout 3's
      // program would have stored them (same orientation, family in the key, addresses in 16 bytes).
      assert.equal(run("from", tcp(POD4, PEER4, 40000, 5432)), TC_ACT_OK);
      assert.equal(run("from", tcp(POD6, PEER6, 40000, 5432)), TC_ACT_OK);
      const wide = (b: Uint8Array) => {
        const out = new Uint8Array(16);
        out.set(b);
        return out;
      };
      for (const [k, v] of dp.maps.conntrack4.entries())
        oldCt.set({ ...k, family: 2, saddr: wide(k.saddr), daddr: wide(k.daddr) }, v);
      for (const [k, v] of dp.maps.conntrack6.entries()) oldCt.set({ ...k, family: 10 }, v);
      dp.maps.conntrack4.deleteMany(dp.maps.conntrack4.keys());
      dp.maps.conntrack6.deleteMany(dp.maps.conntrack6.keys());
      assert.equal(oldCt.count(), 2);
      // Without the old entries the replies are dropped: what an upgrade without migration does.
      assert.equal(run("to", tcp(PEER4, POD4, 5432, 40000)), TC_ACT_SHOT);
      assert.equal(run("to", tcp(PEER6, POD6, 5432, 40000)), TC_ACT_SHOT);

      const cpus = oldCnt.cpus;
      oldCnt.setPerCpu(
        { ep_id: EP_ID, dir: 1, verdict: 1 },
        Array.from({ length: cpus }, (_, c) => ({ packets: BigInt(10 + c), bytes: BigInt(1000 * (c + 1)) })),
      );
      oldCnt.setPerCpu(
        { ep_id: 99, dir: 0, verdict: 2 },
        Array.from({ length: cpus }, () => ({ packets: 1n, bytes: 1n })),
      );

      const m = LayoutMigration.open(dp);
      assert.ok(m, "older pins found");
      assert.equal(m.copyConntrack(dp.maps), 2);
      assert.equal(run("to", tcp(PEER4, POD4, 5432, 40000)), TC_ACT_OK);
      assert.equal(run("to", tcp(PEER6, POD6, 5432, 40000)), TC_ACT_OK);
      // A second copy (after the program swap) adds nothing and leaves what the new program wrote.
      assert.equal(run("from", tcp(POD4, PEER4, 40000, 5432)), TC_ACT_OK);
      const tracked = dp.maps.conntrack4.entries();
      assert.equal(m.copyConntrack(dp.maps), 0);
      assert.deepEqual(dp.maps.conntrack4.entries(), tracked);

      const slot = 3;
      const before = dp.maps.counters.total(slot, 1, 1);
      assert.equal(m.copyCounters(dp.maps, new Map([[EP_ID, slot]])), 1, "endpoint 99 has no slot: dropped");
      const got = dp.maps.counters.total(slot, 1, 1);
      const sum = (f: (c: number) => number) =>
        BigInt(Array.from({ length: cpus }, (_, c) => f(c)).reduce((x, y) => x + y, 0));
      assert.deepEqual(got, {
        packets: before.packets + sum((c) => 10 + c),
        bytes: before.bytes + sum((c) => 1000 * (c + 1)),
      });

      const report = m.finish();
      assert.deepEqual(report.removedPins.sort(), ["sl_cnt_v3", "sl_ct_v3"]);
      assert.deepEqual([report.conntrack, report.counters], [2, 1]);
      assert.ok(!existsSync(join(root.path, "sl_ct_v3")) && !existsSync(join(root.path, "sl_cnt_v3")));
      assert.equal(LayoutMigration.open(dp), undefined, "nothing left to migrate");
      // The maps of this layout are untouched by the removal.
      assert.equal(run("to", tcp(PEER4, POD4, 5432, 40000)), TC_ACT_OK);
    } finally {
      a.closeFd(oldCt.fd);
      a.closeFd(oldCnt.fd);
    }
  });

  test("conntrack and counters of layout 4 are carried over as they are, then its pins removed", (t) => {
    if (!requirePrivileged(t)) return;
    const a = addon();
    const old = pinRoot();
    let d: Datapath | undefined;
    const fds: number[] = [];
    const open = (name: string) => {
      const fd = a.objGet(join(old.path, name));
      fds.push(fd);
      return fd;
    };
    try {
      a.loadObject(layout4Object, { pinRoot: old.path }).close();
      d = loadDatapath({ pinRoot: old.path });
      const dp4 = d;
      const run4 = (prog: "from" | "to", frame: Uint8Array) =>
        a.progTestRun(dp4.programFor(prog === "from" ? "ingress" : "egress"), { data: frame, ctx }).retval;
      MapSync.adopt(a, d.maps).apply(state, () => 1);
      assert.deepEqual(d.pins.olderLayoutMaps().sort(), [
        "sl_cnt_v4",
        "sl_ct4_v4",
        "sl_ct6_v4",
        "sl_ep_v4",
        "sl_vcnt_v4",
      ]);
      // Flows the pod opened, tracked by the new program, then moved into layout 4's maps as its program
      // stored them: same keys, and values without flags or slots.
      assert.equal(run4("from", tcp(POD4, PEER4, 40000, 5432)), TC_ACT_OK);
      assert.equal(run4("from", tcp(POD6, PEER6, 40000, 5432)), TC_ACT_OK);
      const ct4 = new TypedMap(a, open("sl_ct4_v4"), "sl_ct4_v4", C.ct4Key, C.ctValue);
      const ct6 = new TypedMap(a, open("sl_ct6_v4"), "sl_ct6_v4", C.ct6Key, C.ctValue);
      const layout4 = (v: C.CtValue): C.CtValue => ({ ...v, flags: 0, slot: 0, audit_slot: 0 });
      for (const [k, v] of d.maps.conntrack4.entries()) ct4.set(k, layout4(v));
      for (const [k, v] of d.maps.conntrack6.entries()) ct6.set(k, layout4(v));
      d.maps.conntrack4.deleteMany(d.maps.conntrack4.keys());
      d.maps.conntrack6.deleteMany(d.maps.conntrack6.keys());
      assert.equal(run4("to", tcp(PEER4, POD4, 5432, 40000)), TC_ACT_SHOT, "without migration: cut");

      // Layout 4's endpoint EP_ID had counter slot 9; its counters and the node's verdict counters.
      const ep4 = new TypedMap(a, open("sl_ep_v4"), "sl_ep_v4", C.endpointKey, C.v4EndpointValue);
      ep4.set(
        { ifindex: 5 },
        { ep_id: EP_ID, identity: 500, policy_rev: 1, gen: 0, flags: 3, slot: 9, any: new Uint8Array(0) },
      );
      const cnt4 = new PerCpuMap(a, open("sl_cnt_v4"), "sl_cnt_v4", u32Key, C.counterValue);
      const vcnt4 = new PerCpuMap(a, open("sl_vcnt_v4"), "sl_vcnt_v4", u32Key, C.counterValue);
      const cpus = cnt4.cpus;
      const per = (p: number) =>
        Array.from({ length: cpus }, (_, c) => ({ packets: BigInt(p + c), bytes: 100n }));
      cnt4.setPerCpu(9 * 4 + 1 * 2 + 0, per(10));
      vcnt4.setPerCpu(3, per(20));
      const slot = 3;
      const before = d.maps.counters.total(slot, 1, 1);
      const vBefore = d.maps.verdicts?.get(3)?.reduce((x, v) => x + v.packets, 0n) ?? 0n;

      const m = LayoutMigration.open(d);
      assert.ok(m);
      assert.equal(m.report.fromVersion, 4);
      assert.equal(m.copyConntrack(d.maps), 2);
      assert.equal(run4("to", tcp(PEER4, POD4, 5432, 40000)), TC_ACT_OK);
      assert.equal(run4("to", tcp(PEER6, POD6, 5432, 40000)), TC_ACT_OK);
      assert.equal(m.copyCounters(d.maps, new Map([[EP_ID, slot]])), 2);
      const sum = (p: number) =>
        BigInt(Array.from({ length: cpus }, (_, c) => p + c).reduce((x, y) => x + y, 0));
      assert.equal(d.maps.counters.total(slot, 1, 1).packets, before.packets + sum(10));
      assert.equal(
        d.maps.verdicts?.get(3)?.reduce((x, v) => x + v.packets, 0n),
        vBefore + sum(20),
      );
      for (const fd of fds.splice(0)) a.closeFd(fd);
      const report = m.finish();
      assert.deepEqual(report.removedPins.sort(), [
        "sl_cnt_v4",
        "sl_ct4_v4",
        "sl_ct6_v4",
        "sl_ep_v4",
        "sl_vcnt_v4",
      ]);
      assert.equal(LayoutMigration.open(d), undefined, "nothing left to migrate");
      assert.equal(run4("to", tcp(PEER4, POD4, 5432, 40000)), TC_ACT_OK);
    } finally {
      for (const fd of fds) a.closeFd(fd);
      d?.close();
      old.remove();
    }
  });

  test("the enforcer carries layout 3's state over on its first write, after swapping the programs", (t) => {
    if (!requirePrivileged(t)) return;
    const a = addon();
    const upgraded = pinRoot();
    const dev = testInterface();
    let d: Datapath | undefined;
    try {
      addon().loadObject(layout3Object, { pinRoot: upgraded.path }).close();
      const oldCt = new TypedMap(
        a,
        a.objGet(join(upgraded.path, "sl_ct_v3")),
        "sl_ct_v3",
        C.v3CtKey,
        C.ctValue,
      );
      const flow = (sport: number) => ({
        ep_id: EP_ID,
        dir: 1,
        proto: 6,
        family: 2,
        sport,
        dport: 5432,
        saddr: new Uint8Array([10, 0, 0, 10, ...new Array(12).fill(0)]),
        daddr: new Uint8Array([10, 1, 0, 20, ...new Array(12).fill(0)]),
      });
      const value = {
        last_seen_ns: 1n,
        policy_rev: 1,
        packets: 1,
        init_dir: 1,
        flags: 0,
        slot: 0,
        audit_slot: 0,
      };
      oldCt.set(flow(40001), value);
      oldCt.set(flow(40002), value);
      a.closeFd(oldCt.fd);

      d = loadDatapath({ pinRoot: upgraded.path });
      const ifindex = Number(readFileSync(`/sys/class/net/${dev.name}/ifindex`, "utf8"));
      const resolver = { resolve: async () => ({ ifname: dev.name, ifindex }) };
      const enforcer = new Enforcer(d, { node: "n", resolver });
      // Copied before any program is swapped, so the replies of these flows never miss.
      assert.equal(d.maps.conntrack4.count(), 2);
      const wired = new Map([["ns/pod", { ifname: dev.name, ifindex, addresses: [POD4, POD6] }]]);
      const first = enforcer.write(state, wired);
      assert.equal(first.endpoints, 1);
      // The pod's addresses came with it: its source check has them.
      assert.equal(d.maps.sources?.count(), 2);
      assert.deepEqual(first.migrated?.removedPins.sort(), ["sl_cnt_v3", "sl_ct_v3"]);
      assert.equal(first.migrated?.conntrack, 2);
      assert.deepEqual(d.pins.olderLayoutMaps(), []);
      const again = enforcer.write(state, wired);
      assert.equal(again.migrated, undefined, "only the first write migrates");
    } finally {
      d?.close();
      dev.remove();
      upgraded.remove();
    }
  });

  test("`datapath replace` refuses a node still on an older layout, and leaves nothing of its own", (t) => {
    if (!requirePrivileged(t)) return;
    const old = pinRoot();
    try {
      addon().loadObject(layout3Object, { pinRoot: old.path }).close();
      const r = spawnSync(join(repoRoot(), "bin/sluice"), ["datapath", "replace", "--bpffs-root", old.path], {
        encoding: "utf8",
      });
      assert.notEqual(r.status, 0, r.stdout);
      assert.match(r.stderr, /older map layout \(sl_cnt_v3, sl_ct_v3\).*let every packet through/);
      assert.deepEqual(
        readdirSync(old.path).sort(),
        ["sl_cnt_v3", "sl_ct_v3"],
        "the new maps it created are gone",
      );
    } finally {
      old.remove();
    }
  });
});
