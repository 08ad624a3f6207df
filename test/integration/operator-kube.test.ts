// The client-node building blocks against a real API server: the resilient informer (restart after
// a non-410 error), server-side apply of objects and status, events with aggregation, the node
// status publisher.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { KubernetesObject } from "@kubernetes/client-node";
import { applyCustomObject, applyCustomStatus } from "../../operator/src/kube/apply.ts";
import { EventRecorder } from "../../operator/src/kube/event-recorder.ts";
import { Informer } from "../../operator/src/kube/informer.ts";
import {
  NodeStatusPublisher,
  policySetHash,
  publishNodeStatus,
  type SecurityNodeStatusObject,
} from "../../operator/src/kube/node-status.ts";
import { type Resource, SECURITY_NODE_STATUSES } from "../../operator/src/kube/resources.ts";
import {
  type Cluster,
  createNamespace,
  kubectlOk,
  startCluster,
  waitCrdsEstablished,
  waitFor,
} from "./operator-helpers.ts";

const GROUP = "kube-it.sluice.dev";
const WIDGETS: Resource = {
  group: GROUP,
  version: "v1",
  plural: "widgets",
  kind: "Widget",
  namespaced: true,
};
const crd = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.${GROUP}}
spec:
  group: ${GROUP}
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
          spec: {type: object, properties: {size: {type: integer}}}
          status: {type: object, properties: {phase: {type: string}, seen: {type: integer}}}
