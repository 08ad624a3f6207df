// The agent's desired-state cache: after every keyed recompile it gives what desiredState() gives for
// the whole state, rebuilding only the endpoints the compiler touched; cross-endpoint conflicts are
// still refused.
import assert from "node:assert/strict";
import { test } from "node:test";
import { DesiredStateCache } from "../../operator/src/agent/desired-cache.ts";
import type { NetworkPolicy } from "../../operator/src/api/k8s.ts";
import { desiredState } from "../../operator/src/datapath/writer/sync-plan.ts";
import { IncrementalCompiler, inputsFromObjects } from "../../operator/src/policy/index.ts";
import { ns, pod } from "./policy-fixtures.ts";

function np(name: string, app: string, port: number): NetworkPolicy {
  return {
    kind: "NetworkPolicy",
    metadata: { name, namespace: "a" },
    spec: { podSelector: { matchLabels: { app } }, ingress: [{ ports: [{ port }] }] },
  };
}

const ifindexOf = (ep: { id: number }) => 100 + (ep.id % 1000);

test("the cache equals desiredState after each change and rebuilds only what changed", () => {
  const objects = [
    ns("a"),
    pod("a", "web", { app: "web" }, "10.0.0.1"),
    pod("a", "db", { app: "db" }, "10.0.0.2"),
    pod("a", "api", { app: "api" }, "10.0.0.3"),
    np("p", "web", 80),
  ];
  const inc = new IncrementalCompiler(inputsFromObjects(objects), { node: "n1" });
  const cache = new DesiredStateCache();
  const same = () => assert.deepEqual(cache.build(inc.state, ifindexOf), desiredState(inc.state, ifindexOf));
  same();
  assert.equal(cache.rebuilt, 3);
  same();
  assert.equal(cache.rebuilt, 0, "nothing changed: nothing rebuilt");

  inc.record({ type: "upsert", object: np("p", "web", 81) });
  inc.recompile(["a/web"]);
  same();
  assert.equal(cache.rebuilt, 1, "one policy edit: one endpoint rebuilt");

  inc.record({ type: "upsert", object: pod("a", "new", { app: "web" }, "10.0.0.4") });
  inc.record({ type: "delete", object: pod("a", "api", {}, "10.0.0.3") });
  inc.recompile(["a/new", "a/api"]);
  same();
  assert.equal(cache.rebuilt, 1, "the new endpoint only; the removed one is dropped");

  // An endpoint without an interface is pending, as desiredState reports it.
  const pendingOf = (ep: { key: string; id: number }) => (ep.key === "a/db" ? undefined : ifindexOf(ep));
  assert.deepEqual(cache.build(inc.state, pendingOf), desiredState(inc.state, pendingOf));
});

test("two endpoints on one interface are refused, as desiredState refuses them", () => {
  const inc = new IncrementalCompiler(
    inputsFromObjects([
      ns("a"),
      pod("a", "web", { app: "web" }, "10.0.0.1"),
      pod("a", "db", { app: "db" }, "10.0.0.2"),
    ]),
    { node: "n1" },
  );
  const cache = new DesiredStateCache();
  assert.throws(() => cache.build(inc.state, () => 7), /ifindex 7 already used/);
  assert.throws(() => desiredState(inc.state, () => 7), /ifindex 7 already used/);
});
