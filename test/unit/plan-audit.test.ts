// `sluice plan` with audit mode (issue 13 §4): promoting an Audit policy to Enforce shows the rows it
// closes or opens, marked as a promotion, with the datapath's observed counters of its rules when given;
// Audit policies that stay in Audit are listed with what promoting them would change.
import assert from "node:assert/strict";
import { test } from "node:test";
import { formatPlan, observedFromStats, planReport } from "../../operator/src/cli/plan.ts";
import { inputsFromObjects } from "../../operator/src/policy/index.ts";
import { computeMatrix } from "../../operator/src/policy/matrix.ts";
import { ruleId } from "../../operator/src/policy/normalize.ts";
import { node, ns, pod } from "./policy-fixtures.ts";

const base = [
  ns("shop", { team: "x" }),
  ns("other", { team: "y" }),
  node("n1", "172.18.0.1"),
  pod("shop", "db", { app: "db" }, "10.0.1.2", "n1", [{ name: "pg", containerPort: 5432 }]),
  pod("shop", "backend", { app: "backend" }, "10.0.1.3", "n1"),
  pod("other", "intruder", { app: "x" }, "10.0.2.1", "n1"),
];
const deny = (enforcement: "Audit" | "Enforce") => ({
  kind: "SecurityPolicy",
  metadata: { namespace: "shop", name: "db-lockdown" },
  spec: {
    enforcement,
    endpointSelector: { matchLabels: { app: "db" } },
    ingress: [
      {
        name: "not-from-other-teams",
        action: "Deny",
        endpoints: [{ namespaceSelector: { matchLabels: { team: "y" } } }],
      },
      {
        name: "backend",
        action: "Allow",
        endpoints: [{ endpointSelector: { matchLabels: { app: "backend" } } }],
      },
    ],
  },
});
const side = (objects: unknown[]) => {
  const inputs = inputsFromObjects([...base, ...objects]);
  return { inputs, rows: computeMatrix(inputs, { audit: true }) };
};
const RULE = ruleId({
  kind: "SecurityPolicy",
  namespace: "shop",
  name: "db-lockdown",
  direction: "ingress",
  index: 0,
});

const LOCKDOWN = "SecurityPolicy/shop/db-lockdown";

test("Audit -> Enforce: the rows promotion closes, the policy marked as promoted, observed counters shown", () => {
  const report = planReport(side([deny("Audit")]), side([deny("Enforce")]), {
    rules: new Map([[RULE, { packets: 42, flows: 3 }]]),
    defaults: [],
  });
  assert.deepEqual(report.changes, [
    { from: "other/intruder", to: "shop/db", port: 5432, protocol: "TCP", verdict: "deny", change: "closed" },
  ]);
  assert.equal(report.audit.length, 1);
  assert.equal(report.audit[0].change, "promote");
  assert.deepEqual(report.audit[0].rules[0].observed, { packets: 42, flows: 3 });
  assert.equal(report.audit[0].rules[0].ruleId, RULE);
  assert.deepEqual(report.pending, []);
  assert.equal(
    formatPlan(report),
    [
      "promote Audit → Enforce: SecurityPolicy/shop/db-lockdown",
      '  SecurityPolicy/shop/db-lockdown ingress[0] "not-from-other-teams" (deny; observed 42 packets, 3 flows)',
      '  SecurityPolicy/shop/db-lockdown ingress[1] "backend" (allow)',
      "closed  other/intruder -> shop/db 5432/TCP (deny)",
    ].join("\n"),
  );
});

test("an Audit policy added: no connectivity changes; promoting it would close what it audits", () => {
  const report = planReport(side([]), side([deny("Audit")]));
  assert.deepEqual(report.changes, []);
  assert.equal(report.audit[0].change, "add-audit");
  assert.equal(report.audit[0].rules[0].observed, undefined);
  assert.deepEqual(report.pending, [
    { from: "other/intruder", to: "shop/db", port: 5432, protocol: "TCP", verdict: "deny", change: "closed" },
  ]);
  const text = formatPlan(report);
  assert.match(text, /^no connectivity changes$/m);
  assert.match(text, /still in Audit after the change/);
  assert.match(text, /^ {2}closed {2}other\/intruder -> shop\/db 5432\/TCP \(deny\)$/m);
});

test("Enforce -> Audit opens what the policy denied; deleting an Audit policy changes nothing", () => {
  const demote = planReport(side([deny("Enforce")]), side([deny("Audit")]));
  assert.equal(demote.audit[0].change, "demote");
  assert.deepEqual(
    demote.changes.map((r) => r.change),
    ["opened"],
  );
  const gone = planReport(side([deny("Audit")]), side([]));
  assert.equal(gone.audit[0].change, "delete-audit");
  assert.deepEqual(gone.changes, []);
  assert.deepEqual(gone.pending, []);
  // Without Audit policies there is nothing about audit at all.
  assert.deepEqual(planReport(side([]), side([])).audit, []);
});

test("--observed: sluice stats' JSON, audit rows summed per rule; bad input names the file and field", () => {
  const stat = (ruleId: number, mode: string, packets: number, flows: number) => ({
    policy: "SecurityPolicy/shop/db-lockdown",
    ruleId,
    mode,
    packets,
    bytes: packets * 60,
    flows,
    endpoints: 1,
  });
  const observed = observedFromStats(
    JSON.stringify({
      nodes: ["n1", "n2"],
      rules: [
        stat(RULE, "audit", 40, 2),
        stat(RULE, "audit", 2, 1),
        stat(RULE + 1, "enforce", 9, 9),
        // The audited default of shop/db, which db-lockdown isolates: on two nodes.
        ...[5, 2].map((n) => ({
          ...stat(0, "audit", n, 1),
          policy: "default",
          direction: "ingress",
          isolatedBy: [LOCKDOWN],
        })),
        { ...stat(0, "audit", 7, 7), policy: "default", direction: "egress", isolatedBy: ["Other/x"] },
      ],
    }),
    "stats.json",
  );
  assert.deepEqual([...observed.rules], [[RULE, { packets: 42, flows: 3 }]]);
  const report = planReport(side([deny("Audit")]), side([deny("Enforce")]), observed);
  assert.deepEqual(report.audit[0].rules[0].observed, { packets: 42, flows: 3 });
  assert.deepEqual(report.audit[0].isolation, [
    { direction: "ingress", isolatedBy: [LOCKDOWN], packets: 7, flows: 2 },
  ]);
  assert.match(
    formatPlan(report),
    /^ {2}default ingress of the endpoints it isolates \(isolated by SecurityPolicy\/shop\/db-lockdown\) \(deny; observed 7 packets, 2 flows\)$/m,
  );
  assert.throws(() => observedFromStats("{", "s.json"), /--observed s\.json: not JSON/);
  assert.throws(() => observedFromStats("[]", "s.json"), /no "rules" list/);
  assert.throws(
    () => observedFromStats(JSON.stringify({ rules: [{ ruleId: 1, packets: "3", flows: 0 }] }), "s.json"),
    /rules\[0\]\.packets is not a number/,
  );
});
