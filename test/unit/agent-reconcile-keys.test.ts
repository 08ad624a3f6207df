// The Kubernetes agent's keyed reconcile, pure parts: which keys an event dirties, and that recording
// the changed objects and recompiling only those keys gives what a full compile gives, pass after
// pass; a key reconciled twice changes nothing the second time.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  ALL_KEY,
  endpointKey,
  endpointOfKey,
  keysForEvent,
  NODE_KEY,
  type WatchedObject,
} from "../../operator/src/agent/reconcile-keys.ts";
import { staleInterfaces } from "../../operator/src/agent/link-check.ts";
import { nodePodView } from "../../operator/src/kube/cache-view.ts";
import type { Namespace, NetworkPolicy, Node, Pod } from "../../operator/src/api/k8s.ts";
import { emptyObjects } from "../../operator/src/api/objects.ts";
import type { SecurityIdentity } from "../../operator/src/api/types.generated.ts";
import { compile, IncrementalCompiler, inputsFromObjects } from "../../operator/src/policy/index.ts";
import { isEmptyDelta } from "../../operator/src/policy/diff.ts";
import { ENFORCEMENT_ANNOTATION } from "../../operator/src/policy/enforcement.ts";
import type { Identity } from "../../operator/src/identity/static.ts";
import type { Change } from "../../operator/src/policy/incremental.ts";
import {
  asObjects,
  cluster,
  clusterPolicy,
  networkPolicy,
  ns,
  pod,
  securityPolicy,
} from "./policy-fixtures.ts";

const web = pod("a", "web", { app: "web" }, "10.0.0.1", "n1", [{ name: "http", containerPort: 8080 }]);
const db = pod("a", "db", { app: "db" }, "10.0.0.2", "n1");
const other = pod("b", "api", { app: "api" }, "10.0.0.3", "n1");
const remote = pod("a", "far", { app: "web" }, "10.0.1.1", "n2");
const base = [ns("a", { team: "x" }), ns("b", { team: "y" }), web, db, other, remote];

function np(name: string, app: string, port: number): NetworkPolicy {
  return {
    kind: "NetworkPolicy",
    metadata: { name, namespace: "a", generation: 1 },
    spec: { podSelector: { matchLabels: { app } }, ingress: [{ ports: [{ port }] }] },
  };
}

function compiled(objects: unknown[]) {
  return new IncrementalCompiler(inputsFromObjects(objects), { node: "n1" });
}

function view(inc: IncrementalCompiler) {
  return { node: "n1", endpoints: inc.localEndpoints };
}

const sorted = (xs: string[]) => [...xs].sort();

test("keys: a policy edit names the endpoints its old or new version selects, and the node", () => {
  const inc = compiled([...base, np("p", "web", 80)]);
  const old = inc.object("NetworkPolicy", "a", "p") as WatchedObject;
  assert.deepEqual(sorted(keysForEvent({ old, current: np("p", "web", 81) }, view(inc))), [
    "ep:a/web",
    NODE_KEY,
  ]);
  // Moving the policy from web to db touches both; a/far is not local, b/api is in another namespace.
  assert.deepEqual(sorted(keysForEvent({ old, current: np("p", "db", 80) }, view(inc))), [
    "ep:a/db",
    "ep:a/web",
    NODE_KEY,
  ]);
  assert.deepEqual(sorted(keysForEvent({ old }, view(inc))), ["ep:a/web", NODE_KEY]);
  assert.deepEqual(sorted(keysForEvent({ current: np("q", "none", 80) }, view(inc))), [NODE_KEY]);
  // Status or metadata only: the spec is what the compiler reads.
  const statusOnly = {
    ...np("p", "web", 80),
    metadata: { name: "p", namespace: "a", generation: 1, uid: "u2" },
  };
  assert.deepEqual(keysForEvent({ old, current: statusOnly }, view(inc)), []);
  // ...except the audit annotation: a NetworkPolicy's mode is metadata, and no new generation.
  const audited = {
    ...np("p", "web", 80),
    metadata: { ...statusOnly.metadata, annotations: { [ENFORCEMENT_ANNOTATION]: "Audit" } },
  };
  assert.deepEqual(sorted(keysForEvent({ old, current: audited }, view(inc))), ["ep:a/web", NODE_KEY]);
  assert.deepEqual(sorted(keysForEvent({ old: audited, current: statusOnly }, view(inc))), [
    "ep:a/web",
    NODE_KEY,
  ]);
});

