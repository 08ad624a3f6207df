// Host routing in BPF (SL_CFG_HOST_ROUTING, the agent's default --host-routing bpf) with real traffic in
// the lab: two pods of one node talk over TCP through their programs. Once both ends track the flow, a
// packet goes from the sender's host-side hook straight into the receiver's namespace: the receiver's
// host-side veth transmits almost none of what the receiver gets (its receive counter counts them all),
// where with --host-routing kernel it transmits every one. Through a Service-like DNAT in the node's
// namespace the same pods still talk (its replies must go through the host's NAT, so never straight
// across), and a policy that stops allowing the flow cuts it, fast path or not.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { type Child, firstLine, NODE, spawnIn } from "../../operator/src/lab/children.ts";
import { Lab } from "../../operator/src/lab/lab.ts";
import { topologyFromObjects } from "../../operator/src/lab/topology.ts";
import { loadObjects } from "../../operator/src/manifests/load.ts";
import { requirePrivileged } from "../support/privileged.ts";
import { agentMissing } from "./lab-support.ts";

const A = "10.244.1.10";
const B = "10.244.1.11";
const A6 = "fd00:244:1::10";
const B6 = "fd00:244:1::11";
const VIP = "10.96.0.10";
const PORT = 7000;
const UDP_PORT = 7001;
const EXCHANGES = 200;
const DATAGRAMS = 50;

const TOPOLOGY = `apiVersion: v1
kind: List
items:
  - { apiVersion: v1, kind: Namespace, metadata: { name: app } }
  - apiVersion: v1
    kind: Pod
    metadata: { name: a, namespace: app, labels: { app: a } }
    spec: { nodeName: node-a, containers: [{ name: c }] }
    status: { podIP: ${A}, podIPs: [{ ip: ${A} }, { ip: "${A6}" }] }
  - apiVersion: v1
    kind: Pod
    metadata: { name: b, namespace: app, labels: { app: b } }
    spec: { nodeName: node-a, containers: [{ name: c }] }
    status: { podIP: ${B}, podIPs: [{ ip: ${B} }, { ip: "${B6}" }] }
`;

// b accepts a on PORT/TCP and UDP_PORT/UDP (allowed) or nothing (denied): a NetworkPolicy isolating b
// for ingress.
const policy = (allowed: boolean) => `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: b, namespace: app }
spec:
  podSelector: { matchLabels: { app: b } }
  policyTypes: [Ingress]
  ingress: ${allowed ? `[{ from: [{ podSelector: { matchLabels: { app: a } } }], ports: [{ port: ${PORT}, protocol: TCP }, { port: ${UDP_PORT}, protocol: UDP }] }]` : "[]"}
`;

// In b: a TCP echo server (prints "ready" once listening).
const ECHO = `
require("node:net").createServer((s) => s.on("error", () => {}).pipe(s)).listen(${PORT}, () => console.log("ready"));
`;

// In a: connects to argv[1], then echoes argv[2] messages of 100 bytes one at a time; prints how many
// came back. With argv[3] "hold", keeps the connection after that and sends one more message on each
// line of stdin, printing "echoed" or "lost" (no answer in 2 s).
const CLIENT = `
const net = require("node:net");
const [to, n, hold] = process.argv.slice(1);
const c = net.connect({ host: to, port: ${PORT} });
let got = "";
const waiters = [];
c.on("data", (d) => { got += d; while (waiters.length && got.length >= 100) { got = got.slice(100); waiters.shift()(true); } });
c.on("error", (e) => { console.log("error " + e.code); process.exit(0); });
const once = () => new Promise((r) => { waiters.push(r); c.write("x".repeat(100)); setTimeout(() => r(false), 2000); });
c.on("connect", async () => {
  let echoed = 0;
  for (let i = 0; i < Number(n); i++) if (await once()) echoed++;
  console.log("echoed " + echoed);
  if (hold !== "hold") { c.end(); return; }
  const rl = require("node:readline").createInterface({ input: process.stdin });
  for await (const _ of rl) console.log((await once()) ? "echoed" : "lost");
  c.destroy();
});
`;

