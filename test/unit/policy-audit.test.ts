// Per-policy audit mode (issue 13 §4), compiled: the enforced verdict is the one without the Audit
// policies, and the map entries report what those policies would decide where it differs (audit.ts).
// Each case is checked through the compiled map state (lookupVerdict, the datapath's decision) and the
// reference evaluator (enforced and audited verdicts); policy-property.test.ts does the same at random.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Pod } from "../../operator/src/api/k8s.ts";
import {
  compile,
  inputsFromObjects,
  lookupIdentity,
  lookupVerdict,
  ReferenceEvaluator,
} from "../../operator/src/policy/index.ts";
import { diffStates } from "../../operator/src/policy/diff.ts";
import { ENFORCEMENT_ANNOTATION } from "../../operator/src/policy/enforcement.ts";
import { IncrementalCompiler } from "../../operator/src/policy/incremental.ts";
import { type AuditOutcome, ReservedRuleId } from "../../operator/src/policy/mapstate.ts";
import { ruleId } from "../../operator/src/policy/normalize.ts";
import { validatePolicy } from "../../operator/src/policy/validate.ts";
import { podIps } from "../../operator/src/policy/universe.ts";
import { audited, node, ns, pod } from "./policy-fixtures.ts";

const base = [
  ns("a", { team: "x" }),
  ns("b", { team: "y" }),
  node("n1", "172.18.0.1"),
  pod("a", "web", { app: "web" }, "10.0.1.1", "n1"),
  pod("a", "db", { app: "db" }, "10.0.1.2", "n1"),
  pod("b", "client", { app: "client" }, "10.0.2.1", "n1"),
];

const np = (namespace: string, name: string, spec: object) => ({
  kind: "NetworkPolicy",
  metadata: { namespace, name },
  spec,
});
const sp = (namespace: string, name: string, spec: object) => ({
  kind: "SecurityPolicy",
  metadata: { namespace, name },
  spec: { endpointSelector: {}, ...spec },
});
const csp = (name: string, spec: object) => ({
  kind: "ClusterSecurityPolicy",
  metadata: { name },
  spec: { endpointSelector: {}, ...spec },
});

interface Probe {
  verdict: string;
  audit?: AuditOutcome;
}

// Ingress at `to` for a TCP packet from `from`: the compiled decision, held to the reference's.
function probe(objects: unknown[], from: string, to: string, port: number): Probe {
  const inputs = inputsFromObjects([...base, ...objects]);
  const find = (k: string) =>
    inputs.pods.find((p: Pod) => `${p.metadata.namespace}/${p.metadata.name}` === k)!;
  const [src, dst] = [podIps(find(from))[0], podIps(find(to))[0]];
  const st = compile(inputs, { node: "n1" }).state;
  const ep = st.endpoints.find((e) => e.key === to)!;
  const got = lookupVerdict(ep.policy, "ingress", lookupIdentity(st.ipcache, src), 6, port);
  const want = new ReferenceEvaluator(inputs).evaluate(src, dst, 6, port);
  assert.equal(got.verdict, want.ingress, `${from} -> ${to}:${port} enforced`);
  assert.equal(got.audit?.verdict ?? got.verdict, want.audit.ingress, `${from} -> ${to}:${port} audited`);
  return { verdict: got.verdict, ...(got.audit ? { audit: got.audit } : {}) };
}

const ruleOf = (
  kind: "SecurityPolicy" | "ClusterSecurityPolicy" | "NetworkPolicy",
  ns: string | undefined,
  name: string,
  index = 0,
) => ruleId({ kind, namespace: ns, name, direction: "ingress", index });

const allowAll = np("a", "allow-all", { podSelector: {}, ingress: [{}] });

