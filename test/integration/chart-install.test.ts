// The Helm chart against a real kube-apiserver (no kubelet: nothing runs, the API server validates and
// stores): `helm install` with the default values and, beside it in another namespace, a second release
// with non-default ones; a values file of the wrong type refused by helm before anything is created;
// and the RBAC the chart grants is enough for the code, exercised as the charts' service accounts
// (impersonated): the operator leads, allocates identities, writes policy status and events; the
// agent's informers list and watch, and its node status is created by server-side apply. Also
// samples/gitops' argocd-cm changes on a real ConfigMap.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import type { KubernetesObject } from "@kubernetes/client-node";
import { parse, stringify } from "yaml";
import { Operator } from "../../operator/src/controllers/run.ts";
import { type KubeClients, loadKubeConfig, makeClients } from "../../operator/src/kube/client.ts";
import { apiStatus } from "../../operator/src/kube/errors.ts";
import { EventRecorder } from "../../operator/src/kube/event-recorder.ts";
import { Informer, waitForCacheSync } from "../../operator/src/kube/informer.ts";
import { publishNodeStatus } from "../../operator/src/kube/node-status.ts";
import {
  CLUSTER_SECURITY_POLICIES,
  NAMESPACES,
  NETWORK_POLICIES,
  NODES,
  PODS,
  SECURITY_IDENTITIES,
  SECURITY_POLICIES,
} from "../../operator/src/kube/resources.ts";
import { type ApiServer, repoRoot, startApiServer } from "../support/apiserver.ts";
import { podBody, waitFor } from "./operator-helpers.ts";

const run = promisify(execFile);
const HELM = join(repoRoot, ".tooling/bin/helm");
const KUBECTL = join(repoRoot, ".tooling/bin/kubectl");
const CHART = join(repoRoot, "charts/sluice");
const NS_A = "sluice-system";
const NS_B = "sluice-b";

