// Issue 14 §2, maps grown on a live node: an agent restarted with bigger map sizes than the node's pins
// have. The new maps are filled from the old before the agent writes; its programs decide what the old
// ones decided (policy, and flows conntrack tracks); the first write swaps every link, carries over
// the flows and counters the old programs added meanwhile, and moves the pins; the bigger map then
// holds a policy the small one could not. Real maps, real links on veths (no traffic), verdicts from
// BPF_PROG_RUN on each endpoint's interface.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { Enforcer, type EndpointInterface } from "../../operator/src/agent/enforcer.ts";
import type { BpfAddon } from "../../operator/src/datapath/kernel/bpf-addon.ts";
import { type Datapath, loadDatapath } from "../../operator/src/datapath/kernel/programs.ts";
import { privilegeProblem, requirePrivileged } from "../support/privileged.ts";
import { pinRoot } from "./addon-rig.ts";
import { BASE, BIG, CLIENT, compiled, DB, EndpointLinks, NODE, OK, SHOT, WEB } from "./capacity-rig.ts";

const SMALL = { policy: 64, ipcache: 128, endpoints: 8, conntrack: 1024 };
const GROWN = { policy: 256, ipcache: 512, endpoints: 16, conntrack: 4096 };
const EGRESS = 1;
const ALLOW = 1;

const skip = privilegeProblem() !== undefined && process.env.CI !== "true";
const noResolver = { resolve: async () => undefined };

