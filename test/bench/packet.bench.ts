// Per-packet cost of the policy program (bpf/sluice.bpf.c) by BPF_PROG_RUN with policy maps of 10, 1k
// and 100k entries, against the trivial program (bpf/build/sluice_trivial.bpf.o) as the floor, in one
// run. Paths: a conntrack hit (established flow and its reply) and new flows that go to policy (denied
// by an entry of the peer's group, denied by the endpoint default after the peer's and the wildcard
// group, the same for a peer whose own entries do not change with the size, allowed by an entry), and
// those whose fate the Audit policies would change (denied, an audit entry would allow; allowed by an
// entry, an Audit policy would deny; allowed by default, the audited default would deny). An allowed
// new flow creates its conntrack entry, so a repeated run would measure conntrack hits: those paths run
// once per call, the entry removed in between, next to the denied-by-an-entry path measured the same way
// (same lookups, no conntrack insert) as their floor.
// The policy is written as the agent writes it: the map writer's rule counter slots (writer/rule-slots.ts)
// in every policy value and the endpoint's audited default, so every decision and every tracked flow's
// packet counts in sl_rcnt; the bench checks afterwards that the probed rules counted.
// Each size has its own datapath (maps filled once), so that every trial runs every size and scenario
// back to back: a machine whose speed drifts (a shared VM) then biases no size or path against another.
// Targets: <= 100 ns/packet at 100k entries and <= 1.2x the 10-entry cost.
// Features priced in the same run, each by a build without it loaded over the same pinned maps and run
// interleaved with the real program: the node-wide verdict counter (bpf/build/variants/sluice_no_vcnt.bpf.o,
// -DSL_NO_VERDICT_COUNTERS), the rule counters with audit (sluice_no_rcnt.bpf.o, -DSL_NO_RULE_COUNTERS),
// and the source check (one sl_src lookup per packet the pod sends; sluice_no_srccheck.bpf.o,
// -DSL_NO_SOURCE_CHECK) on the paths from the pod.
// The monitor's flow events are priced on the same programs and maps: every repeated path runs also
// with the agent's monitor sampling in sl_config (1 of 1 denied, 1 of 100 allowed packets, 1000
// events/s per CPU) and a consumer draining the ring buffer and naming each event as the agent does,
// against the same path with events off (the config is written before each call, outside its timing).
// The previous layout (test/support/previous-layout.ts) in the same run: its tree built in a temporary
// directory (previous-layout.ts here), then --previous-rounds rounds, each running that tree's own
// packet bench and this one (as subprocesses, --previous-trials trials each, the order alternating), so
// that the machine's drift hits both; the table gives per path and size the median over rounds of each
// and the ratio. --previous-rounds 0 leaves it out.
// Run as root: node test/bench/packet.bench.ts [--repeat 1000000] [--trials 15] [--previous-rounds 5]
//   [--previous-trials 3]
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type LoadedObject, loadAddon, repoRoot } from "../../operator/src/datapath/kernel/bpf-addon.ts";
import type { EndpointValue } from "../../operator/src/datapath/codec/codecs.ts";
import { endpointValueOf } from "../../operator/src/datapath/writer/endpoint-value.ts";
import { canonicalEntry, type StoredEntry } from "../../operator/src/datapath/codec/keys.ts";
import { countPolicyEntries, writePolicyChanges } from "../../operator/src/datapath/writer/policy-store.ts";
import { type Datapath, loadDatapath } from "../../operator/src/datapath/kernel/programs.ts";
import { RuleSlots } from "../../operator/src/datapath/writer/rule-slots.ts";
import { writeIpcache, writeSources } from "../../operator/src/datapath/writer/sync.ts";
import { enums } from "../../operator/src/datapath/codec/layout.generated.ts";
import { type PolicyEntry, policyEntryKey } from "../../operator/src/policy/mapstate.ts";
import { openFlowEvents } from "../../operator/src/datapath/flow-events.ts";
import { nameFlow } from "../../operator/src/monitor/name.ts";
import { MONITOR_SAMPLING } from "../../operator/src/monitor/server.ts";
import { IPPROTO, packet } from "../support/packets.ts";
import { buildPreviousLayout, runBench, tableAfter } from "./previous-layout.ts";
import { machine, markdownTable, median, requireRoot } from "./table.ts";