test("keys: pods count only through what the compiler reads", () => {
  const inc = compiled(base);
  const withStatus: Pod = { ...web, status: { ...web.status, phase: "Running" } };
  assert.deepEqual(keysForEvent({ old: web, current: withStatus }, view(inc)), []);
  const relabelled: Pod = { ...web, metadata: { ...web.metadata, labels: { app: "db" } } };
  assert.deepEqual(sorted(keysForEvent({ old: web, current: relabelled }, view(inc))), [
    "ep:a/web",
    NODE_KEY,
  ]);
  // A pod on another node: the ipcache only.
  const moved: Pod = { ...remote, status: { podIP: "10.0.1.9", podIPs: [{ ip: "10.0.1.9" }] } };
  assert.deepEqual(keysForEvent({ old: remote, current: moved }, view(inc)), [NODE_KEY]);
  // A new local pod has no endpoint yet: its own key brings it in.
  const fresh = pod("a", "new", { app: "web" }, "10.0.0.9", "n1");
  assert.deepEqual(sorted(keysForEvent({ current: fresh }, view(inc))), ["ep:a/new", NODE_KEY]);
  assert.deepEqual(sorted(keysForEvent({ old: db }, view(inc))), ["ep:a/db", NODE_KEY]);
});

test("keys: a Node's addresses and labels (node peers) are the node's; its status heartbeat is nothing", () => {
  const inc = compiled(base);
  const n: Node = {
    kind: "Node",
    metadata: { name: "n2", labels: { role: "worker" } },
    status: { addresses: [{ type: "InternalIP", address: "172.18.0.2" }] },
  };
  const beat: Node = { ...n, metadata: { ...n.metadata, uid: "u2" } };
  assert.deepEqual(keysForEvent({ old: n, current: beat }, view(inc)), []);
  const relabelled: Node = { ...n, metadata: { ...n.metadata, labels: { role: "infra" } } };
  assert.deepEqual(keysForEvent({ old: n, current: relabelled }, view(inc)), [NODE_KEY]);
  const moved: Node = { ...n, status: { addresses: [{ type: "InternalIP", address: "172.18.0.9" }] } };
  assert.deepEqual(keysForEvent({ old: n, current: moved }, view(inc)), [NODE_KEY]);
});

test("keys: namespace labels name the endpoints in it; identities name every endpoint", () => {
  const inc = compiled(base);
  const a = inc.object("Namespace", undefined, "a") as Namespace;
  assert.deepEqual(
    keysForEvent({ old: a, current: { ...a, metadata: { ...a.metadata, uid: "u2" } } }, view(inc)),
    [],
  );
  const relabelled: Namespace = { ...a, metadata: { ...a.metadata, labels: { team: "z" } } };
  assert.deepEqual(sorted(keysForEvent({ old: a, current: relabelled }, view(inc))), [
    "ep:a/db",
    "ep:a/web",
    NODE_KEY,
  ]);
  const id: SecurityIdentity = {
    apiVersion: "sluice.dev/v1alpha1",
    kind: "SecurityIdentity",
    metadata: { name: "300" },
    spec: { labels: { app: "web" } },
  } as SecurityIdentity;
  assert.deepEqual(sorted(keysForEvent({ current: id }, view(inc))), [
    "ep:a/db",
    "ep:a/web",
    "ep:b/api",
    NODE_KEY,
  ]);
  assert.equal(endpointOfKey(endpointKey("a/web")), "a/web");
  assert.equal(endpointOfKey(NODE_KEY), undefined);
  assert.equal(endpointOfKey(ALL_KEY), undefined);
});

test("keyed recompile: a policy edit recompiles and changes only the endpoints it selects", () => {
  const inc = compiled([...base, np("p", "web", 80), np("q", "db", 5432)]);
  const old = inc.object("NetworkPolicy", "a", "p") as WatchedObject;
  const next = np("p", "web", 81);
  const keys = keysForEvent({ old, current: next }, view(inc));
  inc.record({ type: "upsert", object: next });
  const r = inc.recompile(keys.map(endpointOfKey).filter((k) => k !== undefined));
  assert.deepEqual(r.recompiled, ["a/web"]);
  assert.equal(r.universeRebuilt, false);
  assert.deepEqual(
    r.delta.endpoints.map((d) => d.key),
    ["a/web"],
  );
  assert.deepEqual(inc.state, compile(inc.inputs(), { node: "n1" }).state);
  // Idempotent: the same keys again compile to the same state and change nothing.
  const again = inc.recompile(["a/web"]);
  assert.ok(isEmptyDelta(again.delta), "a second reconcile of the key writes nothing");
});

