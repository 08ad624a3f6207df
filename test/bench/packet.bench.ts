// Per-packet cost of the policy program (bpf/sluice.bpf.c) by BPF_PROG_RUN with policy maps of 10, 1k
// and 100k entries, against the trivial program (bpf/build/sluice_trivial.bpf.o) as the floor, in one
// run. Paths: a conntrack hit (established flow and its reply) and packets that go to policy (denied:
// by an exact-identity entry after one policy lookup, or by the endpoint default after both).
// Targets: <= 100 ns/packet at 100k entries and <= 1.2x the 10-entry cost.
// Run as root: node test/bench/packet.bench.ts [--repeat 1000000] [--trials 7]
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type LoadedObject, loadAddon, repoRoot } from "../../operator/src/datapath/bpf-addon.ts";
import { ipcacheKeyOf, policyKeyOf, policyValueOf } from "../../operator/src/datapath/keys.ts";
import { type Datapath, loadDatapath } from "../../operator/src/datapath/programs.ts";
import type { PolicyEntry } from "../../operator/src/policy/mapstate.ts";
import { IPPROTO, packet } from "../support/packets.ts";
import { machine, markdownTable, median, requireRoot } from "./table.ts";

const { values: args } = parseArgs({
  options: { repeat: { type: "string", default: "1000000" }, trials: { type: "string", default: "7" } },
});
const REPEAT = Number(args.repeat);
const TRIALS = Number(args.trials);
const SIZES = [10, 1000, 100_000];
const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
const EP_ID = 1;
const POD = "10.0.0.10";
const PEER = "10.1.0.20";
// Cluster identities of the filled entries start here; the probing peer has one in the middle.
const ID_BASE = 256;
const IPCACHE_ENTRIES = 1000; // fixed across sizes: only the policy map grows

requireRoot("packet.bench");

const pinRoot = `/sys/fs/bpf/sluice-bench-${process.pid}-${randomBytes(4).toString("hex")}`;
const trivialPin = `${pinRoot}-trivial`;
let dp: Datapath | undefined;
let trivial: LoadedObject | undefined;

function cleanup(): void {
  dp?.close();
  trivial?.close();
  rmSync(pinRoot, { recursive: true, force: true });
  rmSync(trivialPin, { recursive: true, force: true });
}
process.on("SIGINT", () => {
  cleanup();
  process.exit(130);
});

// N entries: 10 per identity (ports and port blocks), identities from ID_BASE on.
function entriesOf(n: number): PolicyEntry[] {
  const out: PolicyEntry[] = [];
  for (let i = 0; i < n; i++) {
    const k = i % 10;
    out.push({
      direction: i % 20 < 10 ? "ingress" : "egress",
      identity: ID_BASE + Math.floor(i / 10),
      protocol: k === 9 ? IPPROTO.UDP : IPPROTO.TCP,
      port: k === 8 ? 2048 : 1000 + k * 10,
      portPrefixLen: k === 8 ? 12 : 16,
      verdict: "allow",
      ruleId: i,
    });
  }
  return out;
}

function encodeEntries(
  d: Datapath,
  entries: readonly PolicyEntry[],
): { keys: Uint8Array; values: Uint8Array } {
  const ks = d.maps.policy.key.size;
  const vs = d.maps.policy.value.size;
  const keys = new Uint8Array(entries.length * ks);
  const values = new Uint8Array(entries.length * vs);
  entries.forEach((e, i) => {
    d.maps.policy.key.encode(policyKeyOf(EP_ID, 0, e), keys, i * ks);
    d.maps.policy.value.encode(policyValueOf(e), values, i * vs);
  });
  return { keys, values };
}

function ctx(): Uint8Array {
  const c = new Uint8Array(192); // struct __sk_buff; ifindex (offset 40) = 1: BPF_PROG_RUN's loopback
  new DataView(c.buffer).setUint32(40, 1, true);
  return c;
}

interface Scenario {
  name: string;
  prog: "from" | "to" | "trivial";
  frame: Uint8Array;
  expect: number;
}

function measure(fd: number, s: Scenario, c: Uint8Array): number {
  const addon = loadAddon();
  const first = addon.progTestRun(fd, { data: s.frame, ctx: c }); // creates conntrack state where it would
  if (first.retval !== s.expect) throw new Error(`${s.name}: verdict ${first.retval}, expected ${s.expect}`);
  const ns: number[] = [];
  for (let t = 0; t < TRIALS; t++) {
    const r = addon.progTestRun(fd, { data: s.frame, ctx: c, repeat: REPEAT });
    if (r.retval !== s.expect) throw new Error(`${s.name}: verdict ${r.retval}, expected ${s.expect}`);
    ns.push(r.durationNs);
  }
  return median(ns);
}