const { values: args } = parseArgs({
  options: {
    repeat: { type: "string", default: "1000000" },
    trials: { type: "string", default: "15" },
    "previous-rounds": { type: "string", default: "5" },
    "previous-trials": { type: "string", default: "3" },
  },
});
const REPEAT = Number(args.repeat);
const TRIALS = Number(args.trials);
const PREVIOUS_ROUNDS = Number(args["previous-rounds"]);
const PREVIOUS_TRIALS = Number(args["previous-trials"]);
const SIZES = [10, 1000, 100_000];
const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
const EP_ID = 1;
const POD = "10.0.0.10";
const PEER = "10.1.0.20";
// A second peer whose own group is the same two entries at every size: its row isolates the map size.
const PEER2 = "10.1.0.21";
const PEER2_ID = 255;
// Cluster identities of the filled entries start here; the probing peer has one in the middle.
const ID_BASE = 256;
const IPCACHE_ENTRIES = 1000; // fixed across sizes: only the policy map grows
// The heading of the main table, which the comparison with the previous layout reads from each tree.
const MAIN_TABLE = "### Per-packet cost";

requireRoot("packet.bench");

const pinRoot = `/sys/fs/bpf/sluice-bench-${process.pid}-${randomBytes(4).toString("hex")}`;
const trivialPin = `${pinRoot}-trivial`;
const pinOf = (size: number) => `${pinRoot}-${size}`;
const datapaths = new Map<number, Datapath>();
// Builds with one feature compiled out, by what they leave out; the same maps.
const VARIANT_OBJECTS = {
  vcnt: join(repoRoot(), "bpf/build/variants/sluice_no_vcnt.bpf.o"),
  rcnt: join(repoRoot(), "bpf/build/variants/sluice_no_rcnt.bpf.o"),
  src: join(repoRoot(), "bpf/build/variants/sluice_no_srccheck.bpf.o"),
} as const;
type Variant = keyof typeof VARIANT_OBJECTS;
const variants = new Map<string, Datapath>();
const variantKey = (v: Variant, size: number) => `${v}/${size}`;
let trivial: LoadedObject | undefined;

function cleanup(): void {
  for (const d of datapaths.values()) d.close();
  for (const d of variants.values()) d.close();
  trivial?.close();
  datapaths.clear();
  variants.clear();
  trivial = undefined;
  for (const size of SIZES) rmSync(pinOf(size), { recursive: true, force: true });
  rmSync(trivialPin, { recursive: true, force: true });
}
process.on("SIGINT", () => {
  cleanup();
  process.exit(130);
});

// N entries: 10 per identity (ports and port blocks) from one rule each, identities from ID_BASE on.
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
      ruleId: 100 + Math.floor(i / 10),
    });
  }
  return out;
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
  // One run per BPF_PROG_RUN call, conntrack emptied after each (a path that creates state).
  single?: boolean;
  // Runs the program built without that feature.
  variant?: Variant;
  // Runs with the monitor's event sampling on.
  events?: boolean;
  // Runs with the endpoint's egress default allow and its audited default deny (an Audit policy
  // isolating the pod), the endpoint value written before the call.
  auditedDefault?: boolean;
}

const EVENTS_OFF = { event_sample_allow: 0, event_sample_deny: 0, events_per_sec: 0, flags: 0 };
const EVENTS_MONITOR = {
  event_sample_allow: MONITOR_SAMPLING.allow,
  event_sample_deny: MONITOR_SAMPLING.deny,
  events_per_sec: 1000,
  flags: 0,
};

const SINGLE_RUNS = 1000;

