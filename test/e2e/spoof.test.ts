// Issue 14 §3 with real packets in the lab: the demo's policies let only `backend` reach `db` on
// 5432/TCP. An attacker adds backend's address to its own interface and sends to db from it: TCP, UDP
// and ICMP, from `frontend` on the other node and from a pod with frontend's labels on db's node. With
// no agent running (the control) the packets reach db, which shows the measurement can see them. Once
// the agents enforce, nothing reaches db, whatever the policy would say of backend, and normal flows
// still work. What reaches db is read from its interface's receive counter.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { Lab } from "../../operator/src/lab/lab.ts";
import { NODE } from "../../operator/src/lab/children.ts";
import { topologyFromObjects } from "../../operator/src/lab/topology.ts";
import { loadObjects } from "../../operator/src/manifests/load.ts";
import { requirePrivileged } from "../support/privileged.ts";
import { agentMissing, ROOT, verdictOf } from "./lab-support.ts";

const DEMO = `${ROOT}samples/demo/`;
const POLICIES = [
  "01-shop-default-deny",
  "02-frontend",
  "03-backend",
  "04-db",
  "05-admin-monitoring",
  "06-baseline",
].map((p) => `${DEMO}policies/${p}.yaml`);
// A second pod with frontend's labels, on db's and backend's node.
const INTRUDER = `apiVersion: v1
kind: Pod
metadata: { name: intruder, namespace: shop, labels: { app: frontend } }
spec:
  nodeName: node-b
  containers: [{ name: web, image: registry.k8s.io/pause:3.10, ports: [{ name: http, containerPort: 80 }] }]
status: { podIP: 10.244.2.30, podIPs: [{ ip: 10.244.2.30 }] }
`;
const BACKEND = "10.244.2.10";
const DB = "10.244.2.11";
const UDP_DATAGRAMS = 20;
const ICMP_ECHOS = 5;

// Sends from the borrowed address inside the attacker's namespace: UDP datagrams and a TCP connect to
// db:5432 (node), ICMP echo requests (python3: node has no raw sockets).
const SEND_UDP_TCP = `
const dgram = require("node:dgram");
const net = require("node:net");
const [from, to, n] = process.argv.slice(1);
const s = dgram.createSocket("udp4");
s.bind({ address: from }, async () => {
  for (let i = 0; i < Number(n); i++) await new Promise((r) => s.send("spoof", 5432, to, r));
  s.close();
  const c = net.connect({ host: to, port: 5432, localAddress: from });
  c.on("error", () => {});
  setTimeout(() => { c.destroy(); process.exit(0); }, 1500);
});
`;
const SEND_ICMP = `
import socket, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.bind((src, 0))
for seq in range(n):
    h = bytearray([8, 0, 0, 0, 0x12, 0x34, 0, seq])
    c = sum((h[i] << 8) | h[i + 1] for i in range(0, 8, 2))
    c = (c & 0xffff) + (c >> 16)
    c = ~c & 0xffff
    h[2], h[3] = c >> 8, c & 0xff
    s.sendto(bytes(h), (dst, 0))
`;

test("a pod cannot borrow another pod's address: demo policies, across nodes and on one node", async (t) => {
  if (!requirePrivileged(t, agentMissing)) return;
  const dir = mkdtempSync(join(tmpdir(), "sluice-spoof-"));
  const intruderFile = join(dir, "intruder.yaml");
  writeFileSync(intruderFile, INTRUDER);
  const topologyFiles = [`${DEMO}topology.yaml`, intruderFile];
  const lab = await Lab.create(topologyFromObjects(loadObjects(topologyFiles)));
  try {
    const db = lab.pod("shop/db");
    const received = async (): Promise<number> => {
      const out = await lab.exec(db.netns, "db rx", ["ip", "-j", "-s", "link", "show", "eth0"]);
      return (JSON.parse(out) as { stats64: { rx: { packets: number } } }[])[0].stats64.rx.packets;
    };
    // The attack from one pod: backend's address on its eth0, packets to db from it, the address removed.
    const attack = async (key: string): Promise<number> => {
      const p = lab.pod(key);
      await lab.exec(p.netns, "borrow", ["ip", "addr", "add", `${BACKEND}/32`, "dev", "eth0"]);
      try {
        const before = await received();
        await lab.exec(p.netns, "spoof udp tcp", [
          NODE,
          "-e",
          SEND_UDP_TCP,
          BACKEND,
          DB,
          String(UDP_DATAGRAMS),
        ]);
        await lab.exec(p.netns, "spoof icmp", ["python3", "-c", SEND_ICMP, BACKEND, DB, String(ICMP_ECHOS)]);
        await new Promise((r) => setTimeout(r, 200));
        return (await received()) - before;
      } finally {
        await lab.exec(p.netns, "return", ["ip", "addr", "del", `${BACKEND}/32`, "dev", "eth0"]);
      }
    };

    // Control: nothing enforces yet, so the borrowed address reaches db.
    const unenforced = await attack("shop/frontend");
    t.diagnostic(`no agent: db received ${unenforced} packets from the borrowed address`);
    assert.ok(unenforced >= UDP_DATAGRAMS + ICMP_ECHOS, `the control reached db (${unenforced} packets)`);

    await lab.startAgents([...topologyFiles, ...POLICIES]);
    const acrossNodes = await attack("shop/frontend");
    const sameNode = await attack("shop/intruder");
    t.diagnostic(`enforced: db received ${acrossNodes} (across nodes) and ${sameNode} (same node) packets`);
    assert.equal(acrossNodes, 0, "frontend (node-a) as backend: nothing reaches db");
    assert.equal(sameNode, 0, "intruder (node-b) as backend: nothing reaches db");

    // Normal flows go on.
    const rows = (await lab.probe({ from: ["shop/frontend", "shop/backend", "shop/intruder"] })).results;
    assert.equal(verdictOf(rows, "shop/frontend", "shop/backend", 8080, "TCP"), "allow");
    assert.equal(verdictOf(rows, "shop/backend", "shop/db", 5432, "TCP"), "allow");
    assert.equal(verdictOf(rows, "shop/frontend", "shop/db", 5432, "TCP"), "deny");
    assert.equal(verdictOf(rows, "shop/intruder", "shop/backend", 8080, "TCP"), "allow");
  } finally {
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});
