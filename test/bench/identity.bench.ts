// Benchmark: 1,000 new pods with 200 distinct label sets → time until every set has its
// SecurityIdentity, against a real API server, with the operator's identity controller running.
// Baseline in the same run: creating the same number of pods with no controller running.
import { setTimeout as sleep } from "node:timers/promises";
import {
  IDENTITY_TOMBSTONE_LABEL,
  type IdentityObject,
  labelSetHash,
} from "../../operator/src/identity/allocator.ts";
import { securityLabels } from "../../operator/src/identity/labels.ts";
import { Informer } from "../../operator/src/kube/informer.ts";
import { SECURITY_IDENTITIES } from "../../operator/src/kube/resources.ts";
import { Operator } from "../../operator/src/controllers/run.ts";
import { createNamespace, createPod, pool, startCluster } from "../integration/operator-helpers.ts";
import type { KubernetesObject } from "@kubernetes/client-node";

const PODS = Number(process.env.PODS ?? 1000);
const SETS = Number(process.env.SETS ?? 200);
const CONCURRENCY = 32;

const c = await startCluster();
try {
  await createNamespace(c.clients, "baseline");
  await createNamespace(c.clients, "bench");
  const specs = Array.from({ length: PODS }, (_, i) => ({
    name: `p${i}`,
    labels: { app: `app${i % SETS}`, tier: `t${(i % SETS) % 3}` },
  }));
  const distinct = new Set(specs.map((s) => JSON.stringify(s.labels))).size;

  // Baseline: just create the pods.
  let t = performance.now();
  await pool(specs, CONCURRENCY, (s) => createPod(c.clients, "baseline", s.name, s.labels, "node-1"));
  const baselineMs = performance.now() - t;
  await c.clients.core.deleteCollectionNamespacedPod({ namespace: "baseline", gracePeriodSeconds: 0 });

  const op = new Operator({
    clients: c.clients,
    leaseNamespace: "default",
    id: "bench",
    identityGcGraceMs: 600_000,
    leaseDurationMs: 15_000,
    renewDeadlineMs: 10_000,
    retryPeriodMs: 2_000,
  });
  op.start();
  while (!op.isLeader() || !op.informers.pods.hasSynced()) await sleep(20);
  // Baseline pods are gone; wait until the controller has retired nothing yet and is idle.
  await sleep(500);

  const want = new Set(
    specs.map((s) =>
      labelSetHash(securityLabels({ metadata: { namespace: "bench", labels: s.labels } }, { metadata: {} })),
    ),
  );
  const seen = new Set<string>();
  const watcher = new Informer<IdentityObject & KubernetesObject>(c.kc, SECURITY_IDENTITIES);
  let allAt = 0;
  const onId = (i: IdentityObject & KubernetesObject) => {
    if (i.metadata?.labels?.[IDENTITY_TOMBSTONE_LABEL] === "true") return;
    const h = labelSetHash(i.spec?.labels ?? {});
    if (want.has(h)) seen.add(h);
    if (!allAt && seen.size === want.size) allAt = performance.now();
  };
  watcher.on("add", onId);
  watcher.on("update", onId);
  watcher.start();
  await watcher.waitForSync(10_000);

  t = performance.now();
  await pool(specs, CONCURRENCY, (s) => createPod(c.clients, "bench", s.name, s.labels, "node-1"));
  const createdMs = performance.now() - t;
  while (!allAt) await sleep(5);
  const identitiesMs = allAt - t;
  const stats = op.identity?.stats;
  await watcher.stop();
  await op.stop();

  const row = (what: string, ms: number) =>
    `| ${what.padEnd(52)} | ${ms.toFixed(0).padStart(8)} | ${(ms / baselineMs).toFixed(2).padStart(6)} |`;
  console.log(
    `\nidentity allocation: ${PODS} pods, ${distinct} distinct label sets (${want.size} identities), ${CONCURRENCY} concurrent creates\n`,
  );
  console.log(`| ${"what".padEnd(52)} | ${"ms".padStart(8)} | ${"ratio".padStart(6)} |`);
  console.log(`|${"-".repeat(54)}|${"-".repeat(10)}|${"-".repeat(8)}|`);
  console.log(row("baseline: create the pods, no operator", baselineMs));
  console.log(row("create the pods with the operator running", createdMs));
  console.log(row("first create → every label set has an identity", identitiesMs));
  console.log(row("last create → every label set has an identity", identitiesMs - createdMs));
  console.log(`\ncontroller: ${JSON.stringify(stats)}`);
} finally {
  await c.stop();
}