function run(fd: number, s: Scenario, c: Uint8Array, repeat: number): number {
  const r = loadAddon().progTestRun(fd, { data: s.frame, ctx: c, repeat });
  if (r.retval !== s.expect) throw new Error(`${s.name}: verdict ${r.retval}, expected ${s.expect}`);
  return r.durationNs;
}

function dpOf(size: number): Datapath {
  const d = datapaths.get(size);
  if (!d) throw new Error(`no datapath of size ${size}`);
  return d;
}

function clearConntrack(d: Datapath): void {
  const keys = d.maps.conntrack4.keys();
  if (keys.length > 0) d.maps.conntrack4.deleteMany(keys);
}

// Samples per size and scenario, sizes and scenarios interleaved trial by trial so that load on the
// machine hits all alike. Repeated scenarios first (their first run creates conntrack state where it
// would), then the one-run ones, conntrack emptied after each call.
function measureAll(
  fdOf: (size: number, s: Scenario) => number,
  scenarios: readonly Scenario[],
  c: Uint8Array,
): number[][][] {
  const repeated = scenarios.filter((s) => !s.single);
  const once = scenarios.filter((s) => s.single);
  const ns = SIZES.map(() => new Map<Scenario, number[]>(scenarios.map((s) => [s, []])));
  for (const size of SIZES) for (const s of repeated) run(fdOf(size, s), s, c, 1);
  for (let t = 0; t < TRIALS; t++)
    for (const [i, size] of SIZES.entries())
      for (const s of repeated) ns[i].get(s)?.push(run(fdOf(size, s), s, c, REPEAT));
  for (const d of datapaths.values()) clearConntrack(d);
  // Those with the audited default after the others: its endpoint value written once, not between calls
  // (a rewritten value is a cold one, which the next call would pay). The first call after another
  // size's pays for caches that size evicted: the order rotates, so that each path pays it as often.
  for (const group of [once.filter((s) => !s.auditedDefault), once.filter((s) => s.auditedDefault)])
    for (let k = 0; k < TRIALS * SINGLE_RUNS; k++)
      for (const [i, size] of SIZES.entries())
        for (const s of group.map((_, j) => group[(j + k) % group.length])) {
          ns[i].get(s)?.push(run(fdOf(size, s), s, c, 1));
          clearConntrack(dpOf(size));
        }
  return SIZES.map((_, i) => scenarios.map((s) => ns[i].get(s) ?? []));
}

const F = enums.sl_endpoint_flags;
// Default deny both ways, the audited defaults the same, and the source check on, as the agent writes
// an endpoint that Audit policies do not isolate further.
const FLAGS =
  F.SL_EP_DEFAULT_DENY_INGRESS |
  F.SL_EP_DEFAULT_DENY_EGRESS |
  F.SL_EP_AUDIT_DENY_INGRESS |
  F.SL_EP_AUDIT_DENY_EGRESS |
  F.SL_EP_SOURCE_CHECK;
// Egress not isolated, but an Audit policy would isolate it.
const FLAGS_AUDITED_EGRESS = FLAGS & ~F.SL_EP_DEFAULT_DENY_EGRESS;

// What loadSize wrote for one size: the endpoint's two values, and the slots the probed rules count in.
interface Written {
  endpoint: { normal: EndpointValue; auditedDefault: EndpointValue; current: "normal" | "auditedDefault" };
  entries: Map<string, StoredEntry>;
  auditSlot: readonly [number, number];
}
const written = new Map<number, Written>();

// The entries every size has besides the filler, at the front so that they keep their place.
function fixedEntries(peerId: number): PolicyEntry[] {
  const tcp = (direction: "ingress" | "egress", identity: number, port: number) => ({
    direction,
    identity,
    protocol: IPPROTO.TCP,
    port,
    portPrefixLen: 16,
  });
  return [
    { ...tcp("egress", peerId, 5432), verdict: "allow", ruleId: 1 },
    { ...tcp("ingress", peerId, 23), verdict: "deny", ruleId: 2 },
    { ...tcp("ingress", 0, 443), verdict: "allow", ruleId: 3 },
    // Denied by the default where an Audit policy would allow (the audit compiler writes the enforced
    // default's answer, rule 0, with the audit outcome).
    { ...tcp("ingress", peerId, 8080), verdict: "deny", ruleId: 0, audit: { verdict: "allow", ruleId: 4 } },
    // Allowed by a rule that an Audit policy would overrule with a deny.
    { ...tcp("ingress", peerId, 8443), verdict: "allow", ruleId: 5, audit: { verdict: "deny", ruleId: 6 } },
  ];
}

