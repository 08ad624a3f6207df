// Node peers on real traffic (issue 12): the lab's Kubernetes-mode agents against a real API server,
// with labelled Node objects (their InternalIP is each lab node's address) and host-network pods that
// run in their node's network namespace. A ClusterSecurityPolicy node peer and a ClusterNetworkPolicy
// egress node peer that pick one node and not another are enforced per node, with real packets from
// and to the host-network pods, equal to what the compiler (`sluice matrix`) says; a node relabelled
// with kubectl moves the decision without a restart.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { MatrixRow } from "../../operator/src/api/matrix-rows.ts";
import { loadObjects } from "../../operator/src/manifests/load.ts";
import { waitCrdsEstablished } from "../../operator/src/lab/cluster-setup.ts";
import { repoRoot } from "../support/apiserver.ts";
import { expectedMatrix, type KubeLab, startKubeLab } from "../support/kube-lab.ts";
import { privilegeProblem } from "../support/privileged.ts";

const skip = privilegeProblem();
if (skip && process.env.CI === "true")
  throw new Error(`upstream-node-peers integration cannot run under CI: ${skip}`);

const SAMPLE = join(repoRoot, "samples/node-peers");
const TOPOLOGY = join(SAMPLE, "topology.yaml");
const CSP = join(SAMPLE, "policies/db-from-infra-nodes.yaml");
const CNP = join(SAMPLE, "policies/db-scraped-on-infra-only.yaml");
// Discovery of the upstream CRDs, installed after the agents start, takes up to ~19 s.
const NOTICE_MS = 60_000;

let kl: KubeLab | undefined;
const k = (args: string[], input?: string) => kl!.kubectl(args, input);

type Labels = Record<string, Record<string, string>>;
// The topology as the API server holds it, with node labels replaced where given.
function topology(nodeLabels: Labels = {}): unknown[] {
  return loadObjects([TOPOLOGY]).map((o) => {
    const n = o as { kind?: string; metadata?: { name?: string; labels?: Record<string, string> } };
    const labels = n.kind === "Node" ? nodeLabels[n.metadata?.name ?? ""] : undefined;
    return labels ? { ...n, metadata: { ...n.metadata, labels } } : o;
  });
}
const expected = (files: string[], nodeLabels?: Labels) =>
  expectedMatrix([...topology(nodeLabels), ...loadObjects(files)]);
const verdict = (rows: MatrixRow[], from: string, to: string) =>
  rows.find((r) => r.from === from && r.to === to)?.verdict;

before(async () => {
  if (skip) return;
  kl = await startKubeLab(TOPOLOGY);
  await k(["apply", "--server-side", "-f", join(repoRoot, "crds/upstream/")]);
  await waitCrdsEstablished(kl.api.kubeconfigPath, ["--all"]);
  await kl.startAgents();
});

after(async () => {
  await kl?.destroy();
});

test("host-network pods probe and are probed as their node's address; no policy: all open", {
  skip,
}, async () => {
  const want = expected([]);
  assert.ok(want.some((r) => r.from === "monitoring/exporter-c" && r.to === "shop/db"));
  assert.ok(want.some((r) => r.from === "shop/db" && r.to === "monitoring/exporter-a"));
  assert.ok(want.every((r) => r.verdict === "allow"));
  assert.deepEqual(await kl!.probeUntil(want), want);
});

test("a ClusterSecurityPolicy node peer: the infra node's host-network pod gets in, the other node's not", {
  skip,
}, async () => {
  await k(["apply", "-f", CSP]);
  const want = expected([CSP]);
  assert.equal(verdict(want, "monitoring/exporter-a", "shop/db"), "allow");
  assert.equal(verdict(want, "monitoring/exporter-c", "shop/db"), "deny");
  assert.deepEqual(await kl!.probeUntil(want), want);
});

test("a ClusterNetworkPolicy egress node peer: to the infra node's exporter only", { skip }, async () => {
  await k(["apply", "-f", CNP]);
  const want = expected([CSP, CNP]);
  assert.equal(verdict(want, "shop/db", "monitoring/exporter-a"), "allow");
  assert.equal(verdict(want, "shop/db", "monitoring/exporter-c"), "deny");
  // Other pods are not subjects: the frontend reaches both exporters.
  assert.equal(verdict(want, "shop/frontend", "monitoring/exporter-c"), "allow");
  assert.deepEqual(await kl!.probeUntil(want, NOTICE_MS), want);
});

test("node-c relabelled infra with kubectl: both node peers now pick it", { skip }, async () => {
  await k(["label", "node", "node-c", "node-role=infra", "--overwrite"]);
  const want = expected([CSP, CNP], { "node-c": { "node-role": "infra" } });
  assert.equal(verdict(want, "monitoring/exporter-c", "shop/db"), "allow");
  assert.equal(verdict(want, "shop/db", "monitoring/exporter-c"), "allow");
  assert.deepEqual(await kl!.probeUntil(want), want);
  await k(["label", "node", "node-c", "node-role=worker", "--overwrite"]);
  const back = expected([CSP, CNP]);
  assert.deepEqual(await kl!.probeUntil(back), back);
});
