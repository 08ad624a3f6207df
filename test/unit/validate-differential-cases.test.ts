// Fixed cases from test/integration/validate-differential.test.ts: each object is one where `sluice
// validate` and the API server (Kubernetes 1.37, kubectl apply's create with fieldValidation=Strict)
// disagreed, or a rule of the API server's that the generator exercises; the expected verdict and
// fields are what the API server answered. `null` means the API server accepts the object.
import assert from "node:assert/strict";
import { test } from "node:test";
import { validateManifests } from "../../operator/src/cli/validate.ts";

type Json = Record<string, unknown>;
const np = (spec: unknown, metadata: Json = { name: "p", namespace: "a" }): Json => ({
  apiVersion: "networking.k8s.io/v1",
  kind: "NetworkPolicy",
  metadata,
  ...(spec === undefined ? {} : { spec }),
});
const sp = (spec: Json, metadata: Json = { name: "s", namespace: "a" }): Json => ({
  apiVersion: "sluice.dev/v1alpha1",
  kind: "SecurityPolicy",
  metadata,
  spec: { endpointSelector: {}, ...spec },
});
const csp = (spec: Json, metadata: Json = { name: "c" }): Json => ({
  apiVersion: "sluice.dev/v1alpha1",
  kind: "ClusterSecurityPolicy",
  metadata,
  spec: { tier: "Admin", priority: 1, endpointSelector: {}, ...spec },
});