// One endpoint on ifindex 1 whose generation 0 holds size entries: 10 per identity, the probing peer's
// identity in the middle of them with its own entries, a second peer with the same 2 entries at every
// size, and one wildcard entry. Rule counter slots as the map writer assigns them.
function loadSize(size: number): Datapath {
  const d = loadDatapath({ pinRoot: pinOf(size) });
  datapaths.set(size, d);
  const m = d.maps;
  m.config.write(EVENTS_OFF);
  const ipc: [string, number][] = [];
  for (let i = 0; i < IPCACHE_ENTRIES; i++) ipc.push([`10.2.${i >> 8}.${i & 255}/32`, ID_BASE + i]);
  const peerId = ID_BASE + Math.floor(size / 20);
  ipc.push([`${PEER}/32`, peerId], [`${PEER2}/32`, PEER2_ID]);
  writeIpcache(m, [], ipc);
  const fixed = fixedEntries(peerId);
  const all = [...fixed, ...entriesOf(size).slice(0, size - fixed.length)].map(canonicalEntry);
  // The slots: the writer's assignment, for the endpoint as the audited-default rows have it (so that
  // its audited egress default has one too).
  const assigned = new RuleSlots(m.ruleCounters.info.maxEntries).assign({
    ipcache: new Map(),
    endpoints: new Map([
      [
        1,
        {
          key: "bench/pod",
          ifindex: 1,
          id: EP_ID,
          identity: 300,
          flags: FLAGS_AUDITED_EGRESS,
          entries: new Map(all.map((e) => [policyEntryKey(e), e])),
        },
      ],
    ]),
  });
  if (assigned.uncounted !== 0) throw new Error(`${assigned.uncounted} rules of size ${size} got no counter`);
  const ep = assigned.desired.endpoints.get(1);
  if (!ep?.auditSlot) throw new Error("the map writer assigned the endpoint no audited default's slot");
  const entries = ep.entries as Map<string, StoredEntry>;
  writePolicyChanges(
    m,
    () => new Map(),
    [],
    [...entries.values()].map((entry) => ({ epId: EP_ID, gen: 0 as const, entry })),
  );
  const n = countPolicyEntries(m);
  if (n !== size) throw new Error(`policy maps hold ${n} entries, wanted ${size}`);
  writeSources(m, [], [{ epId: EP_ID, address: POD }]);
  const endpointWith = (flags: number) =>
    endpointValueOf(
      { id: EP_ID, identity: 300, policyRev: 1, gen: 0, flags, slot: 0, auditSlot: ep.auditSlot ?? [0, 0] },
      all,
    );
  const endpoint = {
    normal: endpointWith(FLAGS),
    auditedDefault: endpointWith(FLAGS_AUDITED_EGRESS),
    current: "normal" as const,
  };
  m.endpoints.set({ ifindex: 1 }, endpoint.normal);
  written.set(size, { endpoint, entries, auditSlot: ep.auditSlot });
  for (const [v, objectPath] of Object.entries(VARIANT_OBJECTS))
    variants.set(variantKey(v as Variant, size), loadDatapath({ pinRoot: pinOf(size), objectPath }));
  return d;
}

// The endpoint value a scenario runs with, written only when it changes (outside any timing).
function useEndpoint(size: number, s: Scenario): void {
  const w = written.get(size);
  if (!w) throw new Error(`nothing written for size ${size}`);
  const want = s.auditedDefault ? "auditedDefault" : "normal";
  if (w.endpoint.current === want) return;
  dpOf(size).maps.endpoints.set({ ifindex: 1 }, w.endpoint[want]);
  w.endpoint.current = want;
}

