// Throughput across an enforced veth path, in one run: no policy vs Sluice with 50k policy entries (maps
// written by the agent's map writer, programs attached through the facade's pinned tcx links) vs the same
// number of iptables (legacy) rules in the forwarding path.
// Topology (namespaces unique per run, removed on exit and on failure):
//   A (10.77.1.2) ──veth── R (router: r0 10.77.1.1, r1 10.77.2.1, forwarding) ──veth── B (10.77.2.2)
// Sluice enforces on R's host-side interfaces r0 (A's endpoint) and r1 (B's endpoint), as on a node.
// Traffic: test/bench/native/udp_flood.c (built here with gcc), one UDP flow A -> B for --seconds: the
// packet rate of small datagrams, the worst case of a per-packet cost. No policy, Sluice and the hooks
// alone are also measured, in the same trials, over TCP A -> B as netperf measures a path: one bulk
// stream (test/bench/native/tcp_stream.c: what a transfer between pods moves, in segments of up to
// 64 KiB), 1-byte transactions on one connection and whole connections (test/bench/native/tcp_rr.c:
// netperf's TCP_RR and TCP_CRR, client and server on one CPU; a connection's first packet is a new flow
// at both hooks until the client's ports come round again).
// Trial by trial, each trial running every configuration once (the order rotating), so that the
// machine's drift hits all alike: no policy; Sluice (host routing in BPF, the agent's default: once both
// ends track the flow, r0's program puts B's packets straight into B's namespace, so r1's program and the
// router's forwarding path see only a flow's first packets); Sluice with host routing by the kernel
// (--host-routing off: every packet forwarded by R and judged again at r1; also over TCP); Sluice built
// without rule counters and audit
// (bpf/build/variants/sluice_no_rcnt.bpf.o swapped into the same links, the same maps); the hooks alone
// (sluice_pass_all.bpf.o: the programs pass every packet before any lookup, the floor of any tc
// datapath on this path); Sluice with
// the agent's monitor streaming (its event sampling in sl_config, the agent's monitor reading and
// naming the ring buffer's events, a `sluice monitor --follow` reader on its stream, all in this
// process); and the previous layout (test/bench/previous-layout.ts: that commit's tree built in a
// temporary directory, its own veth/enforce.ts writing its maps and attaching its programs; --no-previous
// leaves it out). Each configuration detaches the others first. Then, apart from those trials, the
// time of each hook's program by the kernel's BPF statistics (kernel.bpf_stats_enabled on for that phase
// only) for both Sluice routings, Sluice without rule counters and the hooks alone: what Sluice's own work
// adds to a packet. iptables is measured last.
// Run as root: node test/bench/veth.bench.ts [--rules 50000] [--seconds 3] [--trials 3] [--no-previous]
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { enums } from "../../operator/src/datapath/codec/layout.generated.ts";
import { repoRoot } from "../../operator/src/datapath/kernel/bpf-addon.ts";
import { loadDatapath } from "../../operator/src/datapath/kernel/programs.ts";
import { AgentMonitor } from "../../operator/src/monitor/agent-monitor.ts";
import { readFlows } from "../../operator/src/monitor/client.ts";
import { MONITOR_SAMPLING } from "../../operator/src/monitor/server.ts";
import { silentLogger } from "../../operator/src/observe/log.ts";
import { buildPreviousLayout, type PreviousLayout } from "./previous-layout.ts";
import { machine, markdownTable, median, requireRoot } from "./table.ts";

const { values: args } = parseArgs({
  allowNegative: true,
  options: {
    rules: { type: "string", default: "50000" },
    seconds: { type: "string", default: "3" },
    trials: { type: "string", default: "3" },
    payload: { type: "string", default: "64" },
    previous: { type: "boolean", default: true },
  },
});
const RULES = Number(args.rules);
const SECONDS = Number(args.seconds);
const TRIALS = Number(args.trials);
const PAYLOAD = Number(args.payload);
const PORT = 5001;
// The TCP measures' port (PORT + 1 is the denied one).
const TCP_PORT = 5003;
type TcpMeasure = "stream" | "rr" | "crr";
const TCP_MEASURES: readonly TcpMeasure[] = ["stream", "rr", "crr"];
// How each measure is named in the table, and its figure printed.
const TCP_SHOWN: Record<TcpMeasure, [title: string, unit: (x: number) => string]> = {
  stream: ["one bulk stream (128 KiB writes; its ACKs are conntrack replies)", gbps],
  rr: ["1-byte request/response on one connection (netperf TCP_RR)", tps],
  crr: [
    "connect, 1-byte request/response, close (netperf TCP_CRR; a new flow per connection until ports come round)",
    tps,
  ],
};
const A_IP = "10.77.1.2";
const B_IP = "10.77.2.2";