async function main(): Promise<void> {
  const addon = loadAddon();
  dp = loadDatapath({ pinRoot });
  trivial = addon.loadObject(join(repoRoot(), "bpf/build/sluice_trivial.bpf.o"), { pinRoot: trivialPin });
  const trivialFd = trivial.programs[0].fd;
  const c = ctx();
  const m = dp.maps;

  m.config.write({ event_sample_allow: 0, event_sample_deny: 0, events_per_sec: 0, flags: 0 });
  m.endpoints.set({ ifindex: 1 }, { ep_id: EP_ID, identity: 300, policy_rev: 1, gen: 0, flags: 3 });
  const ipc: [ReturnType<typeof ipcacheKeyOf>, { identity: number; flags: number }][] = [];
  for (let i = 0; i < IPCACHE_ENTRIES; i++)
    ipc.push([ipcacheKeyOf(`10.2.${i >> 8}.${i & 255}/32`), { identity: ID_BASE + i, flags: 0 }]);
  m.ipcache.setMany(ipc);

  const tcp = (src: string, dst: string, sport: number, dport: number) =>
    packet({ src, dst, l4: { kind: "tcp", sport, dport, flags: 0x10 }, payload: 32 });
  const scenarios: Scenario[] = [
    {
      name: "trivial program (floor)",
      prog: "trivial",
      frame: tcp(PEER, POD, 5432, 40000),
      expect: TC_ACT_OK,
    },
    {
      name: "conntrack hit: established (from pod)",
      prog: "from",
      frame: tcp(POD, PEER, 40000, 5432),
      expect: TC_ACT_OK,
    },
    {
      name: "conntrack hit: reply (to pod)",
      prog: "to",
      frame: tcp(PEER, POD, 5432, 40000),
      expect: TC_ACT_OK,
    },
    {
      name: "new flow, denied by an entry (1 policy lookup)",
      prog: "to",
      frame: tcp(PEER, POD, 40001, 23),
      expect: TC_ACT_SHOT,
    },
    {
      name: "new flow, denied by default (2 policy lookups)",
      prog: "to",
      frame: tcp(PEER, POD, 40002, 9999),
      expect: TC_ACT_SHOT,
    },
  ];

  const results = new Map<string, number[]>(scenarios.map((s) => [s.name, []]));
  let previous: Uint8Array | undefined;
  let previousCount = 0;
  for (const size of SIZES) {
    if (previous) m.policy.deleteManyRaw(previous, previousCount);
    const entries = entriesOf(size);
    // The probing peer: an identity in the middle of the filled ones, with its own (other) entries.
    const peerId = ID_BASE + Math.floor(size / 20);
    m.ipcache.set(ipcacheKeyOf(`${PEER}/32`), { identity: peerId, flags: 0 });
    const fixed: PolicyEntry[] = [
      {
        direction: "egress",
        identity: peerId,
        protocol: IPPROTO.TCP,
        port: 5432,
        portPrefixLen: 16,
        verdict: "allow",
        ruleId: 1,
      },
      {
        direction: "ingress",
        identity: peerId,
        protocol: IPPROTO.TCP,
        port: 23,
        portPrefixLen: 16,
        verdict: "deny",
        ruleId: 2,
      },
      {
        direction: "ingress",
        identity: 0,
        protocol: IPPROTO.TCP,
        port: 443,
        portPrefixLen: 16,
        verdict: "allow",
        ruleId: 3,
      },
    ];
    const all = [...entries.slice(0, size - fixed.length), ...fixed];
    const { keys, values } = encodeEntries(dp, all);
    m.policy.setManyRaw(keys, values, all.length);
    if (m.policy.count() !== size) throw new Error(`policy map holds ${m.policy.count()}, wanted ${size}`);
    previous = keys;
    previousCount = all.length;
    // A fresh endpoint revision: conntrack entries of the previous size are rechecked once, then hit.
    m.endpoints.set({ ifindex: 1 }, { ep_id: EP_ID, identity: 300, policy_rev: size, gen: 0, flags: 3 });
    for (const s of scenarios) {
      const fd = s.prog === "trivial" ? trivialFd : dp.programFor(s.prog === "from" ? "ingress" : "egress");
      results.get(s.name)?.push(measure(fd, s, c));
    }
  }

  const fmt = (ns: number) => `${ns.toFixed(0)} ns`;
  const floor = median(results.get(scenarios[0].name) ?? [0]);
  const rows = scenarios.map((s) => {
    const r = results.get(s.name) ?? [];
    return [
      s.name,
      ...r.map(fmt),
      `${(r[2] / r[0]).toFixed(2)}×`,
      s.prog === "trivial" ? "1.00×" : `${(r[2] / floor).toFixed(1)}×`,
    ];
  });
  console.log(`\n### Per-packet cost (BPF_PROG_RUN, repeat ${REPEAT}, median of ${TRIALS})\n`);
  console.log(`Machine: ${await machine()}\n`);
  console.log(
    markdownTable(["path", "10 entries", "1k entries", "100k entries", "100k / 10", "100k / trivial"], rows),
  );
  const worst = Math.max(...scenarios.slice(1).map((s) => results.get(s.name)?.[2] ?? 0));
  const worstRatio = Math.max(
    ...scenarios.slice(1).map((s) => {
      const r = results.get(s.name) ?? [1, 1, 1];
      return r[2] / r[0];
    }),
  );
  console.log(
    `\nTargets: <= 100 ns at 100k entries (worst path ${worst.toFixed(0)} ns: ${worst <= 100 ? "met" : "NOT met"}); ` +
      `<= 1.2× the 10-entry cost (worst ${worstRatio.toFixed(2)}×: ${worstRatio <= 1.2 ? "met" : "NOT met"}).`,
  );
}

try {
  await main();
} finally {
  cleanup();
}
