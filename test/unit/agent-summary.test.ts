// Pure pieces of the Kubernetes agent: which identities count, and what a node reports.
import assert from "node:assert/strict";
import { test } from "node:test";
import { enforcementSummary } from "../../operator/src/agent/kube-agent.ts";
import { liveIdentities } from "../../operator/src/identity/live.ts";
import { classifyObjects } from "../../operator/src/api/objects.ts";

const sid = (n: number, labels: Record<string, string>, tombstone = false) => ({
  apiVersion: "sluice.dev/v1alpha1",
  kind: "SecurityIdentity",
  metadata: { name: String(n), labels: tombstone ? { "sluice.dev/tombstone": "true" } : {} },
  spec: { labels },
});

test("a label set resolves to its lowest live identity; tombstones never count", () => {
  const o = classifyObjects([
    sid(300, { app: "a" }),
    sid(257, { app: "a" }),
    sid(256, { app: "b" }, true),
    sid(258, { app: "b" }),
  ]);
  const live = liveIdentities(o.securityIdentities)
    .map((i) => i.metadata.name)
    .sort();
  assert.deepEqual(live, ["257", "258"]);
});

test("the node reports every compiled policy at its generation, failed ones as errors", () => {
  const np = (name: string, uid: string, generation: number) => ({
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name, namespace: "shop", uid, generation },
    spec: { podSelector: {} },
  });
  const o = classifyObjects([np("ok", "u1", 3), np("bad", "u2", 1)]);
  const s = enforcementSummary(o, [
    { reason: "InvalidPolicy", policies: ["NetworkPolicy/shop/bad"], message: "bad port" },
  ]);
  assert.deepEqual(s.enforced, [{ uid: "u1", generation: 3 }]);
  assert.deepEqual(s.errors, [{ policy: "NetworkPolicy/shop/bad", uid: "u2", message: "bad port" }]);
});

test("an endpoint that fails closed: one error per policy selecting it, with the numbers", () => {
  const np = (name: string, uid: string) => ({
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name, namespace: "shop", uid, generation: 1 },
    spec: { podSelector: {} },
  });
  const o = classifyObjects([np("big", "u1"), np("small", "u2"), np("other", "u3")]);
  const message =
    "endpoint shop/db needs 70 policy entries, more than the 64 one endpoint may have; it fails closed";
  const s = enforcementSummary(o, [
    {
      reason: "Overflow",
      policies: ["NetworkPolicy/shop/big", "NetworkPolicy/shop/small"],
      endpoint: "shop/db",
      needed: 70,
      capacity: 64,
      message,
    },
  ]);
  assert.deepEqual(s.enforced, [{ uid: "u3", generation: 1 }]);
  const common = { message, reason: "CapacityExceeded", endpoint: "shop/db", needed: 70, capacity: 64 };
  assert.deepEqual(s.errors, [
    { policy: "NetworkPolicy/shop/big", uid: "u1", ...common },
    { policy: "NetworkPolicy/shop/small", uid: "u2", ...common },
  ]);
});