test("an Audit deny under an allow changes nothing and reports the flows it would deny", () => {
  const deny = sp("a", "no-b", {
    enforcement: "Audit",
    endpointSelector: { matchLabels: { app: "db" } },
    ingress: [{ action: "Deny", endpoints: [{ namespaceSelector: { matchLabels: { team: "y" } } }] }],
  });
  assert.deepEqual(probe([allowAll, deny], "b/client", "a/db", 80), {
    verdict: "allow",
    audit: { verdict: "deny", ruleId: ruleOf("SecurityPolicy", "a", "no-b") },
  });
  // What the Deny does not match: nothing to report.
  assert.deepEqual(probe([allowAll, deny], "a/web", "a/db", 80), { verdict: "allow" });
  // The same policy enforced denies exactly what was reported.
  const enforced = { ...deny, spec: { ...deny.spec, enforcement: "Enforce" } };
  assert.deepEqual(probe([allowAll, enforced], "b/client", "a/db", 80), { verdict: "deny" });
});

test("an Audit allow under default deny reports what it would open", () => {
  const isolate = np("a", "isolate", { podSelector: {}, policyTypes: ["Ingress"] });
  const open = audited(
    np("a", "open-80", {
      podSelector: { matchLabels: { app: "db" } },
      ingress: [{ from: [{ podSelector: { matchLabels: { app: "web" } } }], ports: [{ port: 80 }] }],
    }),
  );
  assert.deepEqual(probe([isolate, open], "a/web", "a/db", 80), {
    verdict: "deny",
    audit: { verdict: "allow", ruleId: ruleOf("NetworkPolicy", "a", "open-80") },
  });
  assert.deepEqual(probe([isolate, open], "a/web", "a/db", 81), { verdict: "deny" });
});

test("an Audit policy that isolates a pod: the audited default (auditDefaultDeny) reports rule 0", () => {
  const lockdown = audited(np("a", "lockdown", { podSelector: { matchLabels: { app: "db" } } }));
  const st = compile(inputsFromObjects([...base, lockdown]), { node: "n1" }).state;
  const db = st.endpoints.find((e) => e.key === "a/db")!;
  assert.deepEqual(db.policy.defaultDeny, { ingress: false, egress: false });
  assert.deepEqual(db.policy.auditDefaultDeny, { ingress: true, egress: false });
  assert.deepEqual(probe([lockdown], "a/web", "a/db", 80), {
    verdict: "allow",
    audit: { verdict: "deny", ruleId: ReservedRuleId.DEFAULT },
  });
  // The pods it does not select compile as without it: no audit fields at all.
  const web = st.endpoints.find((e) => e.key === "a/web")!;
  const without = compile(inputsFromObjects(base), { node: "n1" }).state;
  assert.deepEqual(
    web,
    without.endpoints.find((e) => e.key === "a/web"),
  );
});

test("an Audit Pass in the Admin tier: what the namespace policies would decide instead", () => {
  const adminDeny = csp("deny-b", {
    tier: "Admin",
    priority: 10,
    ingress: [{ action: "Deny", endpoints: [{ namespaceSelector: { matchLabels: { team: "y" } } }] }],
  });
  const pass = csp("pass-b", {
    enforcement: "Audit",
    tier: "Admin",
    priority: 1,
    ingress: [{ action: "Pass", endpoints: [{ namespaceSelector: { matchLabels: { team: "y" } } }] }],
  });
  assert.deepEqual(probe([adminDeny, pass, allowAll], "b/client", "a/db", 80), {
    verdict: "deny",
    audit: { verdict: "allow", ruleId: ruleOf("NetworkPolicy", "a", "allow-all") },
  });
  // Without a namespace allow the Pass would hand the packet to the default (allow, rule 0).
  assert.deepEqual(probe([adminDeny, pass], "b/client", "a/db", 80), {
    verdict: "deny",
    audit: { verdict: "allow", ruleId: ReservedRuleId.DEFAULT },
  });
});