// The measured paths counted where the agent's rule counters say (a bench that priced counters never
// reached would measure nothing): each probed rule's slot, and the audited ones' audit slots.
function checkRuleCounters(): void {
  for (const size of SIZES) {
    const w = written.get(size);
    if (!w) throw new Error(`nothing written for size ${size}`);
    const peerId = ID_BASE + Math.floor(size / 20);
    const slotsOf = (direction: "ingress" | "egress", port: number): [string, number][] => {
      const e = w.entries.get(
        policyEntryKey({ direction, identity: peerId, protocol: IPPROTO.TCP, port, portPrefixLen: 16 }),
      );
      if (!e?.slot) throw new Error(`size ${size}: the ${direction} entry of port ${port} has no slot`);
      const out: [string, number][] = [[`${direction} ${port}`, e.slot]];
      if (e.audit) out.push([`${direction} ${port} (audit)`, e.auditSlot ?? 0]);
      return out;
    };
    const want = [
      ...slotsOf("egress", 5432),
      ...slotsOf("ingress", 23),
      ...slotsOf("ingress", 8080),
      ...slotsOf("ingress", 8443),
      ["audited egress default", w.auditSlot[1]] as [string, number],
    ];
    const counts = dpOf(size).maps.ruleCounters.read(want.map(([, slot]) => slot));
    for (const [what, slot] of want) {
      const c = counts.get(slot);
      if (!slot || !c || c.packets === 0n || c.flows === 0n)
        throw new Error(`size ${size}: the rule counter of ${what} (slot ${slot}) counted nothing`);
    }
    // The established flow's packets count in its rule's slot through conntrack, not as new flows.
    const est = counts.get(want[0][1]);
    if (!est || est.packets < BigInt(REPEAT) || est.flows > est.packets / 1000n)
      throw new Error(`size ${size}: the established flow's packets did not count in its rule's slot`);
  }
}

// "12 ns" -> 12
function nsOf(cell: string | undefined): number | undefined {
  const m = /^(\d+(?:\.\d+)?) ns$/.exec(cell ?? "");
  return m ? Number(m[1]) : undefined;
}

// Each feature's price per path: the same run's medians with and without it, at every size (a feature
// that does not depend on the policy's size shows the noise in its three figures).
function costRows(
  results: ReadonlyMap<string, number[]>,
  paths: readonly Scenario[],
  withName: (s: Scenario) => string,
  withoutName: (s: Scenario) => string,
): string[][] {
  const fmt = (ns: number) => `${ns.toFixed(0)} ns`;
  return paths.map((s) => {
    const w = results.get(withName(s)) ?? [];
    const wo = results.get(withoutName(s)) ?? [];
    return [
      s.name,
      ...SIZES.map((_, i) => `${(w[i] - wo[i]).toFixed(1)} ns (${(w[i] / wo[i]).toFixed(3)}×)`),
      `${fmt(w[2])} / ${fmt(wo[2])}`,
    ];
  });
}

