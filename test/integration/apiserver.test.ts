// The test API server serves everything Sluice relies on: core objects, CRDs with CEL validation, the
// status subresource, server-side apply, watches and leases; and it stops cleanly.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { after, before, describe, test } from "node:test";
import { ApiException, CoordinationV1Api, CoreV1Api, KubeConfig, Watch } from "@kubernetes/client-node";
import { loadKubeConfig, makeClients } from "../../operator/src/kube/client.ts";
import { rawRequest } from "../../operator/src/kube/raw.ts";
import { waitCrdsEstablished } from "../../operator/src/lab/cluster-setup.ts";
import { type ApiServer, kubectl, startApiServer } from "../support/apiserver.ts";

const suffix = randomBytes(3).toString("hex");
const ns = `sluice-it-${suffix}`;
const crdGroup = "it.sluice.dev";
const crdName = `widgets.${crdGroup}`;

const crd = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ${crdName}
spec:
  group: ${crdGroup}
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              port: {type: integer}
              endPort: {type: integer}
            x-kubernetes-validations:
            - rule: "!has(self.endPort) || self.endPort >= self.port"
              message: "endPort must be greater than or equal to port"
          status:
            type: object
            properties:
              observedGeneration: {type: integer}
`;

function widget(name: string, port: number, endPort: number): string {
  return `apiVersion: ${crdGroup}/v1
kind: Widget
metadata: {name: ${name}, namespace: ${ns}}
spec: {port: ${port}, endPort: ${endPort}}
`;
}

function portOf(server: string): number {
  return Number(new URL(server).port || 443);
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((done) => {
    const sock = connect({ host: "127.0.0.1", port });
    sock.once("connect", () => {
      sock.destroy();
      done(true);
    });
    sock.once("error", () => done(false));
  });
}

async function ok(args: string[], kubeconfig: string, input?: string): Promise<string> {
  const r = await kubectl(args, kubeconfig, { input });
  assert.equal(r.code, 0, `kubectl ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

