// The agent against a real kube-apiserver, enforcing on a network-namespace lab: kubectl apply and
// delete of policies change what real packets measure, an agent killed with -9 leaves enforcement as
// it was, and a restarted agent adopts the pinned state.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Server } from "node:net";
import { API_BRIDGE_SCRIPT, bridgeUnixToTcp } from "../../operator/src/lab/api-bridge.ts";
import {
  type Child,
  firstLine,
  NODE,
  NODE_FLAGS,
  SLUICE_MAIN,
  signalChild,
  spawnIn,
  tail,
} from "../../operator/src/lab/children.ts";
import { loadObjects } from "../../operator/src/lab/inputs.ts";
import { Lab } from "../../operator/src/lab/lab.ts";
import { type MatrixRow, sortRows } from "../../operator/src/lab/matrix.ts";
import { topologyFromObjects } from "../../operator/src/lab/topology.ts";
import { computeMatrix, inputsFromObjects } from "../../operator/src/policy/index.ts";
import { type ApiServer, kubectl, startApiServer } from "../support/apiserver.ts";
import { privilegeProblem } from "../support/privileged.ts";

const root = new URL("../..", import.meta.url).pathname;
const topologyFile = join(root, "samples/demo/topology.yaml");
const policyDir = join(root, "samples/demo/policies");

let api: ApiServer | undefined;
let lab: Lab | undefined;
let work: string;
const agents = new Map<string, Child>();
const bridges: Child[] = [];
let hostBridge: Server | undefined;
const skip = privilegeProblem();
if (skip && process.env.CI === "true") throw new Error(`agent-kube integration cannot run under CI: ${skip}`);

function expected(paths: string[]): MatrixRow[] {
  return sortRows(computeMatrix(inputsFromObjects(loadObjects(paths))));
}

