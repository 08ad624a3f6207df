// The Argo CD health check runs in gopher-lua (Lua 5.1) without string/math; run it in Debian's lua5.1
// inside an environment that lacks them too, so using either fails here as it would in Argo CD. Also
// the samples/gitops layout: its patch, exclusions and the Application's policies folder.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { test } from "node:test";

const script = readFileSync(new URL("../../charts/sluice/files/argocd-health.lua", import.meta.url), "utf8");

function luaLiteral(v: unknown): string {
  if (v === null || v === undefined) return "nil";
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return `{${v.map(luaLiteral).join(",")}}`;
  const fields = Object.entries(v as Record<string, unknown>).map(
    ([k, x]) => `[${JSON.stringify(k)}]=${luaLiteral(x)}`,
  );
  return `{${fields.join(",")}}`;
}

function health(obj: unknown): { status: string; message: string } {
  const harness = `
local chunk = assert(loadstring(${JSON.stringify(script)}))
setfenv(chunk, { obj = ${luaLiteral(obj)}, ipairs = ipairs, pairs = pairs })
local hs = chunk()
io.write(hs.status, "\\n", hs.message)
`;
  const out = execFileSync("lua5.1", ["-"], { input: harness, encoding: "utf8" });
  const [status, ...rest] = out.split("\n");
  return { status, message: rest.join("\n") };
}

const cond = (type: string, status: string, reason: string, message?: string) => ({
  type,
  status,
  reason,
  message,
});

test("no status yet: Progressing", () => {
  assert.equal(health({ metadata: { generation: 1 } }).status, "Progressing");
});

test("stale observedGeneration: Progressing even if the old generation was enforced", () => {
  const obj = {
    metadata: { generation: 3 },
    status: {
      observedGeneration: 2,
      conditions: [cond("Accepted", "True", "Compiled"), cond("Enforced", "True", "Enforced")],
    },
  };
  assert.equal(health(obj).status, "Progressing");
});

test("rejected: Degraded with the operator's message", () => {
  const obj = {
    metadata: { generation: 1 },
    status: {
      observedGeneration: 1,
      conditions: [cond("Accepted", "False", "Invalid", "spec.ingress[0].ports[0]: endPort < port")],
    },
  };
  assert.deepEqual(health(obj), { status: "Degraded", message: "spec.ingress[0].ports[0]: endPort < port" });
});

test("enforced everywhere: Healthy", () => {
  const obj = {
    metadata: { generation: 2 },
    status: {
      observedGeneration: 2,
      conditions: [cond("Accepted", "True", "Compiled"), cond("Enforced", "True", "Enforced", "2/2 nodes")],
    },
  };
  assert.deepEqual(health(obj), { status: "Healthy", message: "2/2 nodes" });
});

test("enforcement pending vs failed", () => {
  const pending = {
    metadata: { generation: 1 },
    status: { observedGeneration: 1, conditions: [cond("Enforced", "False", "Pending", "1/2 nodes")] },
  };
  const failed = {
    metadata: { generation: 1 },
    status: {
      observedGeneration: 1,
      conditions: [cond("Enforced", "False", "EnforcementFailed", "node-a: map full")],
    },
  };
  assert.equal(health(pending).status, "Progressing");
  assert.deepEqual(health(failed), { status: "Degraded", message: "node-a: map full" });
});

test("the script uses neither string nor math (Argo CD runs it without them)", () => {
  assert.doesNotMatch(script, /\b(string|math)\./);
  assert.doesNotMatch(script, /\bgoto\b/);
});

const gitops = (path: string) => new URL(`../../samples/gitops/${path}`, import.meta.url);

test("the argocd-cm patch in samples/gitops carries the same Lua, and no resource.exclusions to replace", async () => {
  const { parse } = await import("yaml");
  const patch = parse(readFileSync(gitops("argocd/argocd-cm-patch.yaml"), "utf8")) as {
    data: Record<string, string>;
  };
  assert.equal(patch.data["resource.customizations.health.sluice.dev_SecurityPolicy"], script);
  assert.equal(patch.data["resource.customizations.health.sluice.dev_ClusterSecurityPolicy"], script);
  // A merge patch of this one string would drop the list already there (Argo CD's defaults too).
  assert.equal(patch.data["resource.exclusions"], undefined);
  const exclusions = parse(readFileSync(gitops("argocd/resource-exclusions.yaml"), "utf8")) as {
    apiGroups: string[];
    kinds: string[];
  }[];
  assert.deepEqual(
    exclusions.flatMap((e) => e.apiGroups),
    ["sluice.dev"],
  );
  assert.deepEqual(exclusions.flatMap((e) => e.kinds).sort(), ["SecurityIdentity", "SecurityNodeStatus"]);
});

test("the Application's path exists in the gitops layout and every policy there validates", async () => {
  const { parse } = await import("yaml");
  const app = parse(readFileSync(gitops("argocd/application.yaml"), "utf8")) as {
    spec: { source: { path: string } };
  };
  const dir = gitops(app.spec.source.path).pathname;
  assert.ok(existsSync(dir), `samples/gitops/${app.spec.source.path} does not exist`);
  const files = readdirSync(dir).filter((f) => f.endsWith(".yaml"));
  assert.ok(files.length > 0, `no policies in samples/gitops/${app.spec.source.path}`);
  // What the README says the policy repository's CI runs.
  const sluice = new URL("../../bin/sluice", import.meta.url).pathname;
  const r = spawnSync(sluice, ["validate", dir], { encoding: "utf8" });
  assert.equal(r.status, 0, `sluice validate ${dir}: ${r.stdout}${r.stderr}`);
});
