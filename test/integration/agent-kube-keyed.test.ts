// The Kubernetes agent's keyed reconcile against a real kube-apiserver on the demo lab: a policy edit
// that selects one endpoint rewrites that endpoint's policy and nothing else on any node, a change
// the compiler does not read (an annotation) writes nothing, and re-applying the original restores
// exactly the entries the endpoint had.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { loadAddon } from "../../operator/src/datapath/kernel/bpf-addon.ts";
import { type DatapathMaps, openPinnedMaps } from "../../operator/src/datapath/kernel/maps.ts";
import { type AppliedView, readApplied, viewApplied } from "../../operator/src/datapath/writer/sync.ts";
import { loadObjects } from "../../operator/src/manifests/load.ts";
import type { Lab } from "../../operator/src/lab/lab.ts";
import {
  DEMO_POLICIES,
  DEMO_TOPOLOGY,
  expectedMatrix,
  type KubeLab,
  startKubeLab,
} from "../support/kube-lab.ts";
import { privilegeProblem } from "../support/privileged.ts";

let kl: KubeLab | undefined;
let _lab: Lab | undefined;
const maps = new Map<string, DatapathMaps>();
const skip = privilegeProblem();
if (skip && process.env.CI === "true")
  throw new Error(`agent-kube-keyed integration cannot run under CI: ${skip}`);

const k = (args: string[], input?: string) => kl!.kubectl(args, input);

function dbPolicy(port: number) {
  return {
    apiVersion: "sluice.dev/v1alpha1",
    kind: "SecurityPolicy",
    metadata: { name: "db", namespace: "shop" },
    spec: {
      endpointSelector: { matchLabels: { app: "db" } },
      ingress: [
        {
          endpoints: [{ endpointSelector: { matchLabels: { app: "backend" } } }],
          ports: [{ port, protocol: "TCP" }],
        },
      ],
    },
  };
}

function views(): Map<string, AppliedView> {
  return new Map([...maps].map(([node, m]) => [node, viewApplied(readApplied(m))]));
}

// Endpoints ("node/ifindex") whose map state differs between two snapshots, and whether any ipcache did.
function changes(a: Map<string, AppliedView>, b: Map<string, AppliedView>) {
  const out: string[] = [];
  let ipcache = false;
  for (const [node, va] of a) {
    const vb = b.get(node)!;
    if (JSON.stringify(va.ipcache) !== JSON.stringify(vb.ipcache)) ipcache = true;
    const byIf = new Map(vb.endpoints.map((e) => [e.ifindex, e]));
    for (const e of va.endpoints)
      if (JSON.stringify(e) !== JSON.stringify(byIf.get(e.ifindex))) out.push(`${node}/${e.ifindex}`);
    for (const e of vb.endpoints)
      if (!va.endpoints.some((x) => x.ifindex === e.ifindex)) out.push(`${node}/${e.ifindex}`);
  }
  return { endpoints: out.sort(), ipcache };
}

const hasIngressPort = (v: AppliedView, port: number) =>
  v.endpoints.filter((e) =>
    e.entries.some((x) => x.direction === "ingress" && x.protocol === 6 && x.port === port),
  );

async function until<T>(what: string, f: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// Maps that hold still for a while: the agents have caught up with everything written so far.
async function settled(): Promise<Map<string, AppliedView>> {
  let last = JSON.stringify([...views()]);
  for (let stable = 0; stable < 10; ) {
    await new Promise((r) => setTimeout(r, 100));
    const now = JSON.stringify([...views()]);
    stable = now === last ? stable + 1 : 0;
    last = now;
  }
  return views();
}

before(async () => {
  if (skip) return;
  kl = await startKubeLab();
  const l = kl.lab;
  _lab = l;
  await kl.startAgents();
  for (const n of l.plan.nodes) maps.set(n.name, openPinnedMaps(loadAddon(), l.nodeBpffsRoot(n.name)));
  await k(["apply", "-f", DEMO_POLICIES]);
  const want = expectedMatrix(loadObjects([DEMO_TOPOLOGY, DEMO_POLICIES]));
  assert.deepEqual(await kl.probeUntil(want), want, "the sample policies are enforced");
});

after(async () => {
  for (const m of maps.values()) m.close();
  await kl?.destroy();
});

test("a policy edit selecting one endpoint rewrites that endpoint only, on every node", {
  skip,
}, async () => {
  const before = await settled();
  const dbBefore = [...before.values()].flatMap((v) => hasIngressPort(v, 5432));
  assert.equal(dbBefore.length, 1, "one endpoint (shop/db) admits 5432");

  await k(["apply", "-f", "-"], JSON.stringify(dbPolicy(5433)));
  await until("port 5433 enforced", () =>
    [...views().values()].some((v) => hasIngressPort(v, 5433).length > 0) ? true : undefined,
  );
  const edited = await settled();
  const c = changes(before, edited);
  assert.equal(c.endpoints.length, 1, `only the db endpoint changes: ${c.endpoints.join(", ")}`);
  assert.equal(c.ipcache, false, "no ipcache change");
  const db = [...edited.values()].flatMap((v) => hasIngressPort(v, 5433));
  assert.equal(db.length, 1);
  assert.equal(db[0].ifindex, dbBefore[0].ifindex);
  assert.equal(db[0].policyRev, dbBefore[0].policyRev + 1, "one atomic switch");
  assert.ok(db[0].inactiveMatches, "both generations hold the new policy");
  assert.equal(
    hasIngressPort([...edited.values()].find((v) => v.endpoints.includes(db[0]))!, 5432).length,
    0,
  );

  // Metadata the compiler does not read: nothing is written anywhere.
  await k(["annotate", "securitypolicy", "-n", "shop", "db", "example.com/note=x", "--overwrite"]);
  const annotated = await settled();
  assert.deepEqual(changes(edited, annotated), { endpoints: [], ipcache: false });

  // Back to the original: exactly the entries the endpoint had, again one switch of one endpoint.
  await k(["apply", "-f", "-"], JSON.stringify(dbPolicy(5432)));
  await until("port 5432 enforced again", () =>
    [...views().values()].some((v) => hasIngressPort(v, 5432).length > 0) ? true : undefined,
  );
  const restored = await settled();
  assert.equal(changes(annotated, restored).endpoints.length, 1);
  const dbAfter = [...restored.values()].flatMap((v) => hasIngressPort(v, 5432));
  assert.deepEqual(dbAfter[0].entries, dbBefore[0].entries);
  assert.equal(dbAfter[0].policyRev, dbBefore[0].policyRev + 2);
});
