// kubectl against a real API server with Sluice's CRDs: every sample applies; invalid objects are
// rejected by the CRDs' OpenAPI schema and CEL rules with the field and the rule's message (every
// x-kubernetes-validations rule in crds/*.yaml, at every place it appears, has a rejecting case: see
// test/support/crd-cases.ts); objects the schema accepts but that are semantically wrong are stored
// and then marked Accepted=False by the operator, with a Rejected event.
// The `sluice validate` side: test/unit/validate-samples.test.ts (samples, fixtures) and
// test/unit/validate-crd-cases.test.ts (the same cases as here); the operator's Accepted=False for an
// unknown ingress named port and Enforced/EnforcementFailed are in operator-status.test.ts.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { after, before, describe, test } from "node:test";
import { loadManifests, yamlFiles } from "../../operator/src/manifests/load.ts";
import type { Operator } from "../../operator/src/controllers/run.ts";
import { kubectl } from "../support/apiserver.ts";
import {
  CEL_CASES,
  fieldOf,
  isObject,
  type K8sObject,
  NS,
  RULES,
  type RejectCase,
  SCHEMA_CASES,
  SEMANTIC_CASES,
  VIOLATIONS,
} from "../support/crd-cases.ts";
import {
  type Cluster,
  kubectlOk,
  repoRoot,
  startCluster,
  startTestOperator,
  waitFor,
} from "./operator-helpers.ts";

// Groups whose CRDs this cluster does not have: samples of them are checked elsewhere (the Argo CD
// Application needs Argo CD). Any other unserved apiVersion in a sample is a mistake and fails.
const FOREIGN_GROUPS = new Set(["argoproj.io"]);
const toYaml = (o: unknown) => JSON.stringify(o);