// A compiler over the objects whose identities lack those `later` picks (not allocated yet), and the
// inputs with every identity.
function allocatedLater(objects: unknown[], later: (i: Identity) => boolean) {
  const inputs = inputsFromObjects(objects);
  const identities = inputs.identities.filter((i) => !later(i));
  return { inputs, inc: new IncrementalCompiler({ ...inputs, identities }, { node: "n1" }) };
}

test("keyed recompile: a new identity recompiles the endpoints with a rule that reaches it, and its own", () => {
  // web admits api pods of any namespace; db admits anyone (a wildcard peer gives no identity its own
  // entries). b/api's identity is not allocated yet.
  const fromApi: NetworkPolicy = {
    kind: "NetworkPolicy",
    metadata: { name: "from-api", namespace: "a", generation: 1 },
    spec: {
      podSelector: { matchLabels: { app: "web" } },
      ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: "api" } } }] }],
    },
  };
  const isApi = (i: Identity) => i.labels.app === "api";
  const { inputs, inc } = allocatedLater([...base, fromApi, np("p", "db", 80)], isApi);
  assert.equal(inputs.identities.filter(isApi).length, 1);
  inc.setIdentities(inputs.identities);
  const r = inc.recompile([]);
  assert.ok(r.peersChanged);
  assert.deepEqual(sorted(r.recompiled), ["a/web", "b/api"]);
  assert.deepEqual(inc.state, compile(inc.inputs(), { node: "n1" }).state);
  assert.ok(isEmptyDelta(inc.recompile(["a/web", "a/db"]).delta));
  // A new identity no rule reaches (a label set of no local endpoint's peers): nothing recompiles.
  inc.setIdentities([
    ...inputs.identities,
    { id: 90000, labels: { app: "batch", "io.kubernetes.pod.namespace": "c" } },
  ]);
  const quiet = inc.recompile([]);
  assert.ok(quiet.peersChanged);
  assert.deepEqual(quiet.recompiled, []);
  assert.deepEqual(inc.state, compile(inc.inputs(), { node: "n1" }).state);
});

test("keyed recompile: a new identity with named ports recompiles the endpoints whose egress names a port to anyone", () => {
  // db may reach "http" on any peer: each peer with a port of that name gets entries of its own.
  const toHttp: NetworkPolicy = {
    kind: "NetworkPolicy",
    metadata: { name: "to-http", namespace: "a", generation: 1 },
    spec: {
      podSelector: { matchLabels: { app: "db" } },
      policyTypes: ["Egress"],
      egress: [{ ports: [{ port: "http" }] }],
    },
  };
  const cache = pod("b", "cache", { app: "cache" }, "10.0.1.9", "n2", [
    { name: "http", containerPort: 6379 },
  ]);
  const { inputs, inc } = allocatedLater([...base, cache, toHttp], (i) => i.labels.app === "cache");
  inc.setIdentities(inputs.identities);
  const r = inc.recompile([]);
  assert.deepEqual(r.recompiled, ["a/db"]);
  assert.ok(r.delta.endpoints.some((d) => d.key === "a/db" && d.upsert.some((e) => e.port === 6379)));
  assert.deepEqual(inc.state, compile(inc.inputs(), { node: "n1" }).state);
});