// In b: receives UDP datagrams on UDP_PORT until argv[1] came or 3 s pass without one; prints the TTL
// each arrived with (IP_RECVTTL).
const TTL_RECEIVER = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
IP_RECVTTL = 12  # <linux/in.h>; Python's socket module does not name it
s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
s.bind(("0.0.0.0", ${UDP_PORT}))
s.settimeout(3)
print("ready", flush=True)
ttls = []
try:
    while len(ttls) < int(sys.argv[1]):
        _, anc, _, _ = s.recvmsg(64, socket.CMSG_SPACE(4))
        ttls += [int.from_bytes(d[:4], sys.byteorder) for (lvl, t, d) in anc if lvl == socket.IPPROTO_IP and t == socket.IP_TTL]
except socket.timeout:
    pass
print(" ".join(map(str, ttls)), flush=True)
`;

// In a: argv[2] datagrams to argv[1]:UDP_PORT, 2 ms apart.
const UDP_SENDER = `
const s = require("node:dgram").createSocket("udp4");
const [to, n] = process.argv.slice(1);
let i = 0;
const next = () => (i++ < Number(n) ? s.send("d", ${UDP_PORT}, to, () => setTimeout(next, 2)) : s.close());
next();
`;

interface Counters {
  hostTx: number;
  podRx: number;
}

async function withLab(
  agentArgs: string[],
  run: (lab: Lab, files: { topology: string; allow: string; deny: string }) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-host-routing-"));
  const files = {
    topology: join(dir, "topology.yaml"),
    allow: join(dir, "allow.yaml"),
    deny: join(dir, "deny.yaml"),
  };
  writeFileSync(files.topology, TOPOLOGY);
  writeFileSync(files.allow, policy(true));
  writeFileSync(files.deny, policy(false));
  const lab = await Lab.create(topologyFromObjects(loadObjects([files.topology])), { agentArgs });
  try {
    await run(lab, files);
  } finally {
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

// The echo server in b, once it listens.
async function startEcho(lab: Lab): Promise<Child> {
  const server = spawnIn(lab.pod("app/b").netns, "echo server", [NODE, "-e", ECHO]);
  assert.equal(await firstLine(server, 10000), "ready");
  return server;
}

// What b's host-side veth transmitted and b's eth0 received.
async function counters(lab: Lab): Promise<Counters> {
  const b = lab.pod("app/b");
  const stats = async (netns: string, dev: string) =>
    (
      JSON.parse(await lab.exec(netns, "stats", ["ip", "-j", "-s", "link", "show", dev])) as {
        stats64: { rx: { packets: number }; tx: { packets: number } };
      }[]
    )[0].stats64;
  return {
    hostTx: (await stats(b.nodeNetns, b.hostIf)).tx.packets,
    podRx: (await stats(b.netns, "eth0")).rx.packets,
  };
}

async function exchange(lab: Lab, to: string): Promise<{ echoed: number; hostTx: number; podRx: number }> {
  const before = await counters(lab);
  const out = await lab.exec(lab.pod("app/a").netns, "client", [NODE, "-e", CLIENT, to, String(EXCHANGES)]);
  const after = await counters(lab);
  const echoed = Number(/echoed (\d+)/.exec(out)?.[1] ?? -1);
  return { echoed, hostTx: after.hostTx - before.hostTx, podRx: after.podRx - before.podRx };
}

test("host routing in BPF: same-node flows skip the host, NAT'd flows do not, revoked flows stop", async (t) => {
  if (!requirePrivileged(t, agentMissing)) return;
  await withLab([], async (lab, files) => {
    const echo = await startEcho(lab);
    t.after(() => echo.proc.kill("SIGKILL"));
    await lab.startAgents([files.topology, files.allow]);

    const direct = await exchange(lab, B);
    t.diagnostic(
      `direct: ${direct.echoed} echoed; b received ${direct.podRx}, its host veth sent ${direct.hostTx}`,
    );
    assert.equal(direct.echoed, EXCHANGES, "every message of the allowed flow came back");
    assert.ok(direct.podRx >= EXCHANGES, `b received the messages (${direct.podRx} packets)`);
    // The handshake goes the host's way until both ends track the flow; then nothing does.
    assert.ok(
      direct.hostTx <= direct.podRx / 10,
      `b's host veth sent ${direct.hostTx} of the ${direct.podRx} packets b received: most went straight across`,
    );

    const v6 = await exchange(lab, B6);
    t.diagnostic(`IPv6: ${v6.echoed} echoed; b received ${v6.podRx}, its host veth sent ${v6.hostTx}`);
    assert.equal(v6.echoed, EXCHANGES, "every message of the allowed IPv6 flow came back");
    assert.ok(v6.hostTx <= v6.podRx / 10, `IPv6: b's host veth sent ${v6.hostTx} of ${v6.podRx} packets`);

    // Forwarded as the host forwards: one hop less, whichever way a datagram went.
    const receiver = spawnIn(lab.pod("app/b").netns, "ttl receiver", [
      "python3",
      "-c",
      TTL_RECEIVER,
      String(DATAGRAMS),
    ]);
    assert.equal(await firstLine(receiver, 10000), "ready");
    const ttlsLine = firstLine(receiver, 30000);
    await lab.exec(lab.pod("app/a").netns, "udp sender", [NODE, "-e", UDP_SENDER, B, String(DATAGRAMS)]);
    const ttls = (await ttlsLine).split(" ").filter(Boolean).map(Number);
    t.diagnostic(`UDP: ${ttls.length} datagrams, TTLs ${[...new Set(ttls)].join(", ")}`);
    assert.equal(ttls.length, DATAGRAMS, "every datagram arrived");
    assert.deepEqual([...new Set(ttls)], [63], "each arrived with a's TTL (64) less one hop");

    // A Service-like DNAT in the node: b's replies to a must be un-NATed by the host on their way.
    const node = lab.pod("app/a").nodeNetns;
    await lab.exec(node, "dnat", [
      "iptables",
      ...["-t", "nat", "-A", "PREROUTING", "-d", VIP, "-p", "tcp", "--dport", String(PORT)],
      ...["-j", "DNAT", "--to-destination", `${B}:${PORT}`],
    ]);
    const natted = await exchange(lab, VIP);
    t.diagnostic(`through ${VIP}: ${natted.echoed} echoed; b's host veth sent ${natted.hostTx}`);
    assert.equal(natted.echoed, EXCHANGES, "every message through the DNAT came back");
    assert.ok(natted.hostTx >= EXCHANGES, "the NAT'd flow went the host's way");

    // A connection that goes straight across, kept open while agents with a policy that denies it
    // take over: its next message goes the host's way, to b's own hook, which drops it.
    const held = spawnIn(lab.pod("app/a").netns, "held client", [NODE, "-e", CLIENT, B, "20", "hold"]);
    try {
      const lines = createInterface({ input: held.proc.stdout! })[Symbol.asyncIterator]();
      const next = async () => (await lines.next()).value as string | undefined;
      const send = async () => {
        held.proc.stdin!.write("\n");
        return next();
      };
      assert.equal(await next(), "echoed 20");
      assert.equal(await send(), "echoed", "the held connection works");
      await lab.stopAgents();
      await lab.startAgents([files.topology, files.deny]);
      assert.equal(
        await send(),
        "lost",
        "once the policy denies it, the held connection's message is dropped",
      );
    } finally {
      held.proc.kill("SIGKILL");
    }
  });
});

test("host routing kernel: the host forwards every packet between the node's pods", async (t) => {
  if (!requirePrivileged(t, agentMissing)) return;
  await withLab(["--host-routing", "kernel"], async (lab, files) => {
    const echo = await startEcho(lab);
    t.after(() => echo.proc.kill("SIGKILL"));
    await lab.startAgents([files.topology, files.allow]);
    const r = await exchange(lab, B);
    t.diagnostic(`kernel: ${r.echoed} echoed; b received ${r.podRx}, its host veth sent ${r.hostTx}`);
    assert.equal(r.echoed, EXCHANGES);
    assert.ok(r.hostTx >= r.podRx, `b's host veth sent all ${r.podRx} packets b received (${r.hostTx})`);
  });
});