describe("kubectl against the CRDs (real API server)", () => {
  let c: Cluster;
  let op: Operator | undefined;
  const kc = () => c.api.kubeconfigPath;
  let samplesApplied: Promise<string[]> | undefined;
  // Every test that needs the samples in the cluster calls this; they are applied once.
  const applySamples = () => {
    samplesApplied ??= applyAllSamples(kc());
    return samplesApplied;
  };

  before(async () => {
    // Sluice's CRDs and SIG Network's (crds/upstream/), whose samples are among samples/policies.
    const upstream = readdirSync(join(repoRoot, "crds", "upstream")).filter((f) => f.endsWith(".yaml"));
    const own = readdirSync(join(repoRoot, "crds")).filter((f) => f.endsWith(".yaml"));
    c = await startCluster([...own, ...upstream.map((f) => `upstream/${f}`)]);
    await kubectlOk(["create", "namespace", NS], kc());
    op = await startTestOperator(c.clients, "kubectl-samples");
  });
  after(async () => {
    await op?.stop();
    await c?.stop();
  });

  test("kubectl apply of every sample that is a Kubernetes object succeeds", async (t) => {
    for (const line of await applySamples()) t.diagnostic(line);
  });

  test("every CEL rule of crds/*.yaml has a case the API server rejects", () => {
    const rules = RULES;
    assert.ok(rules.length > 0, "no x-kubernetes-validations found in crds/");
    const missing = [...new Set(rules.filter((r) => !VIOLATIONS[r.rule]).map((r) => `${r.crd}: ${r.rule}`))];
    assert.deepEqual(missing, [], "CEL rules without a violating case in VIOLATIONS");
    const unused = Object.keys(VIOLATIONS).filter((rule) => !rules.some((r) => r.rule === rule));
    assert.deepEqual(unused, [], "VIOLATIONS entries for rules no CRD has any more");
  });

  test("invalid objects: kubectl apply fails naming the field and the CEL rule's message", async (t) => {
    const rules = RULES;
    const cases = CEL_CASES;
    const failures = await runRejectCases(cases);
    assert.deepEqual(failures, []);
    // Coverage: every rule at every place is among the cases that were rejected as expected.
    for (const r of rules)
      assert.ok(
        cases.some((x) => x.rule === r),
        `${r.crd} ${fieldOf(r.at) || "(object)"}: no case for ${r.rule}`,
      );
    t.diagnostic(`${rules.length} rule placements, ${cases.length} rejected objects`);
  });

  test("invalid objects: kubectl apply fails naming the field and the schema's reason", async () => {
    assert.deepEqual(await runRejectCases(SCHEMA_CASES), []);
  });

  test("nothing rejected was stored", async () => {
    const cases = [...CEL_CASES, ...SCHEMA_CASES];
    // A transition-rule case stores its `before` object legitimately, under the same name.
    const setUp = new Set(
      cases.flatMap((x) => (x.before ? [`${x.before.kind}/${x.before.metadata.name}`] : [])),
    );
    for (const kind of ["SecurityPolicy", "ClusterSecurityPolicy", "SecurityIdentity", "NetworkPolicy"]) {
      const list = JSON.parse(await kubectlOk(["get", kind.toLowerCase(), "-A", "-o", "json"], kc())) as {
        items: K8sObject[];
      };
      const stored = new Set(list.items.map((o) => `${kind}/${o.metadata.name}`));
      const wrong = cases
        .map((x) => `${x.object.kind}/${x.object.metadata.name}`)
        .filter((k) => k.startsWith(`${kind}/`) && stored.has(k) && !setUp.has(k));
      assert.deepEqual(wrong, [], `${kind}: stored although rejected`);
    }
  });

  async function runRejectCases(cases: readonly RejectCase[]): Promise<string[]> {
    const failures: string[] = [];
    for (const x of cases) {
      if (x.before) {
        const r0 = await kubectl(["apply", "-f", "-"], kc(), { input: toYaml(x.before) });
        if (r0.code !== 0) {
          failures.push(`${x.what}: setup object rejected: ${r0.stderr.trim()}`);
          continue;
        }
      }
      const r = await kubectl(["apply", "-f", "-"], kc(), { input: toYaml(x.object) });
      if (r.code === 0) {
        failures.push(`${x.what}: accepted: ${toYaml(x.object)}`);
        continue;
      }
      const absent = x.expect.filter((s) => !r.stderr.includes(s));
      if (absent.length > 0)
        failures.push(
          `${x.what}: stderr lacks ${absent.map((s) => JSON.stringify(s)).join(", ")}: ${r.stderr.trim()}`,
        );
    }
    return failures;
  }

  test("semantically wrong objects: applied, then Accepted=False with the field and a Rejected event", async () => {
    // With the samples' pods in the cluster, so named ports resolve against something.
    await applySamples();
    for (const x of SEMANTIC_CASES) {
      const r = await kubectl(["apply", "-f", "-"], kc(), { input: toYaml(x.object) });
      assert.equal(r.code, 0, `${x.what}: kubectl apply failed: ${r.stderr}`);
    }
    for (const x of SEMANTIC_CASES) {
      const { kind, metadata } = x.object;
      const ns = metadata.namespace ? ["-n", metadata.namespace] : [];
      const p = await waitFor(`${x.what}: Accepted=False`, async () => {
        const got = JSON.parse(
          await kubectlOk(["get", kind.toLowerCase(), metadata.name, ...ns, "-o", "json"], kc()),
        ) as PolicyJson;
        return got.status?.conditions?.find((c) => c.type === "Accepted")?.status === "False"
          ? got
          : undefined;
      });
      const accepted = p.status?.conditions?.find((c) => c.type === "Accepted");
      assert.equal(accepted?.reason, "Invalid", x.what);
      assert.ok(
        accepted?.message.includes(`${x.field}: ${x.message}`),
        `${x.what}: message ${JSON.stringify(accepted?.message)} lacks "${x.field}: ${x.message}"`,
      );
      await waitFor(`${x.what}: Rejected event`, async () => {
        const ev = JSON.parse(
          await kubectlOk(
            [
              "get",
              "events",
              "-n",
              metadata.namespace ?? "default",
              "--field-selector",
              `involvedObject.uid=${p.metadata.uid}`,
              "-o",
              "json",
            ],
            kc(),
          ),
        ) as { items: Array<{ type: string; reason: string; message: string }> };
        return ev.items.some(
          (e) =>
            e.type === "Warning" && e.reason === "Rejected" && e.message.includes(`${x.field}: ${x.message}`),
        );
      });
    }
  });

  test("every sample policy is Accepted=True by the operator", async () => {
    await applySamples();
    const samples = loadManifests([join(repoRoot, "samples")])
      .documents.map((d) => d.object as K8sObject)
      .filter((o) => o.kind === "SecurityPolicy" || o.kind === "ClusterSecurityPolicy");
    for (const o of samples) {
      const ns = o.metadata.namespace ? ["-n", o.metadata.namespace] : [];
      const p = await waitFor(`${o.kind} ${o.metadata.name}: status`, async () => {
        const got = JSON.parse(
          await kubectlOk(["get", o.kind.toLowerCase(), o.metadata.name, ...ns, "-o", "json"], kc()),
        ) as PolicyJson;
        return got.status?.conditions?.some((c) => c.type === "Accepted") ? got : undefined;
      });
      const accepted = p.status?.conditions?.find((c) => c.type === "Accepted");
      assert.equal(accepted?.status, "True", `${o.kind} ${o.metadata.name}: ${accepted?.message}`);
    }
  });
});