const CASES: Array<{ what: string; object: unknown; fields: string[] | null }> = [
  // Disagreements the differential test found, now fixed.
  { what: "NetworkPolicy without spec (Go zero value)", object: np(undefined), fields: null },
  { what: "NetworkPolicy spec: null", object: np(null), fields: null },
  { what: "NetworkPolicy podSelector: null", object: np({ podSelector: null }), fields: null },
  {
    what: "an unknown field whose value is null",
    object: np({ ingress: [{ ports: [{}], extra: null }] }),
    fields: ["spec.ingress[0].extra"],
  },
  {
    what: "an unknown metadata field",
    object: np({}, { name: "p", status: null }),
    fields: ["metadata.status"],
  },
  {
    what: "CRD: an object where the schema has a string: its keys are unknown fields",
    object: sp({ ingress: [{ cidrs: [{ cidr: { zz: 1 } }] }] }),
    fields: ["spec.ingress[0].cidrs[0].cidr.zz"],
  },
  {
    what: "CRD: an object where the schema has a list",
    object: sp({ egress: [{ ports: { podselector: {} } }] }),
    fields: ["spec.egress[0].ports.podselector"],
  },
  {
    what: "CRD: CEL rules run beside a value error (minimum)",
    object: sp({ ingress: [{ ports: [{ protocol: "ICMP", type: 3, endPort: 0, port: 65536 }] }] }),
    fields: [
      "spec.ingress[0].ports[0].endPort",
      "spec.ingress[0].ports[0].endPort",
      "spec.ingress[0].ports[0].port",
      "spec.ingress[0].ports[0].port",
    ],
  },
  {
    what: "a plural policy kind in a group that serves nothing",
    object: { ...np({}), apiVersion: "extensions/v1beta1", kind: "NetworkPolicies" },
    fields: ["apiVersion"],
  },
  // The API server's NetworkPolicy rules.
  {
    what: "ipBlock beside a selector",
    object: np({ ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8" }, podSelector: {} }] }] }),
    fields: ["spec.ingress[0].from[0]"],
  },
  { what: "an empty peer", object: np({ egress: [{ to: [null] }] }), fields: ["spec.egress[0].to[0]"] },
  {
    what: "NetworkPolicy CIDRs: host bits, leading zeros, mapped IPv6, not a strict subset",
    object: np({
      egress: [
        {
          to: [
            { ipBlock: { cidr: "10.0.0.1/8" } },
            {
              ipBlock: { cidr: "10.0.0.0/8", except: ["10.0.0.0/8", "010.2.0.0/16", "::ffff:10.0.0.0/104"] },
            },
          ],
        },
      ],
    }),
    fields: [
      "spec.egress[0].to[0].ipBlock.cidr",
      "spec.egress[0].to[1].ipBlock.except[0]",
      "spec.egress[0].to[1].ipBlock.except[1]",
      "spec.egress[0].to[1].ipBlock.except[2]",
      "spec.egress[0].to[1].ipBlock.except[2]",
    ],
  },
  {
    what: "NetworkPolicy ports: endPort rules, port names, protocol",
    object: np({
      ingress: [
        {
          ports: [
            { port: "http", endPort: 90 },
            { endPort: 90 },
            { port: 90, endPort: 80 },
            { port: "80" },
            { port: "http", protocol: "ICMP" },
          ],
        },
      ],
    }),
    fields: [
      "spec.ingress[0].ports[0].endPort",
      "spec.ingress[0].ports[1].endPort",
      "spec.ingress[0].ports[2].endPort",
      "spec.ingress[0].ports[3].port",
      "spec.ingress[0].ports[4].protocol",
    ],
  },
  {
    what: "NetworkPolicy selectors: label keys and values, operators, values rules, policyTypes",
    object: np({
      podSelector: {
        matchLabels: { "a/b/c": "x" },
        matchExpressions: [
          { key: "k", operator: "Equals" },
          { key: "k", operator: "In" },
          { key: "k", operator: "Exists", values: ["x"] },
          { key: "k", operator: "In", values: ["x y"] },
        ],
      },
      policyTypes: ["ingress"],
    }),
    fields: [
      "spec.podSelector.matchLabels",
      "spec.podSelector.matchExpressions[0].operator",
      "spec.podSelector.matchExpressions[1].values",
      "spec.podSelector.matchExpressions[2].values",
      "spec.podSelector.matchExpressions[3].values[0]",
      "spec.policyTypes[0]",
    ],
  },
  {
    what: "a wrong JSON type (decoding)",
    object: np({ ingress: [{ ports: [{ port: 1.5 }] }] }),
    fields: ["spec.ingress[0].ports[0].port"],
  },
  // What the CRDs do not check, the API server accepts.
  {
    what: "SecurityPolicy: label key syntax is not checked",
    object: sp({ endpointSelector: { matchLabels: { "a/b/c": "x y" } } }),
    fields: null,
  },
  {
    what: "SecurityPolicy: CEL isCIDR allows host bits",
    object: sp({ ingress: [{ cidrs: [{ cidr: "10.0.0.1/8" }] }] }),
    fields: null,
  },
  {
    what: "ClusterSecurityPolicy: a namespace is dropped",
    object: csp({}, { name: "c", namespace: "Not_A_Label" }),
    fields: null,
  },
  // ObjectMeta, kind and apiVersion.
  { what: "metadata.name", object: np({}, { name: "A_b", namespace: "a" }), fields: ["metadata.name"] },
  {
    what: "metadata.namespace",
    object: sp({}, { name: "s", namespace: "Bad_ns" }),
    fields: ["metadata.namespace"],
  },
  {
    what: "metadata.labels",
    object: csp({}, { name: "c", labels: { k: "bad value" } }),
    fields: ["metadata.labels"],
  },
  { what: "a misspelled policy kind", object: { ...np({}), kind: "NetworkPolcy" }, fields: ["kind"] },
  {
    what: "a policy kind at the wrong version",
    object: { ...np({}), apiVersion: "networking.k8s.io/v2" },
    fields: ["apiVersion"],
  },
  {
    what: "a Sluice kind that does not exist",
    object: { ...sp({}), kind: "SecurityPolicys" },
    fields: ["kind"],
  },
];

test("fixed differential cases: validate's verdict and fields are the API server's", () => {
  const wrong: string[] = [];
  for (const x of CASES) {
    const { messages } = validateManifests([{ path: "case.yaml", line: 1, object: x.object }]);
    const fields = messages.filter((m) => m.source === "apiserver").map((m) => m.field);
    const want = x.fields ?? [];
    if (JSON.stringify([...fields].sort()) !== JSON.stringify([...want].sort()))
      wrong.push(
        `${x.what}: want ${JSON.stringify(want)}, got ${JSON.stringify(messages.map((m) => `${m.field}: ${m.message}`))}`,
      );
  }
  assert.deepEqual(wrong, []);
});

test("objects that are not policies are passed over and said to be", () => {
  const docs = [
    { apiVersion: "v1", kind: "Pod", metadata: { name: "w", namespace: "a" } },
    { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "d" } },
    { apiVersion: "argoproj.io/v1alpha1", kind: "Application", metadata: { name: "x" } },
  ].map((object, i) => ({ path: "x.yaml", line: i + 1, object }));
  const { messages, passedOver } = validateManifests(docs);
  assert.deepEqual(messages, []);
  assert.deepEqual(
    passedOver.map((p) => p.object),
    ["Pod/a/w", "Deployment/d", "Application/x"],
  );
  // A core kind that does not exist is not passed over.
  const bad = validateManifests([
    { path: "x.yaml", line: 1, object: { apiVersion: "v1", kind: "Pdo", metadata: { name: "w" } } },
  ]);
  assert.deepEqual(
    bad.messages.map((m) => m.field),
    ["kind"],
  );
});