async function main(): Promise<void> {
  const addon = loadAddon();
  for (const size of SIZES) loadSize(size);
  trivial = addon.loadObject(join(repoRoot(), "bpf/build/sluice_trivial.bpf.o"), { pinRoot: trivialPin });
  const trivialFd = trivial.programs[0].fd;
  const c = ctx();

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
      name: "new flow from pod, denied by default (egress)",
      prog: "from",
      frame: tcp(POD, PEER2, 40005, 9999),
      expect: TC_ACT_SHOT,
    },
    {
      name: "conntrack hit: reply (to pod)",
      prog: "to",
      frame: tcp(PEER, POD, 5432, 40000),
      expect: TC_ACT_OK,
    },
    {
      name: "new flow, denied by an entry of the peer's group",
      prog: "to",
      frame: tcp(PEER, POD, 40001, 23),
      expect: TC_ACT_SHOT,
    },
    {
      name: "new flow, denied by default (peer's and wildcard group)",
      prog: "to",
      frame: tcp(PEER, POD, 40002, 9999),
      expect: TC_ACT_SHOT,
    },
    {
      name: "new flow, denied by default, peer with the same 2 entries at every size",
      prog: "to",
      frame: tcp(PEER2, POD, 40004, 9999),
      expect: TC_ACT_SHOT,
    },
    {
      name: "new flow, denied (default); an Audit policy's entry would allow it",
      prog: "to",
      frame: tcp(PEER, POD, 40006, 8080),
      expect: TC_ACT_SHOT,
    },
    {
      name: "new flow, denied by an entry, one run per call (floor of the next row)",
      prog: "to",
      frame: tcp(PEER, POD, 40001, 23),
      expect: TC_ACT_SHOT,
      single: true,
    },
    {
      name: "new flow, allowed by an entry, one run per call",
      prog: "to",
      frame: tcp(PEER, POD, 40003, 1010),
      expect: TC_ACT_OK,
      single: true,
    },
    {
      name: "new flow, allowed by an entry an Audit policy would deny, one run per call",
      prog: "to",
      frame: tcp(PEER, POD, 40007, 8443),
      expect: TC_ACT_OK,
      single: true,
    },
    {
      name: "new flow from pod, allowed by default, the audited default denies, one run per call",
      prog: "from",
      frame: tcp(POD, PEER2, 40008, 9999),
      expect: TC_ACT_OK,
      single: true,
      auditedDefault: true,
    },
  ];

  const withoutCounter = (s: Scenario): string => `${s.name} [no verdict counter]`;
  const withoutRuleCounters = (s: Scenario): string => `${s.name} [no rule counters]`;
  // Repeated paths only: a one-run call costs microseconds of cold caches, which hide a few nanoseconds.
  const priced = scenarios.filter((s) => s.prog !== "trivial" && !s.single);
  const withoutCheck = (s: Scenario): string => `${s.name} [no source check]`;
  const withEvents = (s: Scenario): string => `${s.name} [monitor events]`;
  // The rule counters on a new flow's first packet, caches cold: the one-run paths the endpoint's usual
  // value decides (the call rotation then holds them alike).
  const pricedOnce = scenarios.filter((s) => s.single && !s.auditedDefault);
  // The check runs only on what the pod sends.
  const checked = priced.filter((s) => s.prog === "from");
  const variantScenarios: Scenario[] = [
    ...priced.map((s): Scenario => ({ ...s, name: withoutCounter(s), variant: "vcnt" })),
    ...priced.map((s): Scenario => ({ ...s, name: withoutRuleCounters(s), variant: "rcnt" })),
    ...pricedOnce.map((s): Scenario => ({ ...s, name: withoutRuleCounters(s), variant: "rcnt" })),
    ...checked.map((s): Scenario => ({ ...s, name: withoutCheck(s), variant: "src" })),
    ...priced.map((s): Scenario => ({ ...s, name: withEvents(s), events: true })),
  ];
  // The monitor's reader: the ring buffer drained by the addon's thread, each event named (without a
  // view: the naming's cost is the agent's, off the packet path).
  let named = 0;
  const readers = SIZES.map((size) => {
    const d = dpOf(size);
    const r = openFlowEvents(d.addon, d.maps.eventsFd, { pollMs: 10 });
    r.on("events", (batch) => {
      for (const e of batch) if (nameFlow(undefined, "bench", e, Date.now()).endpoint) named++;
    });
    return r;
  });
  const fdOf = (size: number, s: Scenario) => {
    if (s.prog === "trivial") return trivialFd;
    // Every call of a size's programs sets the sampling and endpoint its row wants (the maps are shared).
    dpOf(size).maps.config.write(s.events ? EVENTS_MONITOR : EVENTS_OFF);
    useEndpoint(size, s);
    const d = s.variant ? variants.get(variantKey(s.variant, size)) : dpOf(size);
    if (!d) throw new Error(`no variant datapath of size ${size}`);
    return d.programFor(s.prog === "from" ? "ingress" : "egress");
  };
  const measured = [...scenarios, ...variantScenarios];
  const bySize = measureAll(fdOf, measured, c);
  await new Promise((r) => setTimeout(r, 100));
  for (const r of readers) r.stop();
  checkRuleCounters();
  const results = new Map<string, number[]>(
    measured.map((s, j) => [s.name, SIZES.map((_, i) => median(bySize[i][j]))]),
  );

  const fmt = (ns: number) => `${ns.toFixed(0)} ns`;
  const floor = results.get(scenarios[0].name)?.[2] ?? 0;
  const rows = scenarios.map((s) => {
    const r = results.get(s.name) ?? [];
    return [
      s.name,
      ...r.map(fmt),
      `${(r[2] / r[0]).toFixed(2)}×`,
      s.prog === "trivial" ? "1.00×" : s.single ? "-" : `${(r[2] / floor).toFixed(1)}×`,
    ];
  });
  console.log(
    `\n${MAIN_TABLE} (BPF_PROG_RUN, repeat ${REPEAT}; sizes and paths interleaved, median of ${TRIALS} runs; one-run rows: of ${TRIALS * SINGLE_RUNS} calls)\n`,
  );
  console.log(`Machine: ${await machine()}\n`);
  console.log(
    markdownTable(["path", "10 entries", "1k entries", "100k entries", "100k / 10", "100k / trivial"], rows),
  );
  const judged = scenarios.filter((s) => s.prog !== "trivial" && !s.single);
  const worst = Math.max(...judged.map((s) => results.get(s.name)?.[2] ?? 0));
  const worstRatio = Math.max(
    ...judged.map((s) => {
      const r = results.get(s.name) ?? [1, 1, 1];
      return r[2] / r[0];
    }),
  );
  // The allowed path's cost over the same lookups without the conntrack insert, added to the repeated
  // denied-by-an-entry figure: the allowed new flow as a repeated run would see it.
  const at = (name: string, i: number) => results.get(name)?.[i] ?? 0;
  const [deniedRepeat, deniedOnce, allowedOnce] = [
    "new flow, denied by an entry of the peer's group",
    "new flow, denied by an entry, one run per call (floor of the next row)",
    "new flow, allowed by an entry, one run per call",
  ];
  const allowed = [0, 1, 2].map((i) => at(deniedRepeat, i) + at(allowedOnce, i) - at(deniedOnce, i));
  console.log(
    `\nAllowed new flow, estimated (denied-by-an-entry repeated + allowed one-run − denied one-run): ` +
      `${allowed.map(fmt).join(" / ")} at 10 / 1k / 100k entries.`,
  );
  const costHeader = (what: string) => ["path", "10 entries", "1k entries", "100k entries", `100k: ${what}`];
  console.log(
    "\n### Cost of the node-wide verdict counter (with − compiled out, and the ratio; same run, repeated paths)\n",
  );
  console.log(
    markdownTable(
      costHeader("with / without"),
      costRows(results, priced, (s) => s.name, withoutCounter),
    ),
  );
  console.log(
    `\n### Cost of the rule counters and audit (with − compiled out, and the ratio; same run, repeated paths, and one-run paths of ${TRIALS * SINGLE_RUNS} calls)\n`,
  );
  console.log(
    markdownTable(
      costHeader("with / without"),
      costRows(results, [...priced, ...pricedOnce], (s) => s.name, withoutRuleCounters),
    ),
  );
  console.log(
    "\n### Cost of the source check (with − compiled out, and the ratio; same run, paths from the pod)\n",
  );
  console.log(
    markdownTable(
      costHeader("with / without"),
      costRows(results, checked, (s) => s.name, withoutCheck),
    ),
  );
  console.log(
    `\n### Cost of the monitor's flow events (events on − off, and the ratio; same run, repeated paths; sampling 1/${MONITOR_SAMPLING.deny} denied, 1/${MONITOR_SAMPLING.allow} allowed, 1000/s per CPU; ${named} events read and named)\n`,
  );
  console.log(
    markdownTable(
      costHeader("on / off"),
      costRows(results, priced, withEvents, (s) => s.name),
    ),
  );
  console.log(
    `\nTargets: <= 100 ns at 100k entries (worst repeated path ${worst.toFixed(0)} ns: ${worst <= 100 ? "met" : "NOT met"}); ` +
      `<= 1.2× the 10-entry cost (worst repeated path ${worstRatio.toFixed(2)}×: ${worstRatio <= 1.2 ? "met" : "NOT met"}).`,
  );
}

