// The chart's admission policy (charts/sluice/templates/admission.yaml) on a real kube-apiserver: each
// agent writes only its own node's SecurityNodeStatus. Two Nodes and an agent Pod bound to each (no
// kubelet: the objects are enough for the API server to bind tokens to them), real tokens from the
// TokenRequest API (kubectl create token --bound-object-kind Pod), and the agent's own code
// (publishNodeStatus) as the client. A token bound to pod A writes node A's report and is refused
// node B's, by apply, merge patch and create; a token bound to no pod is refused with the policy's
// message; the operator's service account and an administrator are not restricted by it; with the
// value off, no policy is installed.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { AuthenticationV1Api, KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { type KubeClients, loadKubeConfig, makeClients } from "../../operator/src/kube/client.ts";
import { apiStatus } from "../../operator/src/kube/errors.ts";
import {
  NODE_STATUS_FIELD_MANAGER,
  publishNodeStatus,
  type SecurityNodeStatusObject,
} from "../../operator/src/kube/node-status.ts";
import { type ApiServer, repoRoot, startApiServer } from "../support/apiserver.ts";
import { podBody, waitFor } from "./operator-helpers.ts";

const run = promisify(execFile);
const HELM = join(repoRoot, ".tooling/bin/helm");
const KUBECTL = join(repoRoot, ".tooling/bin/kubectl");
const CHART = join(repoRoot, "charts/sluice");
const NS = "sluice-system";
// Release "sluice": the chart's names (templates/_helpers.tpl fullname and clusterName).
const AGENT_SA = "sluice-agent";
const OPERATOR_SA = "sluice-operator";
const POLICY = `sluice-${NS}-agent-node-status`;
const NODE_A = "node-a";
const NODE_B = "node-b";
const NODE_KEY = "authentication.kubernetes.io/node-name";
const NODE_STATUSES = { group: "sluice.dev", version: "v1alpha1", plural: "securitynodestatuses" };
const OTHER_NODE = (tokenNode: string, object: string) =>
  `the Sluice agent on node '${tokenNode}' may write only its own node's SecurityNodeStatus, not '${object}'`;
const NO_NODE =
  /the Sluice agent's credentials name no node \(user extra authentication\.kubernetes\.io\/node-name\)/;

const summary = (datapathVersion: string) => ({ datapathVersion, endpoints: 1, enforced: [] });

/** The status and message of a request's failure; fails the test when the request succeeded. */
async function refusal(what: string, p: Promise<unknown>): Promise<{ code: number; message: string }> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(err, `${what} was allowed`);
  const s = apiStatus(err);
  assert.ok(s, `${what}: not an API error: ${String(err)}`);
  return { code: s.code, message: s.message };
}