test("keyed recompile: a namespace relabelled, new object or in place, moves its peer pods to their new identity", () => {
  const far = nodePodView("n1")(pod("a", "far", { app: "web" }, "10.0.1.1", "n2"));
  assert.ok(Object.isFrozen(far.metadata.labels), "a peer's labels are shared and frozen");
  const objects = [ns("a", { team: "x" }), far, web];
  // Identities for both label sets the namespace can give its pods, allocated up front.
  const identities = inputsFromObjects([ns("a", { team: "x" }), far]).identities.concat(
    inputsFromObjects([ns("a", { team: "y" }), far]).identities.map((i) => ({ ...i, id: i.id + 1000 })),
  );
  const inc = new IncrementalCompiler({ ...inputsFromObjects(objects), identities }, { node: "n1" });
  const idOf = () => inc.state.ipcache.find((e) => e.cidr === "10.0.1.1/32")?.identity;
  const first = idOf();
  assert.ok(first !== undefined);
  const inPlace = inc.object("Namespace", undefined, "a") as Namespace;
  inPlace.metadata.labels = { ...inPlace.metadata.labels, team: "y" };
  inc.record({ type: "upsert", object: inPlace });
  inc.recompile([]);
  assert.notEqual(idOf(), first);
  assert.deepEqual(inc.state, compile(inc.inputs(), { node: "n1" }).state);
  // Changed where it is (the same labels object): the memo must not trust it.
  const labels = inc.object("Namespace", undefined, "a")?.metadata.labels as Record<string, string>;
  labels.team = "x";
  inc.record({ type: "upsert", object: inc.object("Namespace", undefined, "a")! });
  inc.recompile([]);
  assert.equal(idOf(), first);
  assert.deepEqual(inc.state, compile(inc.inputs(), { node: "n1" }).state);
});

// Events the agent sees: object upserts and deletes, and identity set changes.
type Ev = { change: Change } | { identities: true } | { relabelInPlace: { n: string; team: string } };
const event = fc.oneof(
  networkPolicy(0).map((o): Ev => ({ change: { type: "upsert", object: o } })),
  networkPolicy(5).map((o): Ev => ({ change: { type: "upsert", object: o } })),
  securityPolicy(0).map((o): Ev => ({ change: { type: "upsert", object: o } })),
  clusterPolicy(0).map((o): Ev => ({ change: { type: "upsert", object: o } })),
  fc.constantFrom("a", "b").map(
    (n): Ev => ({
      change: {
        type: "delete",
        object: { kind: "NetworkPolicy", metadata: { name: "np0", namespace: n }, spec: { podSelector: {} } },
      },
    }),
  ),
  fc
    .record({
      app: fc.constantFrom("web", "db", "api"),
      n: fc.constantFrom("n1", "n2"),
      name: fc.constantFrom("p0", "q1"),
    })
    .map(
      (p): Ev => ({
        change: {
          type: "upsert",
          object: pod("a", p.name, { app: p.app }, p.name === "p0" ? "10.0.2.77" : "10.0.1.78", p.n, [
            { name: "http", containerPort: 8080 },
          ]),
        },
      }),
    ),
  fc
    .constantFrom("p0", "p1", "q1")
    .map((name): Ev => ({ change: { type: "delete", object: pod("a", name, {}, "10.0.0.1") } })),
  fc
    .record({ n: fc.constantFrom("a", "b"), team: fc.constantFrom("x", "y", "z") })
    .map((x): Ev => ({ change: { type: "upsert", object: ns(x.n, { team: x.team }) } })),
  fc
    .record({ n: fc.constantFrom("a", "b"), team: fc.constantFrom("x", "y", "z") })
    .map((x): Ev => ({ relabelInPlace: x })),
  fc.constant<Ev>({ identities: true }),
);

const fakeIdentity = {
  kind: "SecurityIdentity",
  metadata: { name: "999" },
  spec: { labels: {} },
} as WatchedObject;

// As cached: plain objects, or pods as the agent's informer keeps them (peers with shared, frozen
// labels, which the compiler's universe memo keys on).
const asCached: Record<string, <T>(o: T) => T> = {
  plain: <T>(o: T): T => o,
  "agent views": <T>(o: T): T =>
    (o as { kind?: string }).kind === "Pod" ? (nodePodView("n1")(o as never) as T) : o,
};