// Rounds of the previous layout's packet bench and this one's, alternating which goes first; per path
// and size the median over rounds of each tree's median.
async function compareWithPreviousLayout(): Promise<void> {
  const prev = buildPreviousLayout();
  try {
    const script = "test/bench/packet.bench.ts";
    const common = ["--repeat", String(REPEAT), "--trials", String(PREVIOUS_TRIALS)];
    const trees = [
      { label: `layout ${prev.version}`, run: () => runBench(prev.dir, script, common) },
      {
        label: "this layout",
        run: () => runBench(repoRoot(), script, [...common, "--previous-rounds", "0"]),
      },
    ];
    const samples = trees.map(() => new Map<string, number[][]>());
    for (let r = 0; r < PREVIOUS_ROUNDS; r++) {
      const order = r % 2 === 0 ? [0, 1] : [1, 0];
      for (const t of order) {
        const table = tableAfter(trees[t].run(), MAIN_TABLE);
        for (const [path, cells] of table) {
          const ns = cells.slice(0, 3).map(nsOf);
          if (ns.some((x) => x === undefined)) continue;
          const per = samples[t].get(path) ?? SIZES.map(() => []);
          for (const [i, x] of ns.entries()) per[i].push(x ?? 0);
          samples[t].set(path, per);
        }
      }
      console.error(`[packet] previous layout: round ${r + 1} of ${PREVIOUS_ROUNDS} done`);
    }
    const [old, now] = samples;
    const paths = [...new Set([...now.keys(), ...old.keys()])];
    let worst = 0;
    const rows = paths.map((path) => {
      const [os, ns] = [old.get(path), now.get(path)];
      return [
        path,
        ...SIZES.map((_, i) => {
          const [o, n] = [os && median(os[i]), ns && median(ns[i])];
          if (o === undefined || n === undefined || !os || !ns)
            return `${o === undefined ? "-" : `${o.toFixed(0)} ns`} / ${n === undefined ? "-" : `${n.toFixed(0)} ns`}`;
          // Round by round (the two trees ran back to back): the median of the ratios.
          const r = median(ns[i].map((x, k) => x / os[i][k]));
          if (!path.includes("one run per call") && !path.startsWith("trivial")) worst = Math.max(worst, r);
          return `${o.toFixed(0)} / ${n.toFixed(0)} ns (${r.toFixed(2)}×)`;
        }),
      ];
    });
    console.log(
      `\n### This layout against layout ${prev.version} (commit ${prev.commit.slice(0, 7)}) in the same run: each tree's own packet bench, ${PREVIOUS_ROUNDS} rounds alternating, repeat ${REPEAT}, ${PREVIOUS_TRIALS} trials each; medians over rounds, and the median of the per-round ratios\n`,
    );
    console.log(
      markdownTable(
        [
          "path",
          `10 entries (${prev.version} / now)`,
          `1k entries (${prev.version} / now)`,
          `100k entries (${prev.version} / now)`,
        ],
        rows,
      ),
    );
    console.log(`\nWorst repeated path against layout ${prev.version}: ${worst.toFixed(2)}×.`);
  } finally {
    prev.remove();
  }
}

try {
  await main();
} finally {
  cleanup();
}
if (PREVIOUS_ROUNDS > 0) await compareWithPreviousLayout();
