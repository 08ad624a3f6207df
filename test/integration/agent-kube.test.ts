// The agent against a real kube-apiserver, enforcing on a network-namespace lab: kubectl apply and
// delete of policies change what real packets measure, an agent killed with -9 leaves enforcement as
// it was, a restarted agent adopts the pinned state, and (with the operator allocating identities)
// relabelling a pod moves it to a new identity and the verdicts follow it.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { labelSetKey, securityLabels } from "../../operator/src/identity/labels.ts";
import { loadKubeConfig, makeClients } from "../../operator/src/kube/client.ts";
import { loadObjects } from "../../operator/src/manifests/load.ts";
import type { Lab } from "../../operator/src/lab/lab.ts";
import { type MatrixRow, sortRows } from "../../operator/src/api/matrix-rows.ts";
import { inputsFromObjects } from "../../operator/src/policy/index.ts";
import type { ApiServer } from "../support/apiserver.ts";
import {
  DEMO_POLICIES,
  DEMO_TOPOLOGY,
  expectedMatrix,
  type KubeLab,
  startKubeLab,
} from "../support/kube-lab.ts";
import { privilegeProblem } from "../support/privileged.ts";
import { listIdentities, startTestOperator, waitFor } from "./operator-helpers.ts";

const topologyFile = DEMO_TOPOLOGY;
const policyDir = DEMO_POLICIES;

let kl: KubeLab | undefined;
let api: ApiServer | undefined;
let lab: Lab | undefined;
let work: string;
const skip = privilegeProblem();
if (skip && process.env.CI === "true") throw new Error(`agent-kube integration cannot run under CI: ${skip}`);

function expected(paths: string[]): MatrixRow[] {
  return expectedFor(loadObjects(paths));
}

const expectedFor = expectedMatrix;
const k = (args: string[], input?: string) => kl!.kubectl(args, input);
const startAgents = () => kl!.startAgents();
const probeUntil = (want: MatrixRow[]) => kl!.probeUntil(want);

before(async () => {
  if (skip) return;
  work = mkdtempSync(join(tmpdir(), "sluice-agent-kube-"));
  kl = await startKubeLab();
  ({ api, lab } = kl);
  await startAgents();
});

after(async () => {
  await kl?.destroy();
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

interface LabPod {
  kind: string;
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
}

// The topology as the API server holds it after `kubectl label pod <name> <changes> --overwrite`.
function relabelled(name: string, labels: Record<string, string | null>): unknown[] {
  return loadObjects([topologyFile]).map((o) => {
    const pod = o as LabPod;
    if (pod.kind !== "Pod" || pod.metadata.name !== name) return o;
    const next = { ...pod.metadata.labels };
    for (const [key, v] of Object.entries(labels)) {
      if (v === null) delete next[key];
      else next[key] = v;
    }
    return { ...pod, metadata: { ...pod.metadata, labels: next } };
  });
}

const verdict = (rows: MatrixRow[], from: string, to: string, port: number) =>
  rows.find((r) => r.from === from && r.to === to && r.port === port)?.verdict;

test("kubectl label pod: a new SecurityIdentity, verdicts follow the relabelled pod; relabel back restores", {
  skip,
}, async (t) => {
  // This test's own starting point: an agent on every node and the sample policies (both as an
  // earlier test may have left them).
  for (const n of lab!.plan.nodes)
    if (!lab!.runningAgents().includes(n.name)) await lab!.startKubeAgent(n.name, api!.kubeconfigPath);
  await k(["apply", "-f", policyDir]);
  const clients = makeClients(loadKubeConfig(api!.kubeconfigPath));
  const opLog: string[] = [];
  // Identities come from the operator here, as in a cluster (without it the agents allocate statically
  // from the same labels, which would hide a missing identity).
  const op = await startTestOperator(clients, "agent-kube-relabel", {
    statusDebounceMs: 50,
    log: (m) => opLog.push(m),
  });
  const relabel = (changes: string[]) =>
    k(["label", "pod", "frontend", "-n", "shop", ...changes, "--overwrite"]);
  try {
    const base = expected([topologyFile, policyDir]);
    assert.deepEqual(await probeUntil(base), base, "before relabelling, with the operator's identities");

    // frontend becomes a backend canary: frontend-public no longer selects it, backend does, and the
    // db policy now lets it in; nothing is app=frontend any more, so the backend's ingress closes.
    const change = { app: "backend", track: "canary" };
    await relabel(["app=backend", "track=canary"]);
    const objects = relabelled("frontend", change);
    const shop = objects.find(
      (o) => (o as LabPod).kind === "Namespace" && (o as LabPod).metadata.name === "shop",
    );
    const pod = objects.find(
      (o) => (o as LabPod).kind === "Pod" && (o as LabPod).metadata.name === "frontend",
    );
    const key = labelSetKey(securityLabels(pod as LabPod, shop as LabPod));
    const id = await waitFor(`a SecurityIdentity for ${key}`, async () =>
      (await listIdentities(clients)).find((i) => labelSetKey(i.spec.labels) === key),
    );
    t.diagnostic(`relabelled frontend: identity ${id.metadata.name}`);
    const want = expectedFor([...objects, ...loadObjects([policyDir])]);
    assert.equal(verdict(base, "shop/frontend", "shop/db", 5432), "deny");
    assert.equal(verdict(want, "shop/frontend", "shop/db", 5432), "allow");
    assert.equal(verdict(base, "shop/db", "shop/frontend", 80), "allow");
    assert.equal(verdict(want, "shop/db", "shop/frontend", 80), "deny");
    assert.equal(verdict(want, "shop/frontend", "shop/backend", 8080), "deny");
    assert.deepEqual(await probeUntil(want), want, "after kubectl label");

    await relabel(["app=frontend", "track-"]);
    assert.deepEqual(await probeUntil(base), base, "after relabelling back");
  } catch (err) {
    t.diagnostic(`agents running on: ${lab!.runningAgents().join(", ")}; operator log:\n${opLog.join("\n")}`);
    throw err;
  } finally {
    // Leave the pod as the topology has it for whatever runs next.
    await k(["label", "pod", "frontend", "-n", "shop", "app=frontend", "track-", "--overwrite"]).catch(
      () => {},
    );
    await op.stop();
  }
});

test("identities appear, then all are deleted (no operator): agents switch numbering both ways, verdicts stay", {
  skip,
}, async () => {
  for (const n of lab!.plan.nodes)
    if (!lab!.runningAgents().includes(n.name)) await lab!.startKubeAgent(n.name, api!.kubeconfigPath);
  await k(["apply", "-f", policyDir]);
  const want = expected([topologyFile, policyDir]);
  // Identities the agents did not derive themselves (numbered as an operator might) take over...
  const numbered = inputsFromObjects(loadObjects([topologyFile])).identities.map((i, n) => ({
    apiVersion: "sluice.dev/v1alpha1",
    kind: "SecurityIdentity",
    metadata: { name: String(5000 + n) },
    spec: { labels: i.labels },
  }));
  await k(["apply", "-f", "-"], numbered.map((o) => JSON.stringify(o)).join("\n---\n"));
  assert.deepEqual(await probeUntil(want), want, "with identities from the API server");
  // ...and when every one is gone the agents derive identities from the pods again.
  await k(["delete", "securityidentities", "--all", "--wait=true"]);
  assert.deepEqual(await probeUntil(want), want, "with identities derived by the agents");
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