describe("maps grown on a live node", { skip: skip ? privilegeProblem() : false }, () => {
  let root: ReturnType<typeof pinRoot>;
  let old: Datapath;
  let grown: Datapath | undefined;
  let eps: EndpointLinks;
  let interfaces: Map<string, EndpointInterface>;

  before(() => {
    if (privilegeProblem()) return;
    root = pinRoot();
    old = loadDatapath({ pinRoot: root.path, mapSizes: SMALL });
    eps = new EndpointLinks(old, ["shop/web", "shop/db"]);
    interfaces = eps.interfaces({ "shop/web": WEB, "shop/db": DB });
  });
  after(() => {
    grown?.close();
    old?.close();
    root?.remove();
    eps?.remove();
  });

  // web's counter of allowed egress packets, summed over CPUs.
  const webEgress = (dp: Datapath) => {
    const slot = dp.maps.endpoints.get({ ifindex: eps.ifindex.get("shop/web")! })!.slot;
    return dp.maps.counters.total(slot, EGRESS, ALLOW).packets;
  };
  // A flow web opens to the client (egress is open); its reply passes only through conntrack (web's
  // ingress admits the client on 80 alone).
  const open = (dp: Datapath, sport: number) => eps.verdict(dp, "shop/web", "from", WEB, CLIENT, 443, sport);
  const reply = (dp: Datapath, sport: number) => eps.verdict(dp, "shop/web", "to", CLIENT, WEB, sport, 443);

  test("restart with bigger sizes: every map grown, nothing opened or closed, pins moved at the first write", (t) => {
    if (!requirePrivileged(t)) return;
    // The old agent: small maps, its programs on both endpoints' links, a flow tracked.
    const first = new Enforcer(old, { node: NODE, resolver: noResolver }).write(
      compiled(BASE).state,
      interfaces,
    );
    assert.equal(first.endpoints, 2);
    assert.deepEqual(eps.web(old), [OK, SHOT, OK, OK]);
    assert.equal(open(old, 41001), OK);
    assert.equal(reply(old, 41001), OK, "the reply of a tracked flow");
    assert.equal(reply(old, 41999), SHOT, "no flow: the reply port is not admitted");
    const countedBefore = webEgress(old);
    // The new agent loads: the maps to grow are new, filled from the old ones.
    grown = loadDatapath({ pinRoot: root.path, mapSizes: GROWN });
    assert.deepEqual(grown.keptSizes, []);
    assert.ok(grown.resize?.pending);
    assert.equal(grown.maps.policySets.maxEntries, 256);
    assert.equal(grown.maps.endpoints.maxEntries, 16);
    assert.equal(grown.maps.counters.info.maxEntries, 64);
    const pinned = () => {
      const fd = grown!.addon.objGet(grown!.pins.map(grown!.maps.policySets.name));
      try {
        return grown!.addon.mapInfo(fd).maxEntries;
      } finally {
        grown!.addon.closeFd(fd);
      }
    };
    assert.equal(pinned(), 64, "the old map keeps its pin until the swap");
    // The new programs decide as the old ones: the same policy, the flow tracked before the copy.
    assert.deepEqual(eps.web(grown), [OK, SHOT, OK, OK]);
    assert.deepEqual(eps.db(grown), [OK, SHOT]);
    assert.equal(reply(grown, 41001), OK, "conntrack carried over at load");
    // Until the swap the old programs run on the links: a flow they start now and packets they count.
    assert.equal(open(old, 41002), OK);
    const counted = webEgress(old);
    assert.ok(counted > countedBefore);

    const r = new Enforcer(grown, { node: NODE, resolver: noResolver }).write(
      compiled(BASE).state,
      interfaces,
    );
    assert.equal(r.swapped, 4, "both hooks of both endpoints swapped in place");
    assert.equal(r.resizeError, undefined);
    assert.deepEqual(r.resized?.maps.map((m) => [m.map, m.pinned, m.configured]).sort(), [
      ["sl_cnt_v5", 32, 64],
      ["sl_ct4_v5", 1024, 4096],
      ["sl_ct6_v5", 1024, 4096],
      ["sl_ep_v5", 8, 16],
      ["sl_ip4h_v5", 128, 512],
      ["sl_ip6h_v5", 128, 512],
      ["sl_ipc_v5", 128, 512],
      ["sl_pexact_v5", 64, 256],
      ["sl_pol_v5", 64, 256],
      ["sl_pset_v5", 64, 256],
      ["sl_src_v5", 32, 64],
    ]);
    assert.ok((r.resized?.conntrack ?? 0) >= 1, "the flow the old programs started after the copy");
    assert.equal(reply(grown, 41002), OK, "... is tracked by the new programs");
    assert.ok(webEgress(grown) >= counted, `counters carried over: ${webEgress(grown)} >= ${counted}`);
    assert.equal(pinned(), 256, "the pin names the grown map");
    assert.equal(existsSync(grown.pins.resizeDir()), false, "no staging left");
    for (const l of grown.pins.links()) {
      if (l.mode !== "tcx") continue;
      const fd = grown.addon.objGet(l.pinPath);
      try {
        const want: number = grown.addon.progInfo(grown.programFor(l.hook)).id;
        assert.equal(grown.addon.linkInfo(fd).progId, want, `${l.ifname}-${l.hook} runs the new program`);
      } finally {
        grown.addon.closeFd(fd);
      }
    }
  });

  test("the grown map holds what the small one could not: web's big policy is enforced, nobody closed", (t) => {
    if (!requirePrivileged(t)) return;
    const g = grown!;
    const r = new Enforcer(g, { node: NODE, resolver: noResolver }).write(
      compiled([...BASE, BIG]).state,
      interfaces,
    );
    assert.deepEqual(r.sync.failedClosed, []);
    assert.deepEqual(eps.web(g), [OK, OK, OK, OK], "client now admitted on 1003 too");
    // A later restart at the same sizes has nothing to grow.
    const again = loadDatapath({ pinRoot: root.path, mapSizes: GROWN });
    try {
      assert.equal(again.resize, undefined);
      assert.deepEqual(again.keptSizes, []);
      assert.equal(again.maps.policySets.maxEntries, 256);
    } finally {
      again.close();
    }
  });

  test("growing fails: the agent runs on the maps at their pinned size and says why", (t) => {
    if (!requirePrivileged(t)) return;
    const other = pinRoot();
    try {
      loadDatapath({ pinRoot: other.path, mapSizes: SMALL }).close();
      // An addon whose batch writes are refused while the datapath loads (the copy into the new maps).
      let refuse = true;
      const real = old.addon;
      const refusing = Object.assign(Object.create(real) as BpfAddon, {
        mapUpdateBatch(...args: Parameters<BpfAddon["mapUpdateBatch"]>): number {
          if (refuse) throw new Error("bpf_map_update_batch: Operation not permitted");
          return real.mapUpdateBatch(...args);
        },
      });
      const dp = loadDatapath({ pinRoot: other.path, mapSizes: GROWN, addon: refusing });
      refuse = false;
      try {
        assert.equal(dp.resize, undefined);
        assert.match(dp.resizeError ?? "", /^map resize: bpf_map_update_batch: Operation not permitted/);
        assert.equal(dp.keptSizes.length, 11, "every map to grow kept at its pinned size");
        assert.equal(dp.maps.policySets.maxEntries, 64);
        assert.equal(existsSync(dp.pins.resizeDir()), false, "no staging left");
        const r = new Enforcer(dp, { node: NODE, resolver: noResolver }).write(
          compiled(BASE).state,
          new Map(),
        );
        assert.match(r.resizeError ?? "", /^map resize: /, "reported once, at the first write");
      } finally {
        dp.close();
      }
    } finally {
      other.remove();
    }
  });
});
