// Policy status aggregation by the operator against a real API server: node reports (simulated
// with the agent's publishNodeStatus) → Accepted/Enforced conditions, counts, observedGeneration;
// rejections as Accepted=False plus an Event; no writes when nothing changed.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { publishNodeStatus } from "../../operator/src/kube/node-status.ts";
import { kubectl } from "../../operator/src/lab/cluster-setup.ts";
import type { Operator } from "../../operator/src/controllers/run.ts";
import {
  type Cluster,
  createNamespace,
  createPod,
  kubectlOk,
  startCluster,
  waitFor,
  startTestOperator,
} from "./operator-helpers.ts";

interface PolicyJson {
  metadata: { uid: string; generation: number; resourceVersion: string };
  status?: {
    observedGeneration?: number;
    selectedEndpoints?: number;
    enforcingNodes?: number;
    totalNodes?: number;
    enforced?: string;
    conditions?: Array<{
      type: string;
      status: string;
      reason: string;
      message: string;
      lastTransitionTime: string;
    }>;
  };
}

const policyYaml = (name: string, app: string, extra = "") => `apiVersion: sluice.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: ${name}, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: ${app}}}
  ingress:
  - endpoints:
    - endpointSelector: {matchLabels: {app: db}}
${extra}`;

describe("policy status aggregation (real API server)", () => {
  let c: Cluster;
  let op: Operator;
  const get = async (name: string): Promise<PolicyJson> =>
    JSON.parse(
      await kubectlOk(["get", "securitypolicy", name, "-n", "shop", "-o", "json"], c.api.kubeconfigPath),
    );
  const cond = (p: PolicyJson, type: string) => p.status?.conditions?.find((x) => x.type === type);
  const report = (
    node: string,
    enforced: Array<{ uid: string; generation: number }>,
    errors: Array<{ uid: string; message: string }> = [],
  ) => publishNodeStatus(c.clients, node, { datapathVersion: "test", endpoints: 1, enforced, errors });

  before(async () => {
    c = await startCluster();
    await createNamespace(c.clients, "shop");
    await createPod(c.clients, "shop", "web-1", { app: "web" }, "n1");
    await createPod(c.clients, "shop", "web-2", { app: "web" }, "n2");
    await createPod(c.clients, "shop", "db", { app: "db" }, "n3");
    await createPod(c.clients, "shop", "web-3", { app: "web" }); // not scheduled: no node to wait for
    op = await startTestOperator(c.clients, "status-test");
  });
  after(async () => {
    await op?.stop();
    await c?.stop();
  });

  test("Enforced follows the nodes' reports of this generation; counts and printer columns", async () => {
    await kubectlOk(["apply", "-f", "-"], c.api.kubeconfigPath, policyYaml("allow-web", "web"));
    let p = await waitFor("a status", async () => {
      const x = await get("allow-web");
      return x.status?.observedGeneration ? x : undefined;
    });
    assert.equal(p.status?.selectedEndpoints, 3);
    assert.equal(p.status?.enforced, "0/2");
    assert.equal(cond(p, "Accepted")?.status, "True");
    assert.equal(cond(p, "Enforced")?.status, "False");
    assert.equal(cond(p, "Enforced")?.reason, "Pending");
    const uid = p.metadata.uid;

    await report("n1", [{ uid, generation: 1 }]);
    p = await waitFor("1/2", async () =>
      (await get("allow-web")).status?.enforced === "1/2" ? get("allow-web") : undefined,
    );
    assert.equal(cond(p, "Enforced")?.status, "False");
    await report("n2", [{ uid, generation: 1 }]);
    p = await waitFor("2/2", async () => {
      const x = await get("allow-web");
      return cond(x, "Enforced")?.status === "True" ? x : undefined;
    });
    assert.equal(p.status?.enforced, "2/2");
    assert.equal(p.status?.observedGeneration, 1);
    const table = await kubectlOk(["get", "securitypolicies", "-n", "shop"], c.api.kubeconfigPath);
    assert.match(table, /allow-web\s+Enforce\s+3\s+2\/2/);

    // No change → no write: the resourceVersion stays put while nodes re-report the same thing.
    const rv = p.metadata.resourceVersion;
    await report("n3", []);
    await report("n1", [
      { uid, generation: 1 },
      { uid: "other", generation: 7 },
    ]);
    await sleep(500);
    assert.equal((await get("allow-web")).metadata.resourceVersion, rv);

    // A new generation: Enforced goes False until every node reports it.
    await kubectlOk(
      ["apply", "-f", "-"],
      c.api.kubeconfigPath,
      policyYaml("allow-web", "web", "  - endpoints: [{endpointSelector: {matchLabels: {app: cache}}}]\n"),
    );
    p = await waitFor("generation 2 observed", async () => {
      const x = await get("allow-web");
      return x.status?.observedGeneration === 2 ? x : undefined;
    });
    assert.equal(p.metadata.generation, 2);
    assert.equal(cond(p, "Enforced")?.status, "False");
    assert.equal(p.status?.enforced, "0/2");
    await report("n1", [{ uid, generation: 2 }]);
    await report("n2", [{ uid, generation: 2 }]);
    await waitFor(
      "enforced at generation 2",
      async () => cond(await get("allow-web"), "Enforced")?.status === "True",
    );

    // A node failing to enforce: EnforcementFailed and a Warning event on the policy.
    await report("n2", [], [{ uid, message: "policy map full" }]);
    p = await waitFor("EnforcementFailed", async () => {
      const x = await get("allow-web");
      return cond(x, "Enforced")?.reason === "EnforcementFailed" ? x : undefined;
    });
    assert.match(cond(p, "Enforced")?.message ?? "", /n2: policy map full/);
    await waitFor("EnforcementFailed event", async () => {
      const ev = await c.clients.core.listNamespacedEvent({
        namespace: "shop",
        fieldSelector: `involvedObject.uid=${uid}`,
      });
      return ev.items.some((e) => e.reason === "EnforcementFailed" && e.type === "Warning");
    });
  });

  test("kubectl get shows each policy's mode; promoting Audit to Enforce is a new generation", async () => {
    const audited = (mode: string) =>
      policyYaml("try-web", "web").replace("spec:\n", `spec:\n  enforcement: ${mode}\n`);
    await kubectlOk(["apply", "-f", "-"], c.api.kubeconfigPath, audited("Audit"));
    const table = await kubectlOk(["get", "securitypolicies", "-n", "shop"], c.api.kubeconfigPath);
    assert.match(table, /^NAME\s+MODE\s+SELECTED\s+ENFORCED/m);
    assert.match(table, /try-web\s+Audit\s/);
    assert.match(table, /allow-web\s+Enforce\s/);
    const before = (await get("try-web")).metadata.generation;
    await kubectlOk(["apply", "-f", "-"], c.api.kubeconfigPath, audited("Enforce"));
    assert.equal((await get("try-web")).metadata.generation, (before ?? 0) + 1);
    assert.match(
      await kubectlOk(["get", "securitypolicy", "try-web", "-n", "shop"], c.api.kubeconfigPath),
      /try-web\s+Enforce\s/,
    );
    // Neither mode nor anything else: the schema's enum refuses it, naming the field.
    const bad = await kubectl(["apply", "-f", "-"], c.api.kubeconfigPath, { input: audited("Warn") });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /spec\.enforcement/);
    await kubectlOk(["delete", "securitypolicy", "try-web", "-n", "shop"], c.api.kubeconfigPath);
  });

  test("a semantically invalid policy is accepted by the API server but marked Accepted=False, with an event", async () => {
    await kubectlOk(
      ["apply", "-f", "-"],
      c.api.kubeconfigPath,
      `apiVersion: sluice.dev/v1alpha1
kind: SecurityPolicy
metadata: {name: bad, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: no-such-port, protocol: TCP}]
`,
    );
    const p = await waitFor("Accepted=False", async () => {
      const x = await get("bad");
      return cond(x, "Accepted")?.status === "False" ? x : undefined;
    });
    assert.equal(cond(p, "Accepted")?.reason, "Invalid");
    assert.match(cond(p, "Accepted")?.message ?? "", /no-such-port/);
    assert.equal(cond(p, "Enforced")?.reason, "NotAccepted");
    await waitFor("Rejected event", async () => {
      const ev = await c.clients.core.listNamespacedEvent({
        namespace: "shop",
        fieldSelector: `involvedObject.uid=${p.metadata.uid}`,
      });
      return ev.items.some((e) => e.reason === "Rejected");
    });
  });
});