interface PolicyJson {
  metadata: { uid: string };
  status?: { conditions?: Array<{ type: string; status: string; reason: string; message: string }> };
}

/** kubectl apply -f of every sample file; returns what was applied and skipped, per file. */
async function applyAllSamples(kubeconfig: string): Promise<string[]> {
  const log: string[] = [];
  const served = new Set((await kubectlOk(["api-versions"], kubeconfig)).split("\n").filter(Boolean));
  served.add("v1");
  const plan: Array<{ file: string; objects: K8sObject[]; skipped: K8sObject[] }> = [];
  for (const file of yamlFiles([join(repoRoot, "samples")])) {
    const { documents, errors } = loadManifests([file]);
    assert.deepEqual(errors, [], file);
    const objects = documents
      .map((d) => d.object as K8sObject)
      .filter((o) => isObject(o) && typeof o.apiVersion === "string" && typeof o.kind === "string");
    if (objects.length === 0) continue;
    const skipped = objects.filter((o) => !served.has(o.apiVersion));
    for (const o of skipped)
      assert.ok(
        FOREIGN_GROUPS.has(o.apiVersion.split("/")[0]),
        `${relative(repoRoot, file)}: ${o.kind} ${o.metadata?.name}: apiVersion ${o.apiVersion} is not served`,
      );
    plan.push({ file, objects: objects.filter((o) => served.has(o.apiVersion)), skipped });
  }
  const applied = plan.flatMap((p) => p.objects);
  for (const kind of ["SecurityPolicy", "ClusterSecurityPolicy", "NetworkPolicy", "Namespace", "Pod"])
    assert.ok(
      applied.some((o) => o.kind === kind),
      `no ${kind} among the samples`,
    );

  // Namespaces the samples use but do not define (argocd, for the Argo CD ConfigMap patch).
  const defined = new Set(applied.filter((o) => o.kind === "Namespace").map((o) => o.metadata.name));
  const used = new Set(applied.map((o) => o.metadata?.namespace).filter((n): n is string => !!n));
  for (const ns of used) if (!defined.has(ns)) await kubectlOk(["create", "namespace", ns], kubeconfig);
  // Files that define namespaces go first, as a GitOps tool orders them.
  const definesNs = (p: (typeof plan)[number]) => Number(p.objects.some((o) => o.kind === "Namespace"));
  plan.sort((a, b) => definesNs(b) - definesNs(a));
  for (const p of plan) {
    const rel = relative(repoRoot, p.file);
    if (p.objects.length === 0) {
      log.push(`${rel}: skipped (${p.skipped.map((o) => o.apiVersion).join(", ")} not installed)`);
      continue;
    }
    // Whole files where possible: exactly what a user runs.
    const whole = p.skipped.length === 0;
    const input = whole ? undefined : p.objects.map(toYaml).join("\n---\n");
    const r = await kubectl(["apply", "-f", whole ? p.file : "-"], kubeconfig, { input });
    assert.equal(r.code, 0, `kubectl apply -f ${rel}: ${r.stderr}`);
    const got = JSON.parse(
      await kubectlOk(["get", "-f", "-", "-o", "json"], kubeconfig, p.objects.map(toYaml).join("\n---\n")),
    ) as { items?: K8sObject[] } & K8sObject;
    const names = (got.items ?? [got]).map((o) => `${o.kind}/${o.metadata.name}`).sort();
    assert.deepEqual(names, p.objects.map((o) => `${o.kind}/${o.metadata.name}`).sort(), rel);
    log.push(`${rel}: ${p.objects.length} objects applied${whole ? "" : `, ${p.skipped.length} skipped`}`);
  }
  return log;
}
