// Kubelet probes under default deny (issue 9 §4), with real BPF on real veths: in the demo (samples/demo)
// with its policies, shop's `default-deny-ingress` isolates db. A TCP connection from db's node's own
// network namespace (what a kubelet probe is) gets through with the agents' default
// `--allow-localhost always` and is dropped with `--allow-localhost policy`; the other node and the
// pods the policies do not allow stay denied either way. Static agents (no Node objects at all) and
// Kubernetes-mode agents (the lab registers Nodes without addresses) both find the node's address on
// its own interfaces.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { loadObjects } from "../../operator/src/manifests/load.ts";
import { Lab } from "../../operator/src/lab/lab.ts";
import { topologyFromObjects } from "../../operator/src/lab/topology.ts";
import { requirePrivileged } from "../support/privileged.ts";
import {
  DEMO_POLICIES,
  DEMO_TOPOLOGY,
  expectedMatrix,
  type KubeLab,
  startKubeLab,
} from "../support/kube-lab.ts";
import { agentMissing, ROOT, verdictOf } from "./lab-support.ts";

const DEMO = join(ROOT, "samples/demo");
const FILES = [join(DEMO, "topology.yaml"), join(DEMO, "policies")];
const DB = "shop/db"; // on node-b, 5432/TCP; only shop/backend may connect
const PG = { port: 5432, protocol: "TCP" } as const;

// The node probes (its own namespace, its own addresses) and the pods' probes of db.
async function probeDb(l: Lab) {
  const ownNode = await l.probeFromNode("node-b", { to: [DB], ports: [PG] });
  const otherNode = await l.probeFromNode("node-a", { to: [DB], ports: [PG] });
  const pods = await l.probe({ ports: [PG] });
  return {
    ownNode: verdictOf(ownNode.results, "node:node-b", DB, PG.port, PG.protocol),
    otherNode: verdictOf(otherNode.results, "node:node-a", DB, PG.port, PG.protocol),
    pod: (from: string) => verdictOf(pods.results, from, DB, PG.port, PG.protocol),
  };
}

describe("allow-localhost in the lab, static agents (the demo's default deny)", () => {
  let lab: Lab | undefined;
  before(async () => {
    if (process.getuid?.() !== 0 || agentMissing()) return;
    lab = await Lab.create(topologyFromObjects(loadObjects([join(DEMO, "topology.yaml")])));
  });
  after(async () => {
    await lab?.destroy();
  });

  test("always (the agents' default): db's node connects to db; nobody else the policies deny does", async (t) => {
    if (!requirePrivileged(t, agentMissing)) return;
    const l = lab!;
    await l.startAgents(FILES);
    try {
      const v = await probeDb(l);
      assert.equal(v.ownNode, "allow", "node-b -> db under default deny, --allow-localhost always");
      assert.equal(v.otherNode, "deny", "node-a is not db's node: still denied");
      assert.equal(v.pod("shop/backend"), "allow", "the policy's allow still works");
      assert.equal(v.pod("shop/frontend"), "deny");
      assert.equal(v.pod("monitoring/prometheus"), "deny");
      // The node reaches the other isolated pod of its own too, on a port no policy opens.
      const web = await l.probeFromNode("node-b", {
        to: ["shop/backend"],
        ports: [{ port: 5000, protocol: "UDP" }],
      });
      assert.equal(verdictOf(web.results, "node:node-b", "shop/backend", 5000, "UDP"), "allow");
    } finally {
      await l.stopAgents();
    }
  });

  test("policy: restarted agents drop db's node like any other peer", async (t) => {
    if (!requirePrivileged(t, agentMissing)) return;
    const l = lab!;
    l.allowLocalhost = "policy";
    await l.startAgents(FILES);
    try {
      const v = await probeDb(l);
      assert.equal(v.ownNode, "deny", "node-b -> db under default deny, --allow-localhost policy");
      assert.equal(v.otherNode, "deny");
      assert.equal(v.pod("shop/backend"), "allow");
      assert.equal(v.pod("shop/frontend"), "deny");
      assert.equal(v.pod("monitoring/prometheus"), "deny");
    } finally {
      await l.stopAgents();
      l.allowLocalhost = undefined;
    }
  });
});

describe("allow-localhost in the lab, Kubernetes-mode agents (the demo's default deny)", () => {
  let kl: KubeLab | undefined;
  before(async () => {
    if (process.getuid?.() !== 0 || agentMissing()) return;
    kl = await startKubeLab(DEMO_TOPOLOGY);
  });
  after(async () => {
    await kl?.destroy();
  });

  // The agents apply asynchronously: probe until node-b's verdict on db is `want`.
  async function ownNodeUntil(l: Lab, want: string, timeoutMs = 30_000): Promise<string> {
    const t0 = Date.now();
    for (;;) {
      const r = await l.probeFromNode("node-b", { to: [DB], ports: [PG], tcpTimeoutMs: 500 });
      const got = verdictOf(r.results, "node:node-b", DB, PG.port, PG.protocol);
      if (got === want || Date.now() - t0 > timeoutMs) return got;
      await new Promise((res) => setTimeout(res, 200));
    }
  }

  test("kubectl apply of the demo policies: db's node gets in with always, not with policy", async (t) => {
    if (!requirePrivileged(t, agentMissing)) return;
    const k = kl!;
    await k.startAgents();
    await k.kubectl(["apply", "-f", DEMO_POLICIES]);
    const want = expectedMatrix(loadObjects([DEMO_TOPOLOGY, DEMO_POLICIES]));
    assert.deepEqual(await k.probeUntil(want), want, "the pods' verdicts are the compiler's");
    assert.equal(await ownNodeUntil(k.lab, "allow"), "allow", "node-b -> db, --allow-localhost always");
    let v = await probeDb(k.lab);
    assert.equal(v.otherNode, "deny");
    assert.equal(v.pod("shop/frontend"), "deny");

    await k.lab.stopAgents();
    k.lab.allowLocalhost = "policy";
    await k.startAgents();
    assert.equal(await ownNodeUntil(k.lab, "deny"), "deny", "node-b -> db, --allow-localhost policy");
    v = await probeDb(k.lab);
    assert.equal(v.otherNode, "deny");
    assert.equal(v.pod("shop/backend"), "allow");
    assert.equal(v.pod("shop/frontend"), "deny");
    await k.lab.stopAgents();
  });
});
