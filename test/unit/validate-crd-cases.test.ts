// `sluice validate` must flag what the API server rejects: the same objects that
// test/integration/kubectl-samples.test.ts has a real API server reject (every CEL rule at every place,
// and the schema cases), and the semantic cases the operator marks Accepted=False. Otherwise a GitOps
// CI that runs `sluice validate` passes a change the cluster then refuses.
import assert from "node:assert/strict";
import { test } from "node:test";
import { formatMessage, validateDocuments } from "../../operator/src/cli/validate.ts";
import { CEL_CASES, fieldOf, type RejectCase, SCHEMA_CASES, SEMANTIC_CASES } from "../support/crd-cases.ts";

function messages(object: unknown): string[] {
  return validateDocuments([{ path: "case.yaml", line: 1, object }]).map(formatMessage);
}

// The field validate reports: the rule's place (for CEL cases) or the first expected string that is a path.
function fieldFor(x: RejectCase): string | undefined {
  if (x.rule) return fieldOf(x.rule.at, x.rule.fieldPath) || undefined;
  return x.expect.find((s) => /^spec(\.|$)/.test(s));
}

// validate may name a field below the API server's (spec.ingress[1].action for a rule on spec). ajv
// names a missing property on its parent ("spec: must have required property 'tier'"), the API
// server the property itself ("spec.tier: Required value").
function namesField(message: string, field: string): boolean {
  if ([": ", ".", "["].some((next) => message.includes(`: ${field}${next}`))) return true;
  const cut = field.lastIndexOf(".");
  return (
    cut > 0 &&
    message.includes(`: ${field.slice(0, cut)}: must have required property '${field.slice(cut + 1)}'`)
  );
}

test("every object the API server rejects for a CEL rule, sluice validate rejects on the same field", () => {
  const misses: string[] = [];
  for (const x of CEL_CASES) {
    // Transition rules compare with the stored object: nothing to check in a file. SecurityIdentity
    // objects are the operator's, never in Git: `sluice validate` checks only their schema.
    if (x.before || x.object.kind === "SecurityIdentity") continue;
    const got = messages(x.object);
    const field = fieldFor(x);
    if (got.length === 0) misses.push(`${x.what}: not flagged: ${JSON.stringify(x.object)}`);
    else if (field && !got.some((m) => namesField(m, field)))
      misses.push(`${x.what}: flagged elsewhere: ${got.join(" | ")}`);
  }
  assert.deepEqual(misses, []);
});

test("every object the API server rejects for its schema, sluice validate rejects on the same field", () => {
  const misses: string[] = [];
  for (const x of SCHEMA_CASES) {
    const got = messages(x.object);
    const field = fieldFor(x);
    if (got.length === 0) misses.push(`${x.what}: not flagged`);
    else if (field && !got.some((m) => namesField(m, field)))
      misses.push(`${x.what}: flagged elsewhere: ${got.join(" | ")}`);
  }
  assert.deepEqual(misses, []);
});

test("the semantic cases: sluice validate reports the operator's field and message", () => {
  for (const x of SEMANTIC_CASES) {
    const got = messages(x.object);
    // Named-port checks need the pods; this one does not apply without them.
    if (x.message.startsWith("no pod has")) continue;
    assert.ok(
      got.some((m) => m.endsWith(`: ${x.field}: ${x.message}`) || m.includes(`: ${x.field}: ${x.message}`)),
      `${x.what}: ${got.join(" | ") || "nothing reported"}`,
    );
  }
});