describe("the agent's node status admission policy on a real API server", () => {
  let api: ApiServer;
  let admin: KubeClients;
  let adminKc: KubeConfig;
  const tokens: Record<string, string> = {};

  const helm = async (args: readonly string[]) =>
    (await run(HELM, ["--kubeconfig", api.kubeconfigPath, ...args], { encoding: "utf8" })).stdout;
  const kubectl = async (args: readonly string[]) =>
    (await run(KUBECTL, ["--kubeconfig", api.kubeconfigPath, ...args], { encoding: "utf8" })).stdout;

  /** Clients that authenticate with a bearer token only (what an agent pod has), not the admin's cert. */
  function withToken(token: string): KubeClients {
    const cluster = adminKc.getCurrentCluster();
    assert.ok(cluster, "the admin kubeconfig names a cluster");
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [cluster],
      users: [{ name: "token", token }],
      contexts: [{ name: "token", cluster: cluster.name, user: "token" }],
      currentContext: "token",
    });
    return makeClients(kc);
  }

  /** Who the API server says a token is: its username and the node it is bound to, if any. */
  async function whoAmI(token: string): Promise<{ username?: string; node?: string[] }> {
    const cluster = withToken(token).kc;
    const review = await cluster.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
      body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
    });
    return { username: review.status?.userInfo?.username, node: review.status?.userInfo?.extra?.[NODE_KEY] };
  }

  const getStatus = async (name: string) =>
    (await admin.custom.getClusterCustomObject({ ...NODE_STATUSES, name })) as SecurityNodeStatusObject;

  before(async () => {
    api = await startApiServer();
    adminKc = loadKubeConfig(api.kubeconfigPath);
    admin = makeClients(adminKc);
    // Default values: the policy is on by default. One operator replica: there is a single node here.
    await helm(["install", "sluice", CHART, "-n", NS, "--create-namespace", "--set", "operator.replicas=1"]);
    for (const node of [NODE_A, NODE_B]) {
      await admin.core.createNode({ body: { metadata: { name: node } } });
      // The agent DaemonSet's pod on that node, as the scheduler would leave it (spec.nodeName).
      const pod = podBody(NS, `agent-${node}`, { app: "agent" }, node);
      await admin.core.createNamespacedPod({
        namespace: NS,
        body: { ...pod, spec: { ...pod.spec, serviceAccountName: AGENT_SA } },
      });
      tokens[node] = (
        await kubectl([
          "create",
          "token",
          AGENT_SA,
          "-n",
          NS,
          "--bound-object-kind",
          "Pod",
          "--bound-object-name",
          `agent-${node}`,
        ])
      ).trim();
    }
    // What a token of the agent's service account that no pod carries looks like.
    tokens.unbound = (await kubectl(["create", "token", AGENT_SA, "-n", NS])).trim();
  });
  after(async () => {
    await api?.stop();
  });

  test("the tokens are what the policy relies on: a pod-bound token carries its pod's node, an unbound one none", async () => {
    const expected = `system:serviceaccount:${NS}:${AGENT_SA}`;
    assert.deepEqual(await whoAmI(tokens[NODE_A]), { username: expected, node: [NODE_A] });
    assert.deepEqual(await whoAmI(tokens[NODE_B]), { username: expected, node: [NODE_B] });
    assert.deepEqual(await whoAmI(tokens.unbound), { username: expected, node: undefined });
  });

  test("the agent on node A is refused node B's status (apply, merge patch, create), by the policy", {
    timeout: 60_000,
  }, async () => {
    const agentA = withToken(tokens[NODE_A]);
    // The policy takes effect once the API server's admission plugin has loaded it (about a second
    // after helm created it): wait for the first refusal, then check every write.
    await waitFor(
      "the policy to refuse the agent on node A node B's status",
      () =>
        publishNodeStatus(agentA, NODE_B, summary("forged")).then(
          () => false,
          (e: unknown) => (apiStatus(e)?.message ?? "").includes(`ValidatingAdmissionPolicy '${POLICY}'`),
        ),
      30_000,
    );
    // The probe may have created node B's object before the policy was in force: the checks below
    // start from none.
    await admin.custom
      .deleteClusterCustomObject({ ...NODE_STATUSES, name: NODE_B })
      .catch((e: unknown) => assert.equal(apiStatus(e)?.code, 404));

    const applied = await refusal(
      "apply of node B's status by the agent on node A",
      publishNodeStatus(agentA, NODE_B, summary("forged")),
    );
    assert.equal(applied.code, 403);
    assert.match(applied.message, new RegExp(`ValidatingAdmissionPolicy '${POLICY}'`));
    assert.ok(applied.message.includes(OTHER_NODE(NODE_A, NODE_B)), applied.message);

    const created = await refusal(
      "create of node B's status by the agent on node A",
      agentA.custom.createClusterCustomObject({
        ...NODE_STATUSES,
        body: { apiVersion: "sluice.dev/v1alpha1", kind: "SecurityNodeStatus", metadata: { name: NODE_B } },
      }),
    );
    assert.equal(created.code, 403);
    assert.ok(created.message.includes(OTHER_NODE(NODE_A, NODE_B)), created.message);

    // Node B's own agent reports; node A's agent may then neither overwrite it by apply nor patch it.
    await publishNodeStatus(withToken(tokens[NODE_B]), NODE_B, summary("node-b"));
    const overwrite = await refusal(
      "apply over node B's existing status by the agent on node A",
      publishNodeStatus(agentA, NODE_B, summary("forged")),
    );
    assert.ok(overwrite.message.includes(OTHER_NODE(NODE_A, NODE_B)), overwrite.message);
    const patched = await refusal(
      "merge patch of node B's status by the agent on node A",
      agentA.custom.patchClusterCustomObject(
        { ...NODE_STATUSES, name: NODE_B, body: { status: { datapathVersion: "forged" } } },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      ),
    );
    assert.equal(patched.code, 403);
    assert.ok(patched.message.includes(OTHER_NODE(NODE_A, NODE_B)), patched.message);
    // Nor delete it: the chart grants the agent no delete, so RBAC refuses it before admission.
    const deleted = await refusal(
      "delete of node B's status by the agent on node A",
      agentA.custom.deleteClusterCustomObject({ ...NODE_STATUSES, name: NODE_B }),
    );
    assert.equal(deleted.code, 403);
    assert.equal((await getStatus(NODE_B)).status?.datapathVersion, "node-b", "node B's report is intact");
  });

  test("the agent on node A writes its own status as it does in the agent: server-side apply, created then updated", async () => {
    const agentA = withToken(tokens[NODE_A]);
    await publishNodeStatus(agentA, NODE_A, summary("v1")); // created (admitted as CREATE)
    await publishNodeStatus(agentA, NODE_A, summary("v2")); // updated (admitted as UPDATE)
    const own = await getStatus(NODE_A);
    assert.equal(own.status?.datapathVersion, "v2");
    assert.ok(own.metadata?.managedFields?.some((f) => f.manager === NODE_STATUS_FIELD_MANAGER));
  });

  test("an agent token bound to no pod is refused, even for a node's status it could otherwise claim", async () => {
    const unbound = withToken(tokens.unbound);
    for (const node of [NODE_A, "node-c"]) {
      const r = await refusal(
        `apply of ${node}'s status with an unbound token`,
        publishNodeStatus(unbound, node, summary("x")),
      );
      assert.equal(r.code, 403);
      assert.match(r.message, NO_NODE);
    }
    // Nor is impersonating the agent enough (a user without any extra: no evaluation error either).
    const impersonated = new KubeConfig();
    impersonated.loadFromOptions({
      clusters: adminKc.clusters,
      users: adminKc.users.map((u) => ({ ...u, impersonateUser: `system:serviceaccount:${NS}:${AGENT_SA}` })),
      contexts: adminKc.contexts,
      currentContext: adminKc.currentContext,
    });
    const r = await refusal(
      "apply of node A's status by the admin impersonating the agent",
      publishNodeStatus(makeClients(impersonated), NODE_A, summary("x")),
    );
    assert.equal(r.code, 403);
    assert.match(r.message, NO_NODE);
  });

  test("the operator's service account and an administrator are not restricted by the policy", async () => {
    // The operator only reads node statuses (rbac.yaml); grant its service account the agent's
    // write verbs here so that the policy, not RBAC, is what would refuse it.
    await kubectl([
      "create",
      "clusterrole",
      "test-node-status-writer",
      "--verb=create,patch",
      "--resource=securitynodestatuses.sluice.dev",
    ]);
    await kubectl([
      "create",
      "clusterrolebinding",
      "test-node-status-writer",
      "--clusterrole=test-node-status-writer",
      `--serviceaccount=${NS}:${OPERATOR_SA}`,
    ]);
    // Unbound to any pod: a token the policy would refuse if it applied to the operator.
    const operator = withToken((await kubectl(["create", "token", OPERATOR_SA, "-n", NS])).trim());
    // Only RBAC's propagation may delay the write; a refusal by the policy ends the wait at once.
    const outcome = await waitFor(
      "the operator's write (RBAC grant in force)",
      () =>
        publishNodeStatus(operator, "node-op", summary("operator")).then(
          () => "written",
          (e: unknown) => {
            const message = apiStatus(e)?.message ?? String(e);
            return message.includes("ValidatingAdmissionPolicy") ? message : undefined;
          },
        ),
      20_000,
    );
    assert.equal(outcome, "written");
    assert.equal((await getStatus("node-op")).status?.datapathVersion, "operator");
    // The administrator (system:masters, no node) overwrites any node's report, node A's included.
    await publishNodeStatus(admin, NODE_A, summary("admin"));
    assert.equal((await getStatus(NODE_A)).status?.datapathVersion, "admin");
  });

  test("agent.nodeStatusAdmission.enabled=false removes the policy: any agent token writes any node's status", {
    timeout: 60_000,
  }, async () => {
    await helm([
      "upgrade",
      "sluice",
      CHART,
      "-n",
      NS,
      "--reuse-values",
      "--set",
      "agent.nodeStatusAdmission.enabled=false",
    ]);
    const policies = JSON.parse(
      await kubectl(["get", "validatingadmissionpolicies,validatingadmissionpolicybindings", "-o", "json"]),
    ) as { items: unknown[] };
    assert.deepEqual(policies.items, []);
    const agentA = withToken(tokens[NODE_A]);
    await waitFor(
      "the removed policy to stop refusing",
      () =>
        publishNodeStatus(agentA, NODE_B, summary("unrestricted")).then(
          () => true,
          () => false,
        ),
      30_000,
    );
    assert.equal((await getStatus(NODE_B)).status?.datapathVersion, "unrestricted");
  });
});