test("Enforce and Audit mixed in the tiers: an enforced Admin decision wins over any Audit policy below it", () => {
  const adminAllow = csp("allow-web", {
    tier: "Admin",
    priority: 5,
    ingress: [{ action: "Allow", endpoints: [{ endpointSelector: { matchLabels: { app: "web" } } }] }],
  });
  const auditAdminDeny = csp("deny-all", {
    enforcement: "Audit",
    tier: "Admin",
    priority: 9,
    ingress: [{ action: "Deny" }],
  });
  const auditBaseline = csp("baseline-deny", {
    enforcement: "Audit",
    tier: "Baseline",
    priority: 1,
    ingress: [{ action: "Deny" }],
  });
  const objects = [adminAllow, auditAdminDeny, auditBaseline];
  // web: the enforced Admin Allow comes first either way.
  assert.deepEqual(probe(objects, "a/web", "a/db", 80), { verdict: "allow" });
  // client: nothing enforced matches (allow by default); the Audit Admin Deny would decide first.
  assert.deepEqual(probe(objects, "b/client", "a/db", 80), {
    verdict: "allow",
    audit: { verdict: "deny", ruleId: ruleOf("ClusterSecurityPolicy", undefined, "deny-all") },
  });
  // An Audit Deny at priority 1 above the enforced Allow: it would win.
  const early = {
    ...auditAdminDeny,
    metadata: { name: "deny-first" },
    spec: { ...auditAdminDeny.spec, priority: 1 },
  };
  assert.deepEqual(probe([adminAllow, early], "a/web", "a/db", 80), {
    verdict: "allow",
    audit: { verdict: "deny", ruleId: ruleOf("ClusterSecurityPolicy", undefined, "deny-first") },
  });
});

test("an invalid enforcement is an InvalidPolicy error naming the field, and the policy is enforced", () => {
  const bad = {
    ...np("a", "typo", { podSelector: { matchLabels: { app: "db" } } }),
    metadata: { namespace: "a", name: "typo", annotations: { [ENFORCEMENT_ANNOTATION]: "audit" } },
  };
  const r = compile(inputsFromObjects([...base, bad]), { node: "n1" });
  assert.deepEqual(r.errors, [
    {
      reason: "InvalidPolicy",
      policies: ["NetworkPolicy/a/typo"],
      field: `metadata.annotations[${ENFORCEMENT_ANNOTATION}]`,
      message: '"audit" is not Enforce or Audit: the policy is enforced',
    },
  ]);
  assert.deepEqual(probe([bad], "a/web", "a/db", 80), { verdict: "deny" });
  const findings = validatePolicy(sp("a", "x", { enforcement: "Sometimes" }) as never, {
    pods: [],
    namespaces: [],
  });
  assert.ok(findings.some((f) => f.field === "spec.enforcement" && /not Enforce or Audit/.test(f.message)));
});

test("promoting Audit -> Enforce is a change: the delta rewrites the entries, the incremental compiler agrees", () => {
  const deny = sp("a", "no-b", {
    enforcement: "Audit",
    ingress: [{ action: "Deny", endpoints: [{ namespaceSelector: { matchLabels: { team: "y" } } }] }],
  });
  const promoted = { ...deny, spec: { ...deny.spec, enforcement: "Enforce" } };
  const before = compile(inputsFromObjects([...base, allowAll, deny]), { node: "n1" }).state;
  const after = compile(inputsFromObjects([...base, allowAll, promoted]), { node: "n1" }).state;
  const delta = diffStates(before, after);
  assert.deepEqual(delta.endpoints.map((d) => d.key).sort(), ["a/db", "a/web"]);
  const inc = new IncrementalCompiler(inputsFromObjects([...base, allowAll, deny]), { node: "n1" });
  const applied = inc.apply({ type: "upsert", object: promoted as never });
  assert.equal(applied.recompiled, 2);
  assert.deepEqual(inc.state, after);
});

test("the capacity counts the merged entries", () => {
  const ports = (n: number, from: number) => Array.from({ length: n }, (_, i) => ({ port: from + 3 * i }));
  const enforced = np("a", "some", {
    podSelector: { matchLabels: { app: "db" } },
    ingress: [{ ports: ports(3, 100) }],
  });
  const more = audited(
    np("a", "more", { podSelector: { matchLabels: { app: "db" } }, ingress: [{ ports: ports(6, 1000) }] }),
  );
  const fits = compile(inputsFromObjects([...base, enforced]), { node: "n1", capacity: 6 });
  assert.deepEqual(fits.errors, []);
  const over = compile(inputsFromObjects([...base, enforced, more]), { node: "n1", capacity: 6 });
  assert.equal(over.errors.length, 1);
  assert.equal(over.errors[0].reason, "Overflow");
  assert.deepEqual(over.errors[0].policies.sort(), ["NetworkPolicy/a/more", "NetworkPolicy/a/some"]);
});