describe("test API server", () => {
  let api: ApiServer;
  let kc: KubeConfig;

  before(async () => {
    api = await startApiServer();
    console.log(
      `# API server ready in ${api.startupMs} ms at ${api.server}${api.external ? " (external)" : ""}`,
    );
    kc = new KubeConfig();
    kc.loadFromFile(api.kubeconfigPath);
  });

  after(async () => {
    if (api?.external) {
      await kubectl(["delete", "ns", ns, "--wait=false"], api.kubeconfigPath);
      await kubectl(["delete", "crd", crdName, "--wait=false"], api.kubeconfigPath);
    }
    await api?.stop();
  });

  test("kubectl apply of a Namespace, a Node, a Pod; an Event", async (t) => {
    t.diagnostic(`startup ${api.startupMs} ms`);
    const k = api.kubeconfigPath;
    await ok(
      ["apply", "-f", "-"],
      k,
      `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${ns}, labels: {team: a}}\n`,
    );
    await ok(["apply", "-f", "-"], k, `apiVersion: v1\nkind: Node\nmetadata: {name: node-${suffix}}\n`);
    await ok(
      ["apply", "-f", "-"],
      k,
      `apiVersion: v1
kind: Pod
metadata: {name: web, namespace: ${ns}, labels: {app: web}}
spec:
  nodeName: node-${suffix}
  containers:
  - {name: c, image: example.invalid/web, ports: [{name: http, containerPort: 80}]}
`,
    );
    const pod = JSON.parse(await ok(["get", "pod", "web", "-n", ns, "-o", "json"], k));
    assert.equal(pod.metadata.labels.app, "web");
    assert.equal(pod.spec.nodeName, `node-${suffix}`);
    // No ServiceAccount admission: the pod carries no token volume.
    assert.equal((pod.spec.volumes ?? []).length, 0);

    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespacedEvent({
      namespace: ns,
      body: {
        metadata: { generateName: "web-" },
        involvedObject: { kind: "Pod", namespace: ns, name: "web", uid: pod.metadata.uid },
        reason: "Tested",
        message: "hello",
        type: "Normal",
      },
    });
    const events = await core.listNamespacedEvent({ namespace: ns });
    assert.ok(events.items.some((e) => e.reason === "Tested" && e.involvedObject.name === "web"));
  });

  test("CRD with a CEL rule rejects a violating object with the rule's message", async () => {
    const k = api.kubeconfigPath;
    await ok(["apply", "-f", "-"], k, crd);
    await waitCrdsEstablished(k, [crdName], {}, 30_000);
    // Discovery of a just-established CRD can lag a moment behind.
    let r = await kubectl(["apply", "-f", "-"], k, { input: widget("good", 80, 90) });
    for (
      let i = 0;
      i < 50 && r.code !== 0 && /no matches for kind|the server could not find/.test(r.stderr);
      i++
    ) {
      await new Promise((w) => setTimeout(w, 100));
      r = await kubectl(["apply", "-f", "-"], k, { input: widget("good", 80, 90) });
    }
    assert.equal(r.code, 0, r.stderr);
    const bad = await kubectl(["apply", "-f", "-"], k, { input: widget("bad", 90, 80) });
    assert.notEqual(bad.code, 0, "violating object was accepted");
    assert.match(bad.stderr, /endPort must be greater than or equal to port/);
    const get = await kubectl(["get", "widget", "bad", "-n", ns], k);
    assert.notEqual(get.code, 0, "violating object was stored");
  });

  test("status subresource: status only through /status, spec not through it", async () => {
    const k = api.kubeconfigPath;
    await ok(
      [
        "patch",
        "widget",
        "good",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"observedGeneration":7}}',
      ],
      k,
    );
    // The main resource ignores status; the status subresource ignores spec.
    await ok(
      ["patch", "widget", "good", "-n", ns, "--type=merge", "-p", '{"status":{"observedGeneration":99}}'],
      k,
    );
    await ok(
      [
        "patch",
        "widget",
        "good",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"spec":{"port":1}}',
      ],
      k,
    );
    const w = JSON.parse(await ok(["get", "widget", "good", "-n", ns, "-o", "json"], k));
    assert.equal(w.status.observedGeneration, 7);
    assert.equal(w.spec.port, 80);
    assert.equal(w.metadata.generation, 1, "status writes must not bump generation");
  });

  test("server-side apply: field managers, conflicts, force", async () => {
    const k = api.kubeconfigPath;
    const cm = (v: string) =>
      `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, namespace: ${ns}}\ndata: {key: "${v}"}\n`;
    await ok(["apply", "--server-side", "--field-manager=alice", "-f", "-"], k, cm("a"));
    const conflict = await kubectl(["apply", "--server-side", "--field-manager=bob", "-f", "-"], k, {
      input: cm("b"),
    });
    assert.notEqual(conflict.code, 0, "conflicting apply by another manager succeeded");
    assert.match(conflict.stderr, /conflict/i);
    await ok(["apply", "--server-side", "--field-manager=bob", "--force-conflicts", "-f", "-"], k, cm("b"));
    const obj = JSON.parse(
      await ok(["get", "cm", "ssa", "-n", ns, "-o", "json", "--show-managed-fields"], k),
    );
    assert.equal(obj.data.key, "b");
    const managers = (obj.metadata.managedFields as { manager: string; operation: string }[]).map(
      (m) => `${m.manager}/${m.operation}`,
    );
    assert.ok(managers.includes("bob/Apply"), `managers: ${managers.join(",")}`);
  });

  test("a watch receives ADDED, MODIFIED and DELETED", async () => {
    const k = api.kubeconfigPath;
    const seen: string[] = [];
    let notify: () => void = () => {};
    const watch = new Watch(kc);
    const abort = await watch.watch(
      `/api/v1/namespaces/${ns}/configmaps`,
      { labelSelector: "watched=yes" },
      (phase: string, obj: { metadata?: { name?: string } }) => {
        seen.push(`${phase} ${obj.metadata?.name}`);
        notify();
      },
      () => {},
    );
    try {
      const cm = (v: string) =>
        `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: w1, namespace: ${ns}, labels: {watched: "yes"}}\ndata: {v: "${v}"}\n`;
      await ok(["apply", "-f", "-"], k, cm("1"));
      await ok(["apply", "-f", "-"], k, cm("2"));
      await ok(["delete", "cm", "w1", "-n", ns], k);
      const want = ["ADDED w1", "MODIFIED w1", "DELETED w1"];
      const deadline = Date.now() + 10_000;
      while (seen.length < want.length && Date.now() < deadline) {
        await new Promise<void>((w) => {
          notify = w;
          setTimeout(w, 200);
        });
      }
      assert.deepEqual(seen, want);
    } finally {
      abort.abort();
    }
  });

  test("Lease create, update, and a stale resourceVersion is a 409 conflict", async () => {
    const leases = kc.makeApiClient(CoordinationV1Api);
    const created = await leases.createNamespacedLease({
      namespace: ns,
      body: { metadata: { name: "leader" }, spec: { holderIdentity: "a", leaseDurationSeconds: 15 } },
    });
    const staleRV = created.metadata?.resourceVersion;
    assert.ok(staleRV);
    const updated = await leases.replaceNamespacedLease({
      name: "leader",
      namespace: ns,
      body: { ...created, spec: { ...created.spec, holderIdentity: "b" } },
    });
    assert.equal(updated.spec?.holderIdentity, "b");
    assert.notEqual(updated.metadata?.resourceVersion, staleRV);
    await assert.rejects(
      leases.replaceNamespacedLease({
        name: "leader",
        namespace: ns,
        body: { ...created, spec: { ...created.spec, holderIdentity: "c" } },
      }),
      (err: unknown) => err instanceof ApiException && err.code === 409,
    );
    const now = await leases.readNamespacedLease({ name: "leader", namespace: ns });
    assert.equal(now.spec?.holderIdentity, "b");
  });

  test("raw requests and the generated clients keep their TLS connections (not one per request)", async () => {
    // Each client socket is published on this channel as it is created.
    const created: unknown[] = [];
    const count = (m: unknown) => created.push(m);
    subscribe("net.client.socket", count);
    const connectionsFor = async (calls: () => Promise<unknown>) => {
      const before = created.length;
      for (let i = 0; i < 20; i++) await calls();
      return created.length - before;
    };
    try {
      const k = loadKubeConfig(api.kubeconfigPath);
      const raw = await connectionsFor(() => rawRequest(k, "GET", "/api/v1/namespaces/default"));
      const core = makeClients(k).core;
      const generated = await connectionsFor(() => core.readNamespace({ name: "default" }));
      // 20 sequential requests each: one connection (a second only if the server closed the first).
      assert.ok(raw >= 1 && raw <= 2, `raw requests opened ${raw} connections`);
      assert.ok(generated >= 1 && generated <= 2, `the generated client opened ${generated} connections`);
    } finally {
      unsubscribe("net.client.socket", count);
    }
  });

  test("stop closes the port and removes the kubeconfig", async (t) => {
    if (api.external) {
      t.skip("external cluster: nothing to stop");
      return;
    }
    const port = portOf(api.server);
    assert.equal(await portOpen(port), true);
    const t0 = performance.now();
    await api.stop();
    t.diagnostic(`stopped in ${Math.round(performance.now() - t0)} ms`);
    assert.equal(await portOpen(port), false, `port ${port} still open after stop`);
    assert.equal(existsSync(api.kubeconfigPath), false);
  });
});
