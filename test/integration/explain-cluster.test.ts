// `sluice explain` against a real API server: the objects it lists through the kubeconfig explain every
// pair and port as the same manifests do offline (verdict, deciding rule, chain); SIG Network's kinds
// are read only while their CRD is served, and a ClusterNetworkPolicy applied after its CRD is named.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { clusterObjects, explainRequest } from "../../operator/src/cli/explain.ts";
import { registerLabCluster } from "../../operator/src/lab/cluster-setup.ts";
import { loadObjects } from "../../operator/src/manifests/load.ts";
import { inputsFromObjects } from "../../operator/src/policy/index.ts";
import type { PolicyInputs } from "../../operator/src/policy/compile.ts";
import { podIps } from "../../operator/src/policy/universe.ts";
import { fixture, sluice } from "../e2e/lab-support.ts";
import { type Cluster, kubectlOk, repoRoot, startCluster, waitCrdsEstablished } from "./operator-helpers.ts";

const DIR = fixture("explain");
const CNP_CRD = join(repoRoot, "crds/upstream/clusternetworkpolicies.yaml");

// Every pair of pods and every container port of the destination, as `--port` spells it.
function requests(inputs: PolicyInputs) {
  const keys = inputs.pods.filter((p) => podIps(p).length > 0);
  return keys.flatMap((src) =>
    keys
      .filter((dst) => dst !== src)
      .flatMap((dst) =>
        (dst.spec?.containers ?? []).flatMap((c) =>
          (c.ports ?? []).map((p) => ({
            from: `${src.metadata.namespace}/${src.metadata.name}`,
            to: `${dst.metadata.namespace}/${dst.metadata.name}`,
            port: `${p.containerPort}/${p.protocol ?? "TCP"}`,
          })),
        ),
      ),
  );
}

// What must not differ between the two sources: verdicts, deciding rules, the chains.
function essence(inputs: PolicyInputs, req: { from: string; to: string; port: string }) {
  const x = explainRequest(inputs, req).explanation;
  const side = (s: typeof x.egress) =>
    s && {
      decision: s.decision,
      datapath: s.datapath,
      steps: s.steps,
      isolatedBy: s.isolatedBy,
      peer: s.peer.pod,
    };
  return { verdict: x.verdict, egress: side(x.egress), ingress: side(x.ingress) };
}

describe("sluice explain against an API server", () => {
  let c: Cluster;
  const offline = inputsFromObjects(loadObjects([DIR]));

  before(async () => {
    c = await startCluster();
    await registerLabCluster(c.api.kubeconfigPath, loadObjects([join(DIR, "topology.yaml")]));
    await kubectlOk(["apply", "-f", join(DIR, "policies.yaml")], c.api.kubeconfigPath);
  });
  after(async () => {
    await c?.stop();
  });

  test("the cluster's objects explain every pair and port as the manifests do", async () => {
    const listed = await clusterObjects(c.kc);
    assert.deepEqual(listed.notServed.sort(), [
      "AdminNetworkPolicy",
      "BaselineAdminNetworkPolicy",
      "ClusterNetworkPolicy",
    ]);
    const live = inputsFromObjects(listed.objects);
    const reqs = requests(offline);
    assert.equal(reqs.length, 18);
    let denied = 0;
    for (const req of reqs) {
      const want = essence(offline, req);
      assert.deepEqual(essence(live, req), want, `${req.from} -> ${req.to} ${req.port}`);
      if (want.verdict === "deny") denied++;
    }
    assert.ok(denied > 0 && denied < reqs.length, `${denied} of ${reqs.length} denied`);
  });

  test("the command with --kubeconfig; a ClusterNetworkPolicy counts once its CRD is served", async () => {
    const args = ["explain", "--from", "shop/web", "--to", "ops/batch", "--port", "http"];
    const kube = ["--kubeconfig", c.api.kubeconfigPath];
    const before = await sluice([...args, ...kube]);
    assert.equal(before.code, 0, before.stderr);
    assert.match(before.stdout, /8081\/TCP \(http\): allowed/);
    assert.match(before.stderr, /not served by the cluster, so not read: .*ClusterNetworkPolicy/);

    await kubectlOk(["apply", "--server-side", "-f", CNP_CRD], c.api.kubeconfigPath);
    await waitCrdsEstablished(c.api.kubeconfigPath, ["clusternetworkpolicies.policy.networking.k8s.io"]);
    await kubectlOk(
      ["apply", "-f", "-"],
      c.api.kubeconfigPath,
      JSON.stringify({
        apiVersion: "policy.networking.k8s.io/v1alpha2",
        kind: "ClusterNetworkPolicy",
        metadata: { name: "no-shop-to-batch" },
        spec: {
          tier: "Admin",
          priority: 5,
          subject: {
            pods: {
              namespaceSelector: { matchLabels: { team: "ops" } },
              podSelector: { matchLabels: { app: "batch" } },
            },
          },
          ingress: [
            {
              name: "not-from-shop",
              action: "Deny",
              from: [{ namespaces: { matchLabels: { team: "shop" } } }],
            },
          ],
        },
      }),
    );
    const after = await sluice([...args, ...kube, "-o", "json"]);
    assert.equal(after.code, 0, after.stderr);
    const x = JSON.parse(after.stdout) as {
      verdict: string;
      ingress: { decision: { rule: { policy: string; ruleName: string } } };
    };
    assert.equal(x.verdict, "deny");
    assert.equal(x.ingress.decision.rule.policy, "ClusterNetworkPolicy/no-shop-to-batch");
    assert.equal(x.ingress.decision.rule.ruleName, "not-from-shop");
  });
});