describe("the chart on a real API server", () => {
  let api: ApiServer;
  let dir: string;
  let admin: KubeClients;
  // The admin kubeconfig (kubectl config view --raw), which asServiceAccount rewrites.
  let adminConfig = "";

  const helm = async (args: readonly string[]) =>
    (await run(HELM, ["--kubeconfig", api.kubeconfigPath, ...args], { encoding: "utf8" })).stdout;
  const kubectl = async (args: readonly string[]) =>
    (await run(KUBECTL, ["--kubeconfig", api.kubeconfigPath, ...args], { encoding: "utf8" })).stdout;
  const getJson = async <T>(args: readonly string[]): Promise<T> =>
    JSON.parse(await kubectl(["get", ...args, "-o", "json"])) as T;
  const setArgs = (values: Record<string, string>) =>
    Object.entries(values).flatMap(([k, v]) => ["--set", `${k}=${v}`]);

  /** A kubeconfig that acts as a service account of the chart (impersonation by the admin). */
  function asServiceAccount(namespace: string, name: string): KubeClients {
    const config = parse(adminConfig) as { users: { name: string; user: Record<string, unknown> }[] };
    for (const u of config.users) u.user.as = `system:serviceaccount:${namespace}:${name}`;
    const path = join(dir, `${namespace}-${name}.kubeconfig`);
    writeFileSync(path, stringify(config), { mode: 0o600 });
    return makeClients(loadKubeConfig(path));
  }

  before(async () => {
    api = await startApiServer();
    dir = mkdtempSync(join(tmpdir(), "sluice-chart-it-"));
    admin = makeClients(loadKubeConfig(api.kubeconfigPath));
    adminConfig = await kubectl(["config", "view", "--raw"]);
  });
  after(async () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    await api?.stop();
  });

  test("helm install with the default values (one operator replica: no second node)", async () => {
    await helm([
      "install",
      "sluice",
      CHART,
      "-n",
      NS_A,
      "--create-namespace",
      ...setArgs({ "operator.replicas": "1" }),
    ]);
    const op = await getJson<{
      spec: { replicas: number; template: { spec: { containers: { args: string[] }[] } } };
    }>(["deployment", "sluice-operator", "-n", NS_A]);
    assert.equal(op.spec.replicas, 1);
    assert.ok(op.spec.template.spec.containers[0].args.includes("--metrics-addr=:9963"));
    const crds = await getJson<{
      items: { metadata: { name: string; annotations?: Record<string, string> } }[];
    }>(["crd"]);
    const sluiceCrds = crds.items.filter((c) => c.metadata.name.endsWith(".sluice.dev"));
    assert.equal(sluiceCrds.length, 4);
    for (const c of sluiceCrds) assert.equal(c.metadata.annotations?.["helm.sh/resource-policy"], "keep");
    for (const kind of [
      "service/sluice-agent-metrics",
      "service/sluice-operator-metrics",
      "poddisruptionbudget/sluice-operator",
      "daemonset/sluice-agent",
    ])
      await kubectl(["get", kind, "-n", NS_A]);
  });

  test("a second release in another namespace, with non-default values, beside the first", async () => {
    await helm([
      "install",
      "sluice",
      CHART,
      "-n",
      NS_B,
      "--create-namespace",
      ...setArgs({
        installCRDs: "false", // the first release owns them
        "operator.replicas": "3",
        "operator.metrics.port": "19963",
        "agent.metrics.port": "0",
        "agent.logLevel": "debug",
        "operator.logFormat": "pretty",
        "agent.allowLocalhost": "policy",
        "cni.install": "false",
        "metrics.scrapeAnnotations": "true",
        "operator.podDisruptionBudget.maxUnavailable": "50%",
        "operator.resources.limits.memory": "1Gi",
        k8sServiceHost: "10.0.0.1",
        k8sServicePort: "6443",
      }),
    ]);
    const roles = await getJson<{ items: { metadata: { name: string; labels: Record<string, string> } }[] }>([
      "clusterroles",
      "-l",
      "app.kubernetes.io/part-of=sluice",
    ]);
    const names = roles.items.map((r) => r.metadata.name).sort();
    assert.deepEqual(names, [
      `sluice-${NS_B}-agent`,
      `sluice-${NS_B}-operator`,
      `sluice-${NS_A}-agent`,
      `sluice-${NS_A}-operator`,
    ]);
    const pdb = await getJson<{ spec: { maxUnavailable: string } }>(["pdb", "sluice-operator", "-n", NS_B]);
    assert.equal(pdb.spec.maxUnavailable, "50%");
    const svc = await getJson<{
      items: { metadata: { name: string; annotations?: Record<string, string> } }[];
    }>(["services", "-n", NS_B]);
    assert.deepEqual(
      svc.items.map((s) => [s.metadata.name, s.metadata.annotations?.["prometheus.io/port"]]),
      [["sluice-operator-metrics", "19963"]],
      "agent.metrics.port=0: no agent Service",
    );
    // The first release is untouched by the second.
    const a = await getJson<{ spec: { replicas: number } }>(["deployment", "sluice-operator", "-n", NS_A]);
    assert.equal(a.spec.replicas, 1);
    const releases = JSON.parse(await helm(["list", "-A", "-o", "json"])) as {
      namespace: string;
      status: string;
    }[];
    assert.deepEqual(releases.map((r) => [r.namespace, r.status]).sort(), [
      [NS_B, "deployed"],
      [NS_A, "deployed"],
    ]);
  });

  test("every rendered object, ServiceMonitor aside, passes the API server's validation (dry run)", async () => {
    // The ServiceMonitor CRD (Prometheus Operator) is not installed here: its rendering is checked by
    // test/unit/chart.test.ts; everything else the chart can render is validated by the server.
    const { stdout } = await run(
      HELM,
      [
        "template",
        "dry",
        CHART,
        "-n",
        NS_A,
        ...setArgs({ "metrics.scrapeAnnotations": "true", "agent.allowLocalhost": "policy" }),
      ],
      { encoding: "utf8", maxBuffer: 64 << 20 },
    );
    const file = join(dir, "rendered.yaml");
    writeFileSync(file, stdout);
    const out = await kubectl(["apply", "--dry-run=server", "-f", file]);
    assert.match(out, /deployment\.apps\/dry-sluice-operator created \(server dry run\)/);
    assert.match(out, /daemonset\.apps\/dry-sluice-agent created \(server dry run\)/);
  });

  test("a values file with a wrong type is refused by helm with the value's path, and nothing is installed", async () => {
    const file = join(dir, "bad-values.yaml");
    writeFileSync(file, 'operator:\n  replicas: "2"\nagent:\n  metrics:\n    port: metrics\n');
    const err = await helm([
      "install",
      "bad",
      CHART,
      "-n",
      "sluice-bad",
      "--create-namespace",
      "-f",
      file,
    ]).then(
      () => undefined,
      (e: { stderr?: string }) => e.stderr ?? String(e),
    );
    assert.ok(err, "helm installed a release with wrong types");
    assert.match(err, /\/operator\/replicas': got string, want integer/);
    assert.match(err, /\/agent\/metrics\/port': got string, want integer/);
    const releases = JSON.parse(await helm(["list", "-n", "sluice-bad", "-o", "json"])) as unknown[];
    assert.deepEqual(releases, []);
  });

  test("samples/gitops: merge-exclusions.sh appends to argocd-cm's list and keeps it; the health patch keeps it too", async () => {
    await kubectl(["create", "namespace", "argocd"]);
    // What Argo CD's install manifests ship (an excerpt): entries a replacing patch would drop.
    const defaults =
      "- apiGroups:\n  - ''\n  - discovery.k8s.io\n  kinds:\n  - Endpoints\n  - EndpointSlice\n- apiGroups:\n  - coordination.k8s.io\n  kinds:\n  - Lease\n";
    await kubectl([
      "-n",
      "argocd",
      "create",
      "configmap",
      "argocd-cm",
      `--from-literal=resource.exclusions=${defaults}`,
    ]);
    const script = join(repoRoot, "samples/gitops/argocd/merge-exclusions.sh");
    const env = {
      ...process.env,
      KUBECONFIG: api.kubeconfigPath,
      PATH: `${join(repoRoot, ".tooling/bin")}:${process.env.PATH}`,
    };
    await run("bash", [script, "argocd"], { env });
    await run("bash", [script, "argocd"], { env }); // idempotent
    await kubectl([
      "-n",
      "argocd",
      "patch",
      "configmap",
      "argocd-cm",
      "--type",
      "merge",
      "--patch-file",
      join(repoRoot, "samples/gitops/argocd/argocd-cm-patch.yaml"),
    ]);
    const cm = await getJson<{ data: Record<string, string> }>(["-n", "argocd", "configmap", "argocd-cm"]);
    const list = parse(cm.data["resource.exclusions"]) as { apiGroups: string[]; kinds: string[] }[];
    assert.deepEqual(
      list.map((e) => e.kinds.join(",")),
      ["Endpoints,EndpointSlice", "Lease", "SecurityIdentity,SecurityNodeStatus"],
    );
    assert.ok(cm.data["resource.customizations.health.sluice.dev_SecurityPolicy"]);
  });

  test("the operator's RBAC is enough: as its service account it leads, allocates identities, writes status and events", {
    timeout: 60_000,
  }, async () => {
    const sa = asServiceAccount(NS_A, "sluice-operator");
    await admin.core.createNamespace({ body: { metadata: { name: "rbac-app" } } });
    await admin.core.createNamespacedPod({
      namespace: "rbac-app",
      body: podBody("rbac-app", "web", { app: "web" }),
    });
    await admin.custom.createNamespacedCustomObject({
      group: "sluice.dev",
      version: "v1alpha1",
      namespace: "rbac-app",
      plural: "securitypolicies",
      body: {
        apiVersion: "sluice.dev/v1alpha1",
        kind: "SecurityPolicy",
        metadata: { name: "web", namespace: "rbac-app" },
        spec: { endpointSelector: { matchLabels: { app: "web" } }, ingress: [] },
      },
    });
    const op = new Operator({
      clients: sa,
      leaseNamespace: NS_A,
      leaseName: "sluice-operator", // the chart's --lease-name for release sluice, its Role's resourceName
      id: "rbac-op",
      identityGcGraceMs: 60_000,
      leaseDurationMs: 3000,
      renewDeadlineMs: 2000,
      retryPeriodMs: 300,
      statusDebounceMs: 20,
    });
    op.start();
    try {
      await waitFor("the operator leads as its service account", () => op.isLeader(), 20_000);
      await waitFor(
        "a SecurityIdentity for rbac-app/web",
        async () => {
          const list = (await admin.custom.listClusterCustomObject({
            group: "sluice.dev",
            version: "v1alpha1",
            plural: "securityidentities",
          })) as { items: { spec: { labels: Record<string, string> } }[] };
          return list.items.some((i) => Object.values(i.spec.labels).includes("web"));
        },
        20_000,
      );
      await waitFor(
        "the policy's Accepted condition",
        async () => {
          const p = (await admin.custom.getNamespacedCustomObject({
            group: "sluice.dev",
            version: "v1alpha1",
            namespace: "rbac-app",
            plural: "securitypolicies",
            name: "web",
          })) as { status?: { conditions?: { type: string; status: string }[] } };
          return p.status?.conditions?.some((c) => c.type === "Accepted" && c.status === "True");
        },
        20_000,
      );
    } finally {
      await op.stop();
    }
    // The recorder the status controller uses: create, then patch of the repeated event.
    const errors: string[] = [];
    const recorder = new EventRecorder(sa.core, {
      component: "sluice-operator",
      onError: (e) => errors.push(e),
    });
    const ref = {
      apiVersion: "sluice.dev/v1alpha1",
      kind: "SecurityPolicy",
      namespace: "rbac-app",
      name: "web",
    };
    const first = await recorder.record(ref, "Normal", "RbacCheck", "once");
    const again = await recorder.record(ref, "Normal", "RbacCheck", "once");
    assert.deepEqual(errors, []);
    assert.ok(first && first === again);
    const ev = await getJson<{ count: number }>(["event", first, "-n", "rbac-app"]);
    assert.equal(ev.count, 2, "the repeated event was patched");
  });

  test("the agent's RBAC is enough, and no more: it watches, creates its node status by apply, records no events", {
    timeout: 60_000,
  }, async () => {
    const sa = asServiceAccount(NS_A, "sluice-agent");
    // The chart's admission policy (templates/admission.yaml) admits an agent's node status only for
    // the node its token is bound to: impersonate that claim too (what a pod's projected token carries;
    // test/integration/node-status-admission.test.ts uses real ones). client-node's kubeconfig has no
    // as-user-extra, hence the header.
    sa.kc.addAuthenticator({
      isAuthProvider: () => true,
      applyAuthentication: async (_user, opts) => {
        opts.headers = {
          ...opts.headers,
          "Impersonate-Extra-authentication.kubernetes.io%2fnode-name": "rbac-node",
        };
      },
    });
    // kube-agent.ts WATCHED, listed and watched as the agent.
    const informers = [
      NAMESPACES,
      PODS,
      NODES,
      NETWORK_POLICIES,
      SECURITY_POLICIES,
      CLUSTER_SECURITY_POLICIES,
      SECURITY_IDENTITIES,
    ].map((r) => new Informer<KubernetesObject>(sa.kc, r));
    for (const i of informers) i.start();
    try {
      await waitForCacheSync(informers, 20_000);
    } finally {
      await Promise.all(informers.map((i) => i.stop()));
    }
    // Server-side apply creates the absent object with the patch verb alone.
    await publishNodeStatus(sa, "rbac-node", { datapathVersion: "test", endpoints: 0, enforced: [] });
    const status = await getJson<{ metadata: { name: string } }>(["securitynodestatus", "rbac-node"]);
    assert.equal(status.metadata.name, "rbac-node");
    // What the chart no longer grants the agent is refused.
    const denied = await sa.core
      .createNamespacedEvent({
        namespace: "default",
        body: { metadata: { name: "agent-event" }, involvedObject: { kind: "Node", name: "rbac-node" } },
      })
      .then(
        () => false,
        (e: unknown) => apiStatus(e)?.code === 403,
      );
    assert.ok(denied, "the agent may create events");
  });
});