async function k(args: string[], input?: string): Promise<string> {
  const r = await kubectl(args, api!.kubeconfigPath, { input });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

// The lab's pods as the API server needs them (an image), then their IPs through the status subresource.
async function registerTopology(): Promise<void> {
  const objects = loadObjects([topologyFile]) as Array<{
    kind: string;
    metadata: { name: string; namespace?: string };
    spec?: { containers?: Array<Record<string, unknown>> };
    status?: unknown;
  }>;
  const nodes = new Set<string>();
  for (const o of objects) {
    if (o.kind !== "Pod") continue;
    nodes.add((o.spec as { nodeName: string }).nodeName);
  }
  const docs = [
    ...[...nodes].map((n) => ({ apiVersion: "v1", kind: "Node", metadata: { name: n } })),
    ...objects.map((o) =>
      o.kind === "Pod"
        ? {
            ...o,
            status: undefined,
            spec: { ...o.spec, containers: o.spec?.containers?.map((c) => ({ image: "pause", ...c })) },
          }
        : o,
    ),
  ];
  await k(["apply", "-f", "-"], docs.map((d) => JSON.stringify(d)).join("\n---\n"));
  for (const o of objects)
    if (o.kind === "Pod")
      await k([
        "patch",
        "pod",
        o.metadata.name,
        "-n",
        o.metadata.namespace ?? "default",
        "--subresource=status",
        "--type=merge",
        "-p",
        JSON.stringify({ status: { ...(o.status as object), phase: "Running" } }),
      ]);
}

async function startAgent(node: string): Promise<void> {
  const netns = lab!.plan.nodes.find((n) => n.name === node)!.netns;
  const ready = join(work, `ready-${node}-${Date.now()}`);
  const bpffs = lab!.nodeBpffsRoot(node);
  mkdirSync(bpffs, { recursive: true });
  const child = spawnIn(netns, `kube agent ${node}`, [
    NODE,
    ...NODE_FLAGS,
    SLUICE_MAIN,
    "agent",
    "--node",
    node,
    "--bpffs-root",
    bpffs,
    "--kubeconfig",
    api!.kubeconfigPath,
    "--ready-file",
    ready,
  ]);
  child.proc.stdout?.resume();
  agents.set(node, child);
  const t0 = Date.now();
  while (!existsSync(ready)) {
    if (child.proc.exitCode !== null || child.proc.signalCode !== null)
      throw new Error(`agent ${node} exited${tail(child)}`);
    if (Date.now() - t0 > 60_000) throw new Error(`agent ${node} not ready${tail(child)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stopAgent(node: string, signal: NodeJS.Signals): Promise<void> {
  const c = agents.get(node);
  if (!c) return;
  signalChild(c, signal);
  await c.exited;
  agents.delete(node);
}

// Probes until the lab measures what the compiler says (the agents apply asynchronously).
async function probeUntil(want: MatrixRow[], timeoutMs = 30_000): Promise<MatrixRow[]> {
  const t0 = Date.now();
  for (;;) {
    const got = sortRows((await lab!.probe()).results);
    if (JSON.stringify(got) === JSON.stringify(want) || Date.now() - t0 > timeoutMs) return got;
    await new Promise((r) => setTimeout(r, 200));
  }
}

before(async () => {
  if (skip) return;
  work = mkdtempSync(join(tmpdir(), "sluice-agent-kube-"));
  api = await startApiServer();
  await k(["apply", "-f", join(root, "crds")]);
  await k(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
  lab = await Lab.create(topologyFromObjects(loadObjects([topologyFile])));
  await registerTopology();
  // The agents run in the nodes' namespaces; the API server listens on the host's loopback.
  const url = new URL(api.server);
  const sock = join(work, "api.sock");
  hostBridge = await bridgeUnixToTcp(sock, url.hostname, Number(url.port));
  for (const n of lab.plan.nodes) {
    const b = spawnIn(n.netns, `api bridge ${n.name}`, [
      NODE,
      ...NODE_FLAGS,
      API_BRIDGE_SCRIPT,
      `${url.hostname}:${url.port}`,
      sock,
    ]);
    bridges.push(b);
    await firstLine(b, 10_000);
  }
  for (const n of lab.plan.nodes) await startAgent(n.name);
});

after(async () => {
  for (const n of [...agents.keys()]) await stopAgent(n, "SIGTERM").catch(() => {});
  for (const b of bridges) signalChild(b, "SIGTERM");
  hostBridge?.close();
  await lab?.destroy();
  await api?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test("no policy: everything allowed, as the compiler says", { skip }, async () => {
  const want = expected([topologyFile]);
  assert.ok(want.every((r) => r.verdict === "allow"));
  assert.deepEqual(await probeUntil(want), want);
});

test("kubectl apply of the sample policies changes what probes measure; delete restores", {
  skip,
}, async () => {
  await k(["apply", "-f", policyDir]);
  const want = expected([topologyFile, policyDir]);
  assert.ok(
    want.some((r) => r.verdict === "deny"),
    "the samples deny something",
  );
  assert.deepEqual(await probeUntil(want), want);

  await k(["delete", "-f", join(policyDir, "01-shop-default-deny.yaml")]);
  const tmp = join(work, "after-delete");
  mkdirSync(tmp);
  for (const f of [
    "02-frontend.yaml",
    "03-backend.yaml",
    "04-db.yaml",
    "05-admin-monitoring.yaml",
    "06-baseline.yaml",
  ])
    writeFileSync(
      join(tmp, f),
      loadObjects([join(policyDir, f)])
        .map((o) => JSON.stringify(o))
        .join("\n---\n"),
    );
  const want2 = expected([topologyFile, tmp]);
  assert.deepEqual(await probeUntil(want2), want2);
  await k(["apply", "-f", join(policyDir, "01-shop-default-deny.yaml")]);
  assert.deepEqual(await probeUntil(want), want);
});

test("agent kill -9: verdicts unchanged; a restarted agent adopts the pinned state", { skip }, async () => {
  const want = expected([topologyFile, policyDir]);
  for (const n of [...agents.keys()]) await stopAgent(n, "SIGKILL");
  assert.deepEqual(sortRows((await lab!.probe()).results), want, "enforcement continues with no agent");
  for (const n of lab!.plan.nodes) await startAgent(n.name);
  assert.deepEqual(sortRows((await lab!.probe()).results), want, "restart changes nothing");
});

test("API server stopped: the agents keep enforcing the last good state", { skip }, async () => {
  const want = expected([topologyFile, policyDir]);
  await api!.stop();
  await new Promise((r) => setTimeout(r, 1000));
  assert.deepEqual(sortRows((await lab!.probe()).results), want);
  for (const [n, c] of agents)
    assert.equal(c.proc.exitCode, null, `agent ${n} must survive the API server going away`);
});