`;

interface Widget extends KubernetesObject {
  spec?: { size?: number };
  status?: { phase?: string; seen?: number };
}

describe("kube building blocks (real API server)", () => {
  let c: Cluster;
  const ns = "kube-it";

  before(async () => {
    c = await startCluster(["securitynodestatuses.yaml"]);
    await createNamespace(c.clients, ns);
    await kubectlOk(["apply", "-f", "-"], c.api.kubeconfigPath, crd);
    await waitCrdsEstablished(c.api.kubeconfigPath, [`widgets.${GROUP}`]);
  });
  after(async () => {
    await c?.stop();
  });

  const widget = (name: string, size: number) => ({
    apiVersion: `${GROUP}/v1`,
    kind: "Widget",
    metadata: { name, namespace: ns },
    spec: { size },
  });

  test("server-side apply creates and updates a custom object and its status subresource", async () => {
    await applyCustomObject(c.clients.custom, WIDGETS, widget("w0", 1), "sluice-test");
    await applyCustomObject(c.clients.custom, WIDGETS, widget("w0", 2), "sluice-test");
    const st = await applyCustomStatus(
      c.clients.custom,
      WIDGETS,
      { name: "w0", namespace: ns },
      { phase: "Ready", seen: 2 },
      "sluice-status",
    );
    const w = st as Widget & {
      metadata: { managedFields?: Array<{ manager: string; subresource?: string }> };
    };
    assert.equal(w.spec?.size, 2);
    assert.equal(w.status?.phase, "Ready");
    const managers = (w.metadata.managedFields ?? [])
      .map((m) => `${m.manager}:${m.subresource ?? ""}`)
      .sort();
    assert.deepEqual(managers, ["sluice-status:status", "sluice-test:"]);
    // A status apply cannot touch spec.
    await applyCustomStatus(
      c.clients.custom,
      WIDGETS,
      { name: "w0", namespace: ns },
      { phase: "Done" },
      "sluice-status",
    );
    const again = JSON.parse(
      await kubectlOk(["get", "widget", "w0", "-n", ns, "-o", "json"], c.api.kubeconfigPath),
    );
    assert.equal(again.spec.size, 2);
    assert.equal(again.status.phase, "Done");
    assert.equal(again.status.seen, undefined, "fields the manager stopped applying are removed");
  });

  test("informer: sync, events, and restart after a non-410 error (CRD deleted and recreated)", async () => {
    await applyCustomObject(c.clients.custom, WIDGETS, widget("w1", 1), "sluice-test");
    const errors: string[] = [];
    const inf = new Informer<Widget>(c.kc, WIDGETS, {
      namespace: ns,
      minBackoffMs: 100,
      maxBackoffMs: 400,
      onError: (d) => errors.push(d),
    });
    const added: string[] = [];
    inf.on("add", (w) => added.push(w.metadata?.name ?? ""));
    assert.equal(inf.hasSynced(), false);
    inf.start();
    await inf.waitForSync(10_000);
    assert.deepEqual(
      inf
        .list()
        .map((w) => w.metadata?.name)
        .sort(),
      ["w0", "w1"],
    );
    await applyCustomObject(c.clients.custom, WIDGETS, widget("w2", 1), "sluice-test");
    await waitFor("w2 in the cache", () => inf.get("w2", ns));

    // Deleting the CRD ends the watch; the re-watch gets 404: client-node's informer would stop here.
    await kubectlOk(["delete", `crd/widgets.${GROUP}`, "--wait=true"], c.api.kubeconfigPath);
    await waitFor("an informer error", () => errors.length > 0, 20_000);
    assert.ok(errors.every((e) => !/authorization|Bearer/i.test(e)));
    assert.ok(inf.consecutiveFailures >= 1);
    // The cache keeps the last good state while the resource is unavailable (what the agent needs).
    await kubectlOk(["apply", "-f", "-"], c.api.kubeconfigPath, crd);
    await waitCrdsEstablished(c.api.kubeconfigPath, [`widgets.${GROUP}`]);
    await waitFor("the CRD served again", async () => {
      try {
        await applyCustomObject(c.clients.custom, WIDGETS, widget("w3", 3), "sluice-test");
        return true;
      } catch {
        return false;
      }
    });
    await waitFor("w3 in the cache after the restart", () => inf.get("w3", ns), 20_000);
    await waitFor(
      "old objects gone",
      () =>
        inf
          .list()
          .map((w) => w.metadata?.name)
          .sort()
          .join() === "w3",
      20_000,
    );
    assert.ok(inf.restarts >= 1, `restarts: ${inf.restarts}`);
    assert.equal(inf.hasSynced(), true);
    await inf.stop();
    // After stop, no more restarts and no errors reported.
    const n = errors.length;
    await applyCustomObject(c.clients.custom, WIDGETS, widget("w4", 4), "sluice-test");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(errors.length, n);
    assert.equal(inf.get("w4", ns), undefined);
  });

  test("events: the same event is aggregated (count), a different one is a new Event", async () => {
    const rec = new EventRecorder(c.clients.core, { component: "sluice-test", instance: "it" });
    const ref = { apiVersion: "v1", kind: "Namespace", name: ns, uid: "u-1" };
    const n1 = await rec.record({ ...ref, namespace: ns }, "Warning", "Rejected", "bad thing");
    const n2 = await rec.record({ ...ref, namespace: ns }, "Warning", "Rejected", "bad thing");
    const n3 = await rec.record({ ...ref, namespace: ns }, "Warning", "Rejected", "other thing");
    assert.ok(n1);
    assert.equal(n1, n2);
    assert.notEqual(n1, n3);
    const list = await c.clients.core.listNamespacedEvent({
      namespace: ns,
      fieldSelector: "reason=Rejected",
    });
    const byMsg = new Map(list.items.map((e) => [e.message, e.count]));
    assert.equal(byMsg.get("bad thing"), 2);
    assert.equal(byMsg.get("other thing"), 1);
    // Cluster-scoped objects' events go to "default".
    const n4 = await rec.record({ apiVersion: "v1", kind: "Node", name: "node-x" }, "Normal", "Hello", "hi");
    assert.ok(n4);
    const def = await c.clients.core.readNamespacedEvent({ name: n4, namespace: "default" });
    assert.equal(def.involvedObject.name, "node-x");
  });

  test("node status: publishNodeStatus writes a bounded SecurityNodeStatus; the publisher writes on change only", async () => {
    await publishNodeStatus(c.clients, "node-a", {
      datapathVersion: "v1-test",
      endpoints: 3,
      enforced: [{ uid: "11111111-2222", generation: 4 }],
      errors: [{ policy: "SecurityPolicy/x/y", uid: "u", message: "m".repeat(2000) }],
      maxIdentity: 300,
    });
    const obj = (await c.clients.custom.getClusterCustomObject({
      group: SECURITY_NODE_STATUSES.group,
      version: SECURITY_NODE_STATUSES.version,
      plural: SECURITY_NODE_STATUSES.plural,
      name: "node-a",
    })) as SecurityNodeStatusObject;
    assert.equal(obj.status?.datapathVersion, "v1-test");
    assert.equal(obj.status?.policySetHash, policySetHash([{ uid: "11111111-2222", generation: 4 }]));
    assert.equal(obj.status?.policyCount, 1);
    assert.deepEqual(obj.status?.recentPolicies, {}, "no change since the node started");
    assert.equal(obj.status?.errors?.[0].message.length, 256);
    const table = await kubectlOk(["get", "securitynodestatuses"], c.api.kubeconfigPath);
    assert.match(table, /DATAPATH\s+ENDPOINTS\s+POLICIES/);
    assert.match(table, /node-a\s+v1-test\s+3\s+1/);

    const pub = new NodeStatusPublisher(c.clients, "node-b", { minIntervalMs: 20, heartbeatMs: 60_000 });
    const summary = { datapathVersion: "v1", endpoints: 1, enforced: [{ uid: "p", generation: 1 }] };
    pub.update(summary);
    await waitFor("first write", () => pub.writes === 1);
    pub.update(summary);
    pub.update({ ...summary });
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(pub.writes, 1, "unchanged content is not written again");
    pub.update({ ...summary, enforced: [{ uid: "p", generation: 2 }] });
    await waitFor("second write", () => pub.writes === 2);
    const get = async () =>
      (await c.clients.custom.getClusterCustomObject({
        group: SECURITY_NODE_STATUSES.group,
        version: SECURITY_NODE_STATUSES.version,
        plural: SECURITY_NODE_STATUSES.plural,
        name: "node-b",
      })) as SecurityNodeStatusObject;
    const written = await get();
    assert.deepEqual(written.status?.recentPolicies, { p: 2 }, "the change is listed");
    // The heartbeat: lastSyncTime alone, by merge patch; the report stays as it was.
    await new Promise((r) => setTimeout(r, 1100));
    await pub.flush(false, true);
    assert.equal(pub.heartbeats, 1);
    assert.equal(pub.writes, 2, "an unchanged report is not applied again");
    const beat = await get();
    assert.ok((beat.status?.lastSyncTime ?? "") > (written.status?.lastSyncTime ?? ""), "lastSyncTime moved");
    assert.deepEqual({ ...beat.status, lastSyncTime: "" }, { ...written.status, lastSyncTime: "" });
    // A write the node's maps refused whole: the last good report with the error, until a pass succeeds.
    const full = {
      reason: "CapacityExceeded" as const,
      needed: 129,
      capacity: 128,
      message: "the node's ipcache map is full: the desired state needs 129 entries, it holds 128",
    };
    pub.writeFailed(full);
    await waitFor("the failure's write", () => pub.writes === 3);
    const failed = await get();
    assert.deepEqual(failed.status?.errors, [full]);
    assert.deepEqual(failed.status?.recentPolicies, { p: 2 }, "what the maps still hold");
    assert.equal(failed.status?.lastSyncTime, written.status?.lastSyncTime, "when the maps last synced");
    pub.update({ ...summary, enforced: [{ uid: "p", generation: 2 }] });
    await waitFor("the recovery's write", () => pub.writes === 4);
    assert.deepEqual((await get()).status?.errors, []);
    pub.stop();
  });
});
