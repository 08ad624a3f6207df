// The agent against a real kube-apiserver, enforcing on a network-namespace lab: kubectl apply and
// delete of policies change what real packets measure, an agent killed with -9 leaves enforcement as
// it was, and a restarted agent adopts the pinned state.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { loadObjects } from "../../operator/src/lab/inputs.ts";
import { Lab } from "../../operator/src/lab/lab.ts";
import { type MatrixRow, sortRows } from "../../operator/src/lab/matrix.ts";
import { topologyFromObjects } from "../../operator/src/lab/topology.ts";
import { computeMatrix, inputsFromObjects } from "../../operator/src/policy/index.ts";
import { type ApiServer, startApiServer } from "../support/apiserver.ts";
import { applyCrds, kubectlOk, registerLabCluster } from "../support/cluster-fixtures.ts";
import { privilegeProblem } from "../support/privileged.ts";

const root = new URL("../..", import.meta.url).pathname;
const topologyFile = join(root, "samples/demo/topology.yaml");
const policyDir = join(root, "samples/demo/policies");

let api: ApiServer | undefined;
let lab: Lab | undefined;
let work: string;
const skip = privilegeProblem();
if (skip && process.env.CI === "true") throw new Error(`agent-kube integration cannot run under CI: ${skip}`);

function expected(paths: string[]): MatrixRow[] {
  return sortRows(computeMatrix(inputsFromObjects(loadObjects(paths))));
}

const k = (args: string[]) => kubectlOk(args, api!.kubeconfigPath);

async function startAgents(): Promise<void> {
  for (const n of lab!.plan.nodes) await lab!.startKubeAgent(n.name, api!.kubeconfigPath);
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
  await applyCrds(api.kubeconfigPath);
  const topology = loadObjects([topologyFile]);
  lab = await Lab.create(topologyFromObjects(topology));
  await registerLabCluster(api.kubeconfigPath, topology);
  // The agents run in the nodes' namespaces; the API server listens on the host's loopback.
  await lab.connectApiServer(api.server);
  await startAgents();
});

after(async () => {
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
  await lab!.stopAgents("SIGKILL");
  assert.deepEqual(sortRows((await lab!.probe()).results), want, "enforcement continues with no agent");
  await startAgents();
  assert.deepEqual(sortRows((await lab!.probe()).results), want, "restart changes nothing");
});

test("API server stopped: the agents keep enforcing the last good state", { skip }, async () => {
  const want = expected([topologyFile, policyDir]);
  await api!.stop();
  await new Promise((r) => setTimeout(r, 1000));
  assert.deepEqual(sortRows((await lab!.probe()).results), want);
  assert.deepEqual(
    lab!.runningAgents(),
    lab!.plan.nodes.map((n) => n.name),
    "every agent survives the API server going away",
  );
});