for (const [variant, cached] of Object.entries(asCached))
  test(`keyed recompile == full compile after every batch of events (${variant}); every key twice writes nothing`, () => {
    fc.assert(
      fc.property(
        cluster,
        fc.array(fc.array(event, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 4 }),
        (c, batches) => {
          const objects = asObjects(c);
          const inc = new IncrementalCompiler(
            inputsFromObjects({ ...objects, pods: objects.pods.map(cached) }),
            {
              node: "n1",
            },
          );
          for (const batch of batches) {
            // As the agent: map every event against the compiler as it is before the pass, then record
            // the objects' final versions (what the caches hold when the pass runs).
            const keys = new Set<string>();
            const last = new Map<string, Change>();
            let identities = false;
            for (const e of batch) {
              if ("relabelInPlace" in e) {
                // A namespace object changed where it is, then recorded: no pod label key may be reused.
                const cur = inc.object("Namespace", undefined, e.relabelInPlace.n);
                if (!cur?.metadata.labels) continue;
                cur.metadata.labels.team = e.relabelInPlace.team;
                for (const k of keysForEvent({ current: cur as WatchedObject }, view(inc))) keys.add(k);
                last.set(`Namespace/${e.relabelInPlace.n}`, { type: "upsert", object: cur });
                continue;
              }
              if ("identities" in e) {
                identities = true;
                for (const k of keysForEvent({ current: fakeIdentity }, view(inc))) keys.add(k);
                continue;
              }
              const o = cached(e.change.object);
              const old = inc.object(o.kind, o.metadata.namespace, o.metadata.name ?? "") as
                | WatchedObject
                | undefined;
              const current = e.change.type === "upsert" ? (o as WatchedObject) : undefined;
              for (const k of keysForEvent({ old, current }, view(inc))) keys.add(k);
              last.set(`${o.kind}/${o.metadata.namespace}/${o.metadata.name}`, {
                type: e.change.type,
                object: o,
              });
            }
            for (const ch of last.values()) inc.record(ch);
            // The operator's allocation for the label sets present now.
            if (identities)
              inc.setIdentities(
                inputsFromObjects({
                  ...emptyObjects(),
                  namespaces: [...inc.inputs().namespaces],
                  pods: [...inc.inputs().pods],
                }).identities,
              );
            const eps = [...keys].map(endpointOfKey).filter((k) => k !== undefined);
            inc.recompile(eps);
            const full = compile(inc.inputs(), { node: "n1" });
            assert.deepEqual(inc.state, full.state);
            assert.deepEqual(inc.errors, full.errors);
            const again = inc.recompile(inc.localEndpoints.map((e) => e.key));
            assert.ok(isEmptyDelta(again.delta), "reconciling every key again writes nothing");
          }
        },
      ),
      { numRuns: 150 },
    );
  });

test("link check: a cached interface whose name lost its ifindex is stale", () => {
  const cached: [string, { ifname: string; ifindex: number } | undefined][] = [
    ["a/web", { ifname: "veth1", ifindex: 7 }],
    ["a/db", { ifname: "veth2", ifindex: 8 }],
    ["a/gone", { ifname: "veth3", ifindex: 9 }],
    ["a/pending", undefined],
  ];
  const links = new Map([
    ["veth1", 7],
    ["veth2", 12],
  ]);
  assert.deepEqual(staleInterfaces(cached, links), ["a/db", "a/gone"]);
});

test("SIG Network's kinds: a policy event keys the endpoints it selects; a status write keys nothing", () => {
  const view = {
    node: "n1",
    endpoints: [
      {
        key: "shop/db",
        labels: { namespace: "shop", namespaceLabels: { team: "shop" }, podLabels: { app: "db" } },
      },
      {
        key: "shop/web",
        labels: { namespace: "shop", namespaceLabels: { team: "shop" }, podLabels: { app: "web" } },
      },
    ],
  };
  const cnp = {
    apiVersion: "policy.networking.k8s.io/v1alpha2",
    kind: "ClusterNetworkPolicy",
    metadata: { name: "db", generation: 1 },
    spec: {
      tier: "Admin",
      priority: 1,
      subject: { pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: "db" } } } },
      ingress: [{ action: "Deny", from: [{ namespaces: {} }] }],
    },
  } as unknown as WatchedObject;
  assert.deepEqual(keysForEvent({ current: cnp }, view), [NODE_KEY, endpointKey("shop/db")]);
  // Deleted (by kubectl, or with its CRD): the endpoints it selected.
  assert.deepEqual(keysForEvent({ old: cnp }, view), [NODE_KEY, endpointKey("shop/db")]);
  const withStatus = { ...cnp, status: { conditions: [] } } as WatchedObject;
  assert.deepEqual(keysForEvent({ old: cnp, current: withStatus }, view), []);
  const banp = {
    apiVersion: "policy.networking.k8s.io/v1alpha1",
    kind: "BaselineAdminNetworkPolicy",
    metadata: { name: "default" },
    spec: { subject: { namespaces: {} }, ingress: [{ action: "Deny", from: [{ namespaces: {} }] }] },
  } as unknown as WatchedObject;
  assert.deepEqual(keysForEvent({ current: banp }, view), [
    NODE_KEY,
    endpointKey("shop/db"),
    endpointKey("shop/web"),
  ]);
});
