import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { formatMessage, validateDocuments } from "../../operator/src/cli/validate.ts";
import { loadManifests, yamlFiles } from "../../operator/src/manifests/load.ts";
// @ts-expect-error: plain ESM script without types
import { generateTypes } from "../../scripts/gen-types.mjs";

const root = fileURLToPath(new URL("../..", import.meta.url));

test("every sample validates cleanly, one file at a time", () => {
  const files = yamlFiles([
    `${root}samples/policies`,
    `${root}samples/demo`,
    `${root}samples/node-peers`,
    `${root}samples/audit`,
  ]);
  assert.ok(files.length >= 10);
  for (const f of files) {
    const { documents, errors } = loadManifests([f]);
    assert.deepEqual(errors, [], f);
    assert.ok(documents.length > 0, f);
    assert.deepEqual(validateDocuments(documents).map(formatMessage), [], f);
  }
});

test("invalid objects: schema, CEL intent and unknown fields, with path:line", () => {
  const { documents } = loadManifests([`${root}test/unit/fixtures/invalid`]);
  const lines = validateDocuments(documents)
    .map(formatMessage)
    .map((l) => l.replace(root, ""));
  // The fields are the API server's: a spec-level CEL rule names spec.ingress (its fieldPath), the
  // except rule the except list, a missing or unknown property the property itself.
  assert.deepEqual(lines, [
    "test/unit/fixtures/invalid/bad.yaml:1: SecurityPolicy/shop/bad: spec.ingress: Pass is only valid in a ClusterSecurityPolicy of the Admin tier",
    "test/unit/fixtures/invalid/bad.yaml:1: SecurityPolicy/shop/bad: spec.ingress[0].cidrs[0].except: every except must be a prefix inside cidr",
    "test/unit/fixtures/invalid/bad.yaml:1: SecurityPolicy/shop/bad: spec.ingress[0].ports[0].endPort: endPort requires a numeric port and must be >= port",
    "test/unit/fixtures/invalid/bad.yaml:11: ClusterSecurityPolicy/no-tier: spec.tier: Required value",
    "test/unit/fixtures/invalid/bad.yaml:11: ClusterSecurityPolicy/no-tier: spec.priority: Required value",
    "test/unit/fixtures/invalid/bad.yaml:19: NetworkPolicy/shop/typo: spec.ingres: unknown field",
  ]);
  const r = spawnSync(`${root}bin/sluice`, ["validate", `${root}test/unit/fixtures/invalid`]);
  assert.equal(r.status, 1);
});

test("semantic checks: unknown named port, rule matching nothing, shadowed rule", () => {
  const docs = [
    {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "w", namespace: "a", labels: { app: "w" } },
      spec: { nodeName: "n", containers: [{ ports: [{ name: "http", containerPort: 80 }] }] },
      status: { podIP: "10.0.0.1" },
    },
    {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: "p", namespace: "a" },
      spec: { podSelector: {}, ingress: [{ ports: [{ port: "htp" }] }] },
    },
    {
      apiVersion: "sluice.dev/v1alpha1",
      kind: "SecurityPolicy",
      metadata: { name: "s", namespace: "a" },
      spec: { endpointSelector: {}, ingress: [{ cidrs: [{ cidr: "10.0.0.0/8", except: ["10.0.0.0/8"] }] }] },
    },
    {
      apiVersion: "sluice.dev/v1alpha1",
      kind: "ClusterSecurityPolicy",
      metadata: { name: "c" },
      spec: {
        tier: "Admin",
        priority: 1,
        endpointSelector: {},
        egress: [{ action: "Deny" }, { action: "Allow", ports: [{ port: 80, protocol: "TCP" }] }],
      },
    },
  ].map((object, i) => ({ path: "x.yaml", line: i * 10 + 1, object }));
  assert.deepEqual(validateDocuments(docs).map(formatMessage), [
    'x.yaml:11: NetworkPolicy/a/p: spec.ingress[0].ports[0].port: no selected pod has a port named "htp"',
    "x.yaml:21: SecurityPolicy/a/s: spec.ingress[0]: every cidr of this rule is covered by its own except: the rule matches nothing",
    "x.yaml:31: ClusterSecurityPolicy/c: spec.egress[1]: shadowed by spec.egress[0], which matches every peer and port",
  ]);
});

test("types.generated.ts is what gen-types.mjs generates from the CRDs", () => {
  assert.equal(readFileSync(`${root}operator/src/api/types.generated.ts`, "utf8"), generateTypes());
});

test("sluice matrix -o json: the lab's JSON shape, container ports by default", () => {
  const out = execFileSync(`${root}bin/sluice`, ["matrix", "-f", `${root}samples/demo`, "-o", "json"], {
    encoding: "utf8",
  });
  const json = JSON.parse(out) as { results: Array<Record<string, unknown>> };
  assert.deepEqual(Object.keys(json), ["results"]);
  for (const r of json.results)
    assert.deepEqual(Object.keys(r), ["from", "to", "port", "protocol", "verdict"]);
  const row = (from: string, to: string, port: number) =>
    json.results.find((r) => r.from === from && r.to === to && r.port === port)?.verdict;
  assert.equal(row("shop/frontend", "shop/backend", 8080), "allow");
  assert.equal(row("shop/frontend", "shop/db", 5432), "deny");
  assert.equal(row("monitoring/prometheus", "shop/backend", 9100), "allow");
  assert.equal(row("shop/frontend", "shop/backend", 9100), "deny");
  const ports = execFileSync(
    `${root}bin/sluice`,
    ["matrix", "-f", `${root}samples/demo`, "--ports", "80/TCP,5000/UDP", "-o", "json"],
    { encoding: "utf8" },
  );
  const rows = (JSON.parse(ports) as { results: Array<{ port: number }> }).results;
  assert.equal(rows.length, 4 * 3 * 2);
});

test("sluice plan shows what the sample policies open and close", () => {
  const out = execFileSync(
    `${root}bin/sluice`,
    ["plan", "--before", `${root}samples/demo/topology.yaml`, "--after", `${root}samples/demo`, "-o", "json"],
    { encoding: "utf8" },
  );
  const changes = (
    JSON.parse(out) as { changes: Array<{ from: string; to: string; port: number; change: string }> }
  ).changes;
  assert.ok(
    changes.some(
      (c) => c.from === "shop/frontend" && c.to === "shop/db" && c.port === 5432 && c.change === "closed",
    ),
  );
  assert.ok(!changes.some((c) => c.from === "shop/frontend" && c.to === "shop/backend" && c.port === 8080));
});