requireRoot("veth.bench");

const here = dirname(fileURLToPath(import.meta.url));
const tag = `${process.pid.toString(36)}${randomBytes(2).toString("hex")}`;
const NS = { a: `slb-a-${tag}`, r: `slb-r-${tag}`, b: `slb-b-${tag}` };
const pinRoot = `/sys/fs/bpf/sluice-bench-${tag}`;
// The previous layout's maps and links.
const previousPinRoot = `${pinRoot}-previous`;
const NO_RCNT_OBJECT = join(repoRoot(), "bpf/build/variants/sluice_no_rcnt.bpf.o");
const PASS_ALL_OBJECT = join(repoRoot(), "bpf/build/variants/sluice_pass_all.bpf.o");
const work = mkdtempSync(join(tmpdir(), "sluice-veth-"));
const created: string[] = [];
const children = new Set<ChildProcess>();

function sh(cmd: string, argv: string[], input?: string): string {
  return execFileSync(cmd, argv, {
    encoding: "utf8",
    input,
    stdio: ["pipe", "pipe", "pipe"],
    maxBuffer: 256 << 20,
  });
}
const inNs = (ns: string, cmd: string[], input?: string) => sh("ip", ["netns", "exec", ns, ...cmd], input);

function cleanup(): void {
  for (const c of children) c.kill("SIGKILL");
  for (const ns of created.splice(0)) {
    try {
      sh("ip", ["netns", "delete", ns]);
    } catch (e) {
      console.error(`veth.bench: could not delete netns ${ns}: ${(e as Error).message}`);
    }
  }
  bpfStats(false);
  rmSync(pinRoot, { recursive: true, force: true });
  rmSync(previousPinRoot, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
}
for (const sig of ["SIGINT", "SIGTERM"] as const)
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });

function topology(): void {
  for (const ns of [NS.a, NS.r, NS.b]) {
    sh("ip", ["netns", "add", ns]);
    created.push(ns);
  }
  sh("ip", ["-n", NS.r, "link", "add", "r0", "type", "veth", "peer", "name", "eth0", "netns", NS.a]);
  sh("ip", ["-n", NS.r, "link", "add", "r1", "type", "veth", "peer", "name", "eth0", "netns", NS.b]);
  const batch = (ns: string, lines: string[]) => sh("ip", ["-n", ns, "-batch", "-"], `${lines.join("\n")}\n`);
  batch(NS.r, [
    "link set lo up",
    "addr add 10.77.1.1/24 dev r0",
    "addr add 10.77.2.1/24 dev r1",
    "link set r0 up",
    "link set r1 up",
  ]);
  batch(NS.a, [
    "link set lo up",
    `addr add ${A_IP}/24 dev eth0`,
    "link set eth0 up",
    "route add default via 10.77.1.1",
  ]);
  batch(NS.b, [
    "link set lo up",
    `addr add ${B_IP}/24 dev eth0`,
    "link set eth0 up",
    "route add default via 10.77.2.1",
  ]);
  inNs(NS.r, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
}

function spawnIn(ns: string, argv: string[]): { child: ChildProcess; out: Promise<string> } {
  const child = spawn("ip", ["netns", "exec", ns, ...argv], { stdio: ["ignore", "pipe", "inherit"] });
  children.add(child);
  let out = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  const done = new Promise<string>((resolve, reject) => {
    child.on("close", (code) => {
      children.delete(child);
      if (code === 0) resolve(out);
      else reject(new Error(`${argv.join(" ")} in ${ns}: exit ${code}`));
    });
  });
  return { child, out: done };
}

// A receiver started in B (udp_flood's or tcp_stream's), once it says it listens.
async function receiver(argv: string[]): Promise<ReturnType<typeof spawnIn>> {
  const recv = spawnIn(NS.b, argv);
  await new Promise<void>((resolve, reject) => {
    recv.child.stdout?.on("data", (d: Buffer) => {
      if (d.toString().includes("ready")) resolve();
    });
    recv.out.catch(reject);
  });
  return recv;
}

// One measurement: packets per second received by B (and offered by A).
async function flood(bin: string, port = PORT, seconds = SECONDS): Promise<{ rx: number; tx: number }> {
  const recv = await receiver([bin, "recv", String(port), String(seconds)]);
  const send = spawnIn(NS.a, [bin, "send", B_IP, String(port), String(seconds), String(PAYLOAD)]);
  const tx = Number((await send.out).trim());
  const rx = Number((await recv.out).trim().split("\n").pop());
  return { rx: rx / seconds, tx: tx / seconds };
}

// One bulk TCP stream A -> B: bytes per second received by B (segments of up to 64 KiB: GSO/GRO).
async function stream(bin: string): Promise<number> {
  const recv = await receiver([bin, "recv", String(TCP_PORT), String(SECONDS)]);
  const send = spawnIn(NS.a, [bin, "send", B_IP, String(TCP_PORT), String(SECONDS)]);
  await send.out;
  const rx = Number((await recv.out).trim().split("\n").pop());
  if (!(rx > 0)) throw new Error("the TCP stream moved no bytes");
  return rx / SECONDS;
}

// Client and server of the transactions share one CPU, with the path's softirq (raised on the sending
// CPU): the rate is then what a transaction costs in CPU time, not how fast an idle vCPU wakes up.
const ONE_CPU = ["taskset", "-c", "0"];

// Transactions per second A -> B: 1-byte request and response on one connection (rr), or each on a
// connection of its own (crr: connect, request, response, close).
async function transactions(bin: string, mode: "rr" | "crr"): Promise<number> {
  const server = await receiver([...ONE_CPU, bin, "serve", String(TCP_PORT), String(SECONDS)]);
  const client = spawnIn(NS.a, [...ONE_CPU, bin, mode, B_IP, String(TCP_PORT), String(SECONDS)]);
  const done = Number((await client.out).trim());
  await server.out;
  if (!(done > 0)) throw new Error(`TCP ${mode} completed no transaction`);
  return done / SECONDS;
}

async function measure(bin: string): Promise<{ rx: number; tx: number }> {
  const runs: { rx: number; tx: number }[] = [];
  for (let i = 0; i < TRIALS; i++) runs.push(await flood(bin));
  return { rx: median(runs.map((r) => r.rx)), tx: median(runs.map((r) => r.tx)) };
}

function iptablesRules(n: number): string {
  // n - 1 rules the flow must walk past (other sources to the same port), then the one that allows it.
  const lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"];
  for (let i = 0; i < n - 1; i++)
    lines.push(
      `-A FORWARD -s 10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32 -p udp --dport ${PORT} -j DROP`,
    );
  lines.push(`-A FORWARD -s ${A_IP}/32 -d ${B_IP}/32 -p udp --dport ${PORT} -j ACCEPT`);
  lines.push("COMMIT", "");
  return lines.join("\n");
}

// Runs a tree's veth/enforce.ts inside the router namespace against a pin root; its JSON line.
function enforce(tree: string, root: string, extra: readonly string[] = []): Record<string, unknown> {
  const out = sh("nsenter", [
    `--net=/run/netns/${NS.r}`,
    process.execPath,
    "--disable-warning=ExperimentalWarning",
    join(tree, "test/bench/veth/enforce.ts"),
    ...["--pin-root", root, "--rules", String(RULES), "--port", String(PORT)],
    ...["--a-ip", A_IP, "--b-ip", B_IP, "--a-if", "r0", "--b-if", "r1"],
    ...extra,
  ]);
  return JSON.parse(out) as Record<string, unknown>;
}

// Nothing attached: the links live as long as their pins (and the devices).
function detachAll(): void {
  for (const root of [pinRoot, previousPinRoot])
    rmSync(join(root, "links"), { recursive: true, force: true });
}

// Enforced, not just attached: a port the policy does not allow gets nothing through.
async function checkDenied(bin: string, what: string): Promise<void> {
  const denied = await flood(bin, PORT + 1, 1);
  if (denied.rx !== 0 || denied.tx === 0)
    throw new Error(`${what} let ${denied.rx} pps of a denied flow through (offered ${denied.tx})`);
}

type Rate = { rx: number; tx: number };

interface Config {
  name: string;
  // Attaches what the configuration enforces (the others detached).
  attach(): void;
  run(): Promise<Rate>;
  // Also measured with a bulk TCP stream in each trial.
  tcp?: boolean;
}

async function main(): Promise<void> {
  const bin = join(work, "udp_flood");
  execFileSync("gcc", ["-O2", "-Wall", "-o", bin, join(here, "native/udp_flood.c")], { stdio: "inherit" });
  const tcpBin = join(work, "tcp_stream");
  execFileSync("gcc", ["-O2", "-Wall", "-o", tcpBin, join(here, "native/tcp_stream.c")], {
    stdio: "inherit",
  });
  const rrBin = join(work, "tcp_rr");
  execFileSync("gcc", ["-O2", "-Wall", "-o", rrBin, join(here, "native/tcp_rr.c")], { stdio: "inherit" });
  const tcp: Record<TcpMeasure, () => Promise<number>> = {
    stream: () => stream(tcpBin),
    rr: () => transactions(rrBin, "rr"),
    crr: () => transactions(rrBin, "crr"),
  };
  topology();
  const root = repoRoot();
  const written = enforce(root, pinRoot, ["--tcp-port", String(TCP_PORT)]) as {
    entries: number;
    syncMs: number;
  };
  await checkDenied(bin, "Sluice");
  let previous: (PreviousLayout & { syncMs: number }) | undefined;
  if (args.previous) {
    detachAll();
    const built = buildPreviousLayout();
    const w = enforce(built.dir, previousPinRoot) as { syncMs: number };
    previous = { ...built, syncMs: w.syncMs };
    await checkDenied(bin, `layout ${built.version}`);
  }

  let streamedFlows = 0;
  const configs: Config[] = [
    { name: "none", attach: detachAll, run: () => flood(bin), tcp: true },
    {
      name: "sluice",
      attach: () => enforce(root, pinRoot, ["--attach-only", "--host-routing", "on"]),
      run: () => flood(bin),
      tcp: true,
    },
    {
      name: "kernel-routing",
      attach: () => enforce(root, pinRoot, ["--attach-only", "--host-routing", "off"]),
      run: () => flood(bin),
      tcp: true,
    },
    {
      name: "no-rcnt",
      attach: () =>
        enforce(root, pinRoot, ["--attach-only", "--host-routing", "on", "--object", NO_RCNT_OBJECT]),
      run: () => flood(bin),
    },
    {
      name: "pass-all",
      attach: () => enforce(root, pinRoot, ["--attach-only", "--object", PASS_ALL_OBJECT]),
      run: () => flood(bin),
      tcp: true,
    },
    {
      name: "monitor",
      attach: () => enforce(root, pinRoot, ["--attach-only", "--host-routing", "on"]),
      run: async () => {
        const s = await withMonitor(() => flood(bin));
        streamedFlows += s.flows;
        return s.result;
      },
    },
  ];
  const prev = previous;
  if (prev)
    configs.push({
      name: "previous",
      // Its map writer again: the maps hold the policy already, so it writes nothing and attaches.
      attach: () => enforce(prev.dir, previousPinRoot),
      run: () => flood(bin),
    });
  const runs = new Map<string, Rate[]>(configs.map((c) => [c.name, []]));
  // Per TCP measure, per configuration, one figure per trial.
  const tcpRuns = new Map<TcpMeasure, Map<string, number[]>>(
    TCP_MEASURES.map((m) => [m, new Map(configs.filter((c) => c.tcp).map((c) => [c.name, []]))]),
  );
  for (let i = 0; i < TRIALS; i++) {
    const line: string[] = [];
    for (const [j] of configs.entries()) {
      const c = configs[(i + j) % configs.length];
      detachAll();
      c.attach();
      const r = await c.run();
      runs.get(c.name)?.push(r);
      line.push(`${c.name} ${pps(r.rx)}`);
      if (c.tcp) {
        const got: string[] = [];
        for (const m of TCP_MEASURES) {
          const x = await tcp[m]();
          tcpRuns.get(m)?.get(c.name)?.push(x);
          got.push(`${m} ${TCP_SHOWN[m][1](x)}`);
        }
        line.push(`(TCP ${got.join(" ")})`);
      }
    }
    console.error(`[veth] trial ${i + 1}: ${line.join(", ")}`);
  }
  detachAll();
  const med = (name: string): Rate => {
    const r = runs.get(name) ?? [];
    return { rx: median(r.map((x) => x.rx)), tx: median(r.map((x) => x.tx)) };
  };
  const [none, sluice, kernelRouting, noRcnt, passAll, streamed] = [
    "none",
    "sluice",
    "kernel-routing",
    "no-rcnt",
    "pass-all",
    "monitor",
  ].map(med);
  if (streamedFlows === 0) throw new Error("the monitor streamed no flow of the allowed flood");
  // The flood counted where the agent's rule counters say (slots the map writer gave the entries).
  const counted = ruleCounted();
  if (counted === 0n) throw new Error("the rule counters counted none of the flood's packets");

  const rows: string[][] = [["no policy (baseline)", "-", pps(none.rx), pps(none.tx), "1.00×"]];
  rows.push([
    `Sluice, ${written.entries} policy entries (tcx on r0, r1; host routing in BPF, the default)`,
    `${written.syncMs.toFixed(0)} ms (MapSync)`,
    pps(sluice.rx),
    pps(sluice.tx),
    ratio(sluice.rx, none.rx),
  ]);
  rows.push([
    "Sluice, host routing by the kernel (--host-routing kernel; same maps)",
    "-",
    pps(kernelRouting.rx),
    pps(kernelRouting.tx),
    `${ratio(kernelRouting.rx, none.rx)} (Sluice: ${ratio(sluice.rx, kernelRouting.rx)} of this)`,
  ]);
  rows.push([
    "Sluice, rule counters and audit compiled out (same maps)",
    "-",
    pps(noRcnt.rx),
    pps(noRcnt.tx),
    `${ratio(noRcnt.rx, none.rx)} (Sluice: ${ratio(sluice.rx, noRcnt.rx)} of this)`,
  ]);
  rows.push([
    "the hooks alone: programs that pass every packet (tcx on r0, r1)",
    "-",
    pps(passAll.rx),
    pps(passAll.tx),
    `${ratio(passAll.rx, none.rx)} (Sluice: ${ratio(sluice.rx, passAll.rx)} of this)`,
  ]);
  rows.push([
    `Sluice, monitor streaming (${streamedFlows} flows read)`,
    `1/${MONITOR_SAMPLING.allow} allowed sampled`,
    pps(streamed.rx),
    pps(streamed.tx),
    `${ratio(streamed.rx, none.rx)} (${ratio(streamed.rx, sluice.rx)} of Sluice)`,
  ]);
  if (previous) {
    const p = med("previous");
    rows.push([
      `layout ${previous.version} (commit ${previous.commit.slice(0, 7)}), ${written.entries} policy entries`,
      `${previous.syncMs.toFixed(0)} ms (MapSync)`,
      pps(p.rx),
      pps(p.tx),
      `${ratio(p.rx, none.rx)} (Sluice: ${ratio(sluice.rx, p.rx)} of this)`,
    ]);
    previous.remove();
    rmSync(previousPinRoot, { recursive: true, force: true });
  }

  const times = await programTimes(configs);
  console.error(
    `[veth] program time per packet: ${[...times].map(([n, t]) => `${n} ${t.perPacket.toFixed(1)} ns`).join(", ")}`,
  );

  const rulesFile = join(work, "rules");
  writeFileSync(rulesFile, iptablesRules(RULES));
  const t0 = performance.now();
  inNs(NS.r, ["sh", "-c", `iptables-legacy-restore < ${rulesFile}`]);
  const loadMs = performance.now() - t0;
  const count = inNs(NS.r, ["iptables-legacy", "-S", "FORWARD"])
    .split("\n")
    .filter((l) => l.startsWith("-A")).length;
  if (count !== RULES) throw new Error(`iptables FORWARD holds ${count} rules, expected ${RULES}`);
  const ipt = await measure(bin);
  rows.push([
    `iptables (legacy), ${RULES} rules in FORWARD`,
    `${loadMs.toFixed(0)} ms (restore)`,
    pps(ipt.rx),
    pps(ipt.tx),
    ratio(ipt.rx, none.rx),
  ]);
  inNs(NS.r, ["iptables-legacy", "-F", "FORWARD"]);

  console.log(
    `\n### Throughput across a forwarded veth path (UDP, ${PAYLOAD}-byte payload, ${SECONDS} s, median of ${TRIALS}; configurations interleaved trial by trial)\n`,
  );
  console.log(`Machine: ${await machine()}\n`);
  console.log(markdownTable(["path", "setup", "received", "offered", "× no policy"], rows));
  // The same comparisons trial by trial (each trial's configurations ran back to back): the median of
  // the ratios, less exposed to drift between trials than the ratio of medians.
  const paired = (name: string, base: string) => {
    const [a, b] = [runs.get(name) ?? [], runs.get(base) ?? []];
    return `${median(a.map((x, i) => x.rx / (b[i]?.rx ?? Number.NaN))).toFixed(3)}×`;
  };
  console.log(
    `\nTrial by trial (median of the per-trial ratios): Sluice / no policy ${paired("sluice", "none")}, ` +
      `host routing by the kernel / no policy ${paired("kernel-routing", "none")}, ` +
      `hooks alone / no policy ${paired("pass-all", "none")}, Sluice / hooks alone ${paired("sluice", "pass-all")}, ` +
      `Sluice / rule counters compiled out ${paired("sluice", "no-rcnt")}, monitor streaming / Sluice ${paired("monitor", "sluice")}` +
      (previous ? `, Sluice / layout ${previous.version} ${paired("sluice", "previous")}.` : "."),
  );
  printProgramTimes(times, none.rx);
  printTcp(tcpRuns);
  const met = (x: number) => `${x.toFixed(3)}×: ${x >= 0.95 ? "met" : "NOT met"}`;
  const tcpRatio = (config: string, m: TcpMeasure) => {
    const of = (name: string) => median(tcpRuns.get(m)?.get(name) ?? []);
    return met(of(config) / of("none"));
  };
  for (const [name, what, udp] of [
    ["sluice", "host routing in BPF (the agent's default)", sluice],
    ["kernel-routing", "host routing by the kernel", kernelRouting],
  ] as const)
    console.log(
      `\nTarget: Sluice with ${written.entries} entries >= 0.95× no policy; ${what}. Packet rate of 64-byte UDP ` +
        `datagrams (the worst case): ${met(udp.rx / none.rx)}. TCP: bulk stream ${tcpRatio(name, "stream")}; ` +
        `transactions on one connection ${tcpRatio(name, "rr")}; connections ${tcpRatio(name, "crr")}.`,
    );
}

// The kernel's run-time statistics of BPF programs (kernel.bpf_stats_enabled): on only for the program
// time phase, then set back to what it was, also on failure (cleanup).
const STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled";
let statsWere: string | undefined;
function bpfStats(on: boolean): void {
  if (on) {
    statsWere ??= readFileSync(STATS_SYSCTL, "utf8").trim();
    writeFileSync(STATS_SYSCTL, "1\n");
  } else if (statsWere !== undefined) {
    writeFileSync(STATS_SYSCTL, `${statsWere}\n`);
    statsWere = undefined;
  }
}

// Run count and time so far of the programs in the pinned links that the flood crosses: r0's ingress
// hook (A's packets leaving A: sl_from_pod) and r1's egress hook (toward B: sl_to_pod).
function hookRuns(): { fromPod: { cnt: number; ns: number }; toPod: { cnt: number; ns: number } } {
  const runs = (link: string) => {
    const l = JSON.parse(sh("bpftool", ["link", "show", "pinned", join(pinRoot, "links", link), "-j"])) as {
      prog_id: number;
    };
    const p = JSON.parse(sh("bpftool", ["prog", "show", "id", String(l.prog_id), "-j"])) as {
      run_cnt?: number;
      run_time_ns?: number;
    };
    return { cnt: p.run_cnt ?? 0, ns: p.run_time_ns ?? 0 };
  };
  return { fromPod: runs("r0-ingress"), toPod: runs("r1-egress") };
}

// fromPod, toPod: ns per run of each hook's program (toPod undefined when it did not run); toShare: its
// runs per packet through r0 (under host routing only the packets that go the host's way reach r1);
// perPacket: both programs' time per packet.
type ProgramTime = { fromPod: number; toPod: number | undefined; toShare: number; perPacket: number };
const PROGRAM_TIMED = ["sluice", "kernel-routing", "no-rcnt", "pass-all"];

// Time of each hook's program on the flood's path, by the kernel's own clock: Sluice (host routing in
// BPF and kernel), Sluice without rule counters, and the programs that pass everything, whose figure is
// what the statistics themselves add to every run (two clock reads). Median over up to 3 floods each.
async function programTimes(configs: readonly Config[]): Promise<Map<string, ProgramTime>> {
  const out = new Map<string, ProgramTime>();
  bpfStats(true);
  try {
    for (const name of PROGRAM_TIMED) {
      const c = configs.find((x) => x.name === name);
      if (!c) throw new Error(`no configuration ${name}`);
      const per: ProgramTime[] = [];
      for (let i = 0; i < Math.min(TRIALS, 3); i++) {
        detachAll();
        c.attach();
        const before = hookRuns();
        await c.run();
        const after = hookRuns();
        const from = {
          cnt: after.fromPod.cnt - before.fromPod.cnt,
          ns: after.fromPod.ns - before.fromPod.ns,
        };
        const to = { cnt: after.toPod.cnt - before.toPod.cnt, ns: after.toPod.ns - before.toPod.ns };
        if (from.cnt <= 0) throw new Error(`${name}: r0's program did not run during the flood`);
        per.push({
          fromPod: from.ns / from.cnt,
          toPod: to.cnt > 0 ? to.ns / to.cnt : undefined,
          toShare: to.cnt / from.cnt,
          perPacket: (from.ns + to.ns) / from.cnt,
        });
      }
      const to = per.flatMap((p) => (p.toPod === undefined ? [] : [p.toPod]));
      out.set(name, {
        fromPod: median(per.map((p) => p.fromPod)),
        toPod: to.length > 0 ? median(to) : undefined,
        toShare: median(per.map((p) => p.toShare)),
        perPacket: median(per.map((p) => p.perPacket)),
      });
    }
  } finally {
    bpfStats(false);
    detachAll();
  }
  return out;
}

// What the programs' own work adds to a packet, against the time a packet takes without policy.
function printProgramTimes(times: Map<string, ProgramTime>, nonePps: number): void {
  const floor = times.get("pass-all");
  if (!floor) throw new Error("no program time for the hooks alone");
  const packetNs = 1e9 / nonePps;
  const programs: [config: string, what: string, object: string][] = [
    ["pass-all", "the hooks alone (pass every packet)", basename(PASS_ALL_OBJECT)],
    ["sluice", "Sluice, host routing in BPF", "sluice.bpf.o"],
    ["kernel-routing", "Sluice, host routing by the kernel", "sluice.bpf.o"],
    [
      "no-rcnt",
      "Sluice, host routing in BPF, rule counters and audit compiled out",
      basename(NO_RCNT_OBJECT),
    ],
  ];
  const rows = programs.map(([config, what, object]) => {
    const t = times.get(config);
    if (!t) throw new Error(`no program time for ${config}`);
    const extra = t.perPacket - floor.perPacket;
    return [
      `${what} (${object})`,
      `${t.fromPod.toFixed(1)} ns`,
      t.toPod === undefined ? "-" : `${t.toPod.toFixed(1)} ns × ${t.toShare.toFixed(3)}`,
      `${t.perPacket.toFixed(1)} ns`,
      t === floor
        ? "-"
        : `${extra.toFixed(0)} ns (${((100 * extra) / packetNs).toFixed(1)} % of ${(packetNs / 1000).toFixed(2)} µs)`,
    ];
  });
  console.log(
    "\nProgram time on the flood's path, by the kernel's BPF statistics (a separate phase: they add two clock reads to every run, which the hooks-alone row is), median of up to 3 floods. The to-pod hook runs only for packets that go the host's way: its time per run × its runs per packet.\n",
  );
  console.log(
    markdownTable(
      [
        "program",
        "from pod (r0 ingress), per run",
        "to pod (r1 egress), per run × runs per packet",
        "both, per packet",
        "per packet above the hooks alone (of a no-policy packet)",
      ],
      rows,
    ),
  );
}

// Packets the layout's rule counters hold, summed over slots and CPUs.
function ruleCounted(): bigint {
  const dp = loadDatapath({ pinRoot });
  try {
    let n = 0n;
    for (const c of dp.maps.ruleCounters.read().values()) n += c.packets;
    return n;
  } finally {
    dp.close();
  }
}

// Runs `work` with the agent's monitor on the pinned datapath (its sampling, its reader of the ring
// buffer, its server) and one follower reading the stream; events off again afterwards.
async function withMonitor<T>(work: () => Promise<T>): Promise<{ result: T; flows: number }> {
  const dp = loadDatapath({ pinRoot });
  const sampling = {
    sampleAllow: MONITOR_SAMPLING.allow,
    sampleDeny: MONITOR_SAMPLING.deny,
    perSecond: 1000,
  };
  const monitor = await AgentMonitor.start({
    node: "bench",
    datapath: dp,
    sampling,
    listen: { host: "127.0.0.1", port: 0 },
    source: () => undefined,
    logger: silentLogger(),
  });
  const abort = new AbortController();
  let flows = 0;
  const address = monitor.address as { host: string; port: number };
  const target = {
    node: "bench",
    via: "bench",
    connection: { connect: () => connect(address.port, address.host) },
  };
  const reading = (async () => {
    try {
      for await (const r of readFlows(target, new URLSearchParams({ follow: "true" }), abort.signal))
        if (r.type === "flow") flows++;
    } catch (e) {
      if (!abort.signal.aborted) throw e;
    }
  })();
  try {
    dp.maps.config.write({
      event_sample_allow: sampling.sampleAllow,
      event_sample_deny: sampling.sampleDeny,
      events_per_sec: sampling.perSecond,
      flags: enums.sl_config_flags.SL_CFG_HOST_ROUTING,
    });
    const result = await work();
    return { result, flows };
  } finally {
    dp.maps.config.write({
      event_sample_allow: 0,
      event_sample_deny: 0,
      events_per_sec: 0,
      flags: enums.sl_config_flags.SL_CFG_HOST_ROUTING,
    });
    abort.abort();
    await reading;
    await monitor.close();
    dp.close();
  }
}

// The TCP measures through the same configurations, in the same trials.
function printTcp(tcpRuns: Map<TcpMeasure, Map<string, number[]>>): void {
  const paths: [name: string, label: string][] = [
    ["none", "no policy (baseline)"],
    ["sluice", `Sluice, ${RULES} policy entries (host routing in BPF)`],
    ["kernel-routing", "Sluice, host routing by the kernel"],
    ["pass-all", "the hooks alone: programs that pass every packet"],
  ];
  const rows: string[][] = [];
  for (const m of TCP_MEASURES) {
    const of = (name: string) => tcpRuns.get(m)?.get(name) ?? [];
    const none = of("none");
    for (const [name, label] of paths) {
      const r = of(name);
      const paired = median(r.map((x, i) => x / (none[i] ?? Number.NaN)));
      rows.push([
        name === "none" ? TCP_SHOWN[m][0] : "",
        label,
        TCP_SHOWN[m][1](median(r)),
        name === "none"
          ? "1.00×"
          : `${ratio(median(r), median(none))} (${paired.toFixed(3)}× trial by trial)`,
      ]);
    }
  }
  console.log(
    `\nTCP A -> B (port ${TCP_PORT}, ${SECONDS} s each), in the same trials, median of ${TRIALS}:\n`,
  );
  console.log(markdownTable(["measure", "path", "received", "× no policy"], rows));
}

function tps(perSecond: number): string {
  return `${(perSecond / 1000).toFixed(1)} k/s`;
}

function gbps(bytesPerSecond: number): string {
  return `${((bytesPerSecond * 8) / 1e9).toFixed(2)} Gbit/s`;
}

function ratio(x: number, base: number): string {
  return `${(x / base).toPrecision(3)}×`;
}

function pps(x: number): string {
  return `${(x / 1000).toFixed(0)} kpps`;
}

try {
  await main();
} finally {
  cleanup();
}
