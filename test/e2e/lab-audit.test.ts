// Audit mode and per-rule counters (issue 13 §3/§4) with real traffic: `sluice lab up` (a real
// kube-apiserver, the operator, a Kubernetes-mode agent per node on the real kernel), policies applied
// with kubectl, every pod probing every other. The same deny-type policy (fixtures/audit/db-guard.yaml)
// enforced drops a set of probes; in Audit it drops none, and the audit reports (monitor flows with
// verdict audit, the rule counters' audit rows of `sluice stats --lab -o json`) name exactly those
// flows and the rule or isolation that dropped them; promoted back to Enforce, exactly those drop again.
// An Audit allow under an enforced isolation opens nothing and reports what it would open; promoted
// (its annotation set to Enforce), exactly that opens. `sluice stats` shows what matched and the rules
// that never did, as a table and as JSON. Every expected set is written out from the manifests below,
// and checked against the compiler's prediction and the probes' measurement.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type MatrixJson, type MatrixRow, sortRows } from "../../operator/src/api/matrix-rows.ts";
import { kubectlOk } from "../../operator/src/lab/cluster-setup.ts";
import { removeLeftovers } from "../../operator/src/lab/up-leftovers.ts";
import { readState } from "../../operator/src/lab/up-state.ts";
import { loadObjects } from "../../operator/src/manifests/load.ts";
import type { FlowRecord, MonitorRecord } from "../../operator/src/monitor/flow-record.ts";
import { computeMatrix, inputsFromObjects } from "../../operator/src/policy/index.ts";
import type { RuleStat } from "../../operator/src/stats/rule-stats.ts";
import type { PlanReport } from "../../operator/src/cli/plan.ts";
import { DEMO_TOPOLOGY } from "../support/kube-lab.ts";
import { privilegeProblem, requirePrivileged } from "../support/privileged.ts";
import { agentMissing, fixture, sluice } from "./lab-support.ts";

const stateDir = `/run/sluice-lab/up-audit-${randomBytes(3).toString("hex")}`;
process.env.SLUICE_LAB_STATE_DIR = stateDir;
const work = mkdtempSync(join(tmpdir(), "sluice-lab-audit-test-"));

const DB_GUARD = readFileSync(fixture("audit/db-guard.yaml"), "utf8");
const BACKEND_GUARD = readFileSync(fixture("audit/backend-guard.yaml"), "utf8");
const BACKEND_SCRAPE = readFileSync(fixture("audit/backend-scrape.yaml"), "utf8");
const DB = "SecurityPolicy/shop/db-guard";
const SCRAPE = "NetworkPolicy/shop/backend-scrape";

// A manifest with one line changed; the line must be there, or the test would compare a policy with
// itself.
function withLine(text: string, from: string, to: string): string {
  assert.ok(text.includes(from), `the fixture has ${JSON.stringify(from)}`);
  return text.replace(from, to);
}
const dbGuard = (mode: "Audit" | "Enforce") =>
  withLine(DB_GUARD, "enforcement: Audit", `enforcement: ${mode}`);
const backendScrape = (mode: "Audit" | "Enforce") =>
  withLine(BACKEND_SCRAPE, "sluice.dev/enforcement: Audit", `sluice.dev/enforcement: ${mode}`);

// A flow as a probe names it: "from -> to port/PROTOCOL".
type FlowKey = string;
const keyOf = (from: string | undefined, to: string | undefined, port: number, protocol: string): FlowKey =>
  `${from} -> ${to} ${port}/${protocol}`;
const rowKey = (r: MatrixRow) => keyOf(r.from, r.to, r.port, r.protocol);
const flowKey = (f: FlowRecord) => keyOf(f.source.pod, f.destination.pod, f.port, f.protocol);
const sorted = (xs: Iterable<string>) => [...new Set(xs)].sort();

let kubeconfig = "";
let up = false;

async function cleanup(): Promise<void> {
  if (existsSync(stateDir)) await sluice(["lab", "down"]);
  if (existsSync(stateDir)) await removeLeftovers(stateDir, readState(stateDir));
}

function kubectl(args: string[], input?: string): Promise<string> {
  return kubectlOk(args, kubeconfig, input, { cacheDir: join(work, "kubectl-cache") });
}
const apply = (manifest: string) => kubectl(["apply", "-f", "-"], manifest);

async function probe(): Promise<MatrixRow[]> {
  const r = await sluice(["lab", "probe", "-o", "json"]);
  assert.equal(r.code, 0, `lab probe failed:\n${r.stderr}`);
  return sortRows((JSON.parse(r.stdout) as MatrixJson).results);
}

// Probes until the lab measures `want` (the agents apply asynchronously).
async function probeUntil(want: readonly MatrixRow[], what: string): Promise<void> {
  let got: MatrixRow[] = [];
  for (const t0 = Date.now(); Date.now() - t0 < 60_000; await new Promise((r) => setTimeout(r, 300))) {
    got = await probe();
    if (JSON.stringify(got) === JSON.stringify(want)) return;
  }
  const diff = got.filter((g) => want.find((w) => rowKey(w) === rowKey(g))?.verdict !== g.verdict);
  assert.fail(`${what}: not measured within a minute; differing: ${diff.map(rowKey).join(", ")}`);
}

const denied = (rows: readonly MatrixRow[]) => sorted(rows.filter((r) => r.verdict === "deny").map(rowKey));

// What the compiler says of the topology and these manifests: the enforced verdicts, and the rows the
// Audit policies would change.
function predicted(...manifests: string[]): { rows: MatrixRow[]; audited: FlowKey[] } {
  const files = manifests.map((m, i) => manifestFile(`predicted-${i}.yaml`, m));
  const all = computeMatrix(inputsFromObjects(loadObjects([DEMO_TOPOLOGY, ...files])), { audit: true });
  return {
    rows: sortRows(all.map(({ audit: _, ...r }) => r)),
    audited: sorted(all.filter((r) => r.audit !== undefined).map(rowKey)),
  };
}

async function flowsSince(since: string, ...args: string[]): Promise<FlowRecord[]> {
  // The agents read the ring buffer every few ms: let the last probes' events arrive.
  await new Promise((r) => setTimeout(r, 500));
  const r = await sluice(["monitor", "--lab", "-o", "json", "--since", since, ...args]);
  assert.equal(r.code, 0, `monitor failed:\n${r.stderr}`);
  const records = r.stdout
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as MonitorRecord);
  return records.filter((x): x is FlowRecord => x.type === "flow");
}

// Per flow: what decided it, as the monitor spells it.
function namedBy(flows: readonly FlowRecord[], decided: (f: FlowRecord) => string): Map<FlowKey, string[]> {
  const out = new Map<FlowKey, Set<string>>();
  for (const f of flows) {
    const k = flowKey(f);
    if (!out.has(k)) out.set(k, new Set());
    out.get(k)!.add(decided(f));
  }
  return new Map([...out].sort().map(([k, v]) => [k, sorted(v)]));
}

// `sluice stats --lab -o json`: its rows (and, in `saveTo`, the output as printed).
async function stats(args: string[] = [], saveTo?: string): Promise<RuleStat[]> {
  const r = await sluice(["stats", "--lab", "-o", "json", ...args]);
  assert.equal(r.code, 0, `stats failed:\n${r.stderr}`);
  const out = JSON.parse(r.stdout) as { nodes: string[]; rules: RuleStat[] };
  assert.deepEqual(out.nodes, ["node-a", "node-b"], "every node's counters were read");
  if (saveTo) writeFileSync(saveTo, r.stdout);
  return out.rules;
}

function manifestFile(name: string, text: string): string {
  const f = join(work, name);
  writeFileSync(f, text);
  return f;
}

// A counter row as people name it: "policy direction[index] mode", "default ingress audit".
const statName = (s: RuleStat) =>
  `${s.policy} ${s.direction ?? ""}${s.index === undefined ? "" : `[${s.index}]`} ${s.mode}`;
// A flow's deciding rule in the same spelling (an audit flow: the Audit policies' decision).
function ruleOfFlow(f: FlowRecord, mode: RuleStat["mode"]): string {
  const rule = mode === "audit" ? f.audit?.rule : f.rule;
  return rule ? `${rule.policy} ${rule.direction}[${rule.index}] ${mode}` : `default ${f.direction} ${mode}`;
}

// What the counters added between two reads, per row name (rows absent before count from 0).
function added(before: readonly RuleStat[], now: readonly RuleStat[]): Map<string, RuleStat> {
  const was = new Map(before.map((s) => [statName(s), s]));
  const out = new Map<string, RuleStat>();
  for (const s of now) {
    const b = was.get(statName(s));
    out.set(statName(s), {
      ...s,
      packets: s.packets - (b?.packets ?? 0),
      bytes: s.bytes - (b?.bytes ?? 0),
      flows: s.flows - (b?.flows ?? 0),
    });
  }
  return out;
}

const count = <T>(xs: readonly T[], key: (x: T) => string) => {
  const m = new Map<string, number>();
  for (const x of xs) m.set(key(x), (m.get(key(x)) ?? 0) + 1);
  return new Map([...m].sort());
};

// Shared by the tests, in order: the probes db-guard drops when enforced.
let enforcedDrops: FlowKey[] | undefined;
let enforcedNames: Map<FlowKey, string[]> | undefined;

describe("audit mode in the lab: real packets, monitor, sluice stats", { timeout: 600_000 }, () => {
  let baseline: MatrixRow[] = [];
  before(async () => {
    if (privilegeProblem() || agentMissing()) return;
    const r = await sluice(["lab", "up", "-f", DEMO_TOPOLOGY]);
    assert.equal(r.code, 0, `lab up failed:\n${r.stderr}`);
    kubeconfig = /^export KUBECONFIG=(.+)$/m.exec(r.stdout)?.[1] ?? "";
    assert.ok(kubeconfig, r.stdout);
    up = true;
    baseline = await probe();
  });
  after(async () => {
    await cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  test("a deny-type policy: Enforce drops a set of probes; in Audit nothing drops and exactly that set is reported", async (t) => {
    if (!requirePrivileged(t, agentMissing)) return;
    assert.ok(up);
    assert.deepEqual(denied(baseline), [], "without policies every probe is allowed");

    // What db-guard closes, from its manifest: into db, the frontend by the isolation (only the backend
    // may, on 5432) and Prometheus by the Deny of the ops namespace; out of db, all but the backend.
    const isolation = `default deny (isolated by ${DB})`;
    const want = new Map<FlowKey, string[]>([
      ["monitoring/prometheus -> shop/db 5432/TCP", [`${DB} ingress[1] "no-monitoring"`]],
      ["shop/db -> monitoring/prometheus 9090/TCP", [isolation]],
      ["shop/db -> shop/frontend 80/TCP", [isolation]],
      ["shop/frontend -> shop/db 5432/TCP", [isolation]],
    ]);
    const prediction = predicted(dbGuard("Enforce"));
    assert.deepEqual(denied(prediction.rows), [...want.keys()], "the compiler agrees with the manifest");
    assert.deepEqual(predicted(dbGuard("Audit")).audited, [...want.keys()], "and so does its audit");

    // Enforce: the probes db-guard closes drop, each named by its rule or the isolation.
    await apply(dbGuard("Enforce"));
    await probeUntil(prediction.rows, "db-guard enforced");
    let since = new Date().toISOString();
    const enforced = await probe();
    enforcedDrops = denied(enforced);
    assert.deepEqual(enforcedDrops, [...want.keys()], "the probes Enforce drops");
    const deniedFlows = await flowsSince(since, "--verdict", "denied");
    enforcedNames = namedBy(deniedFlows, (f) => f.decidedBy);
    assert.deepEqual(enforcedNames, want, "the monitor names each dropped flow and what dropped it");

    // Audit: the same traffic, nothing drops.
    await apply(dbGuard("Audit"));
    await probeUntil(baseline, "db-guard in Audit");
    since = new Date().toISOString();
    const countersBefore = await stats();
    assert.deepEqual(
      await probe(),
      baseline,
      "in Audit every probe gets the verdict it gets without the policy",
    );
    const flows = await flowsSince(since);
    const statsJson = join(work, "stats-audit.json");
    const countersAfter = await stats([], statsJson);
    assert.deepEqual(
      flows.filter((f) => f.verdict === "denied").map(flowKey),
      [],
      "an Audit policy denies nothing",
    );
    const audit = flows.filter((f) => f.verdict === "audit");
    for (const f of audit) {
      assert.equal(f.enforced, "allowed", JSON.stringify(f));
      assert.equal(f.audit?.verdict, "denied", JSON.stringify(f));
    }
    // Exactly the flows Enforce dropped, each named as Enforce named it.
    assert.deepEqual(
      namedBy(audit, (f) => f.audit!.decidedBy),
      enforcedNames,
      "the audit flows are the dropped ones, with their rules",
    );
    for (const f of audit.filter((x) => x.audit?.rule === undefined))
      assert.deepEqual(f.audit?.isolatedBy, [DB], JSON.stringify(f));
    // `--verdict audit` selects exactly those.
    assert.deepEqual(sorted((await flowsSince(since, "--verdict", "audit")).map(flowKey)), enforcedDrops);

    // The counters: the audit rows that rose are the rules (and audited defaults) the audit flows name;
    // each counted one flow per decision the flows report, and its packets.
    const delta = added(countersBefore, countersAfter);
    const rose = [...delta.values()].filter((s) => s.mode === "audit" && s.packets > 0);
    const perRule = count(audit, (f) => ruleOfFlow(f, "audit"));
    assert.deepEqual(sorted(rose.map(statName)), [...perRule.keys()], "audit rows that counted");
    for (const s of rose) {
      assert.equal(s.flows, perRule.get(statName(s)), `${statName(s)}: a flow per audited decision`);
      assert.ok(s.packets >= s.flows && s.bytes > 0, statName(s));
    }
    assert.deepEqual(
      [...perRule.keys()],
      [`${DB} ingress[1] audit`, "default egress audit", "default ingress audit"],
      "the Deny rule and the isolation on both sides",
    );
    // The defaults name the policy whose isolation they audit; `sluice stats db-guard` lists them.
    for (const s of rose) if (s.policy === "default") assert.deepEqual(s.isolatedBy, [DB], statName(s));
    const listed = await stats(["db-guard"]);
    assert.deepEqual(sorted(listed.filter((s) => s.mode === "audit" && s.packets > 0).map(statName)), [
      ...perRule.keys(),
    ]);
    // An Audit policy decides nothing: each of its rules is listed once, in mode audit, on every node.
    assert.deepEqual(
      sorted(listed.filter((s) => s.policy === DB).map(statName)),
      sorted([0, 1, 2, 3].map((i) => `${DB} ingress[${i}] audit`).concat(`${DB} egress[0] audit`)),
    );

    // `sluice plan` of the promotion, with what the lab counted: it closes what Enforce dropped, and
    // shows the Deny rule's audit count beside it.
    const plan = await sluice([
      "plan",
      ...["--before", DEMO_TOPOLOGY, "--before", manifestFile("db-guard-audit.yaml", dbGuard("Audit"))],
      ...["--after", DEMO_TOPOLOGY, "--after", manifestFile("db-guard-enforce.yaml", dbGuard("Enforce"))],
      ...["--observed", statsJson, "-o", "json"],
    ]);
    assert.equal(plan.code, 0, plan.stderr);
    const report = JSON.parse(plan.stdout) as PlanReport;
    assert.deepEqual(
      sorted(report.changes.map((r) => `${r.change} ${keyOf(r.from, r.to, r.port, r.protocol)}`)),
      enforcedDrops.map((k) => `closed ${k}`),
    );
    assert.deepEqual(
      report.audit.map((p) => [p.policy, p.change]),
      [[DB, "promote"]],
    );
    const deny = report.audit[0]!.rules.find((r) => r.direction === "ingress" && r.index === 1);
    const counted = countersAfter.find((s) => statName(s) === `${DB} ingress[1] audit`);
    assert.ok(counted && counted.packets > 0);
    assert.deepEqual(deny?.observed, { packets: counted.packets, flows: counted.flows });
    // ...and what the audited default of the endpoints it isolates counted, per direction.
    const isolating = countersAfter.filter(
      (s) => s.policy === "default" && s.mode === "audit" && s.isolatedBy?.includes(DB),
    );
    const text = (d: { direction?: string; packets: number; flows: number }) =>
      `${d.direction} ${d.packets} packets ${d.flows} flows`;
    assert.equal(isolating.length, 2, "ingress and egress isolation counted");
    assert.deepEqual(sorted((report.audit[0]!.isolation ?? []).map(text)), sorted(isolating.map(text)));
  });

  test("promoting db-guard from Audit to Enforce drops exactly the flows it audited", async (t) => {
    if (!requirePrivileged(t, agentMissing)) return;
    assert.ok(enforcedDrops, "the previous test measured what Enforce drops");
    await apply(dbGuard("Enforce"));
    await probeUntil(predicted(dbGuard("Enforce")).rows, "db-guard promoted");
    const since = new Date().toISOString();
    assert.deepEqual(denied(await probe()), enforcedDrops);
    const flows = await flowsSince(since);
    assert.deepEqual(
      namedBy(
        flows.filter((f) => f.verdict === "denied"),
        (f) => f.decidedBy,
      ),
      enforcedNames,
    );
    assert.deepEqual(
      flows.filter((f) => f.verdict === "audit").map(flowKey),
      [],
      "enforced, nothing is audited",
    );
  });

  test("sluice stats: rules that matched count, rules that never did show 0; table and JSON", async (t) => {
    if (!requirePrivileged(t, agentMissing)) return;
    assert.ok(up);
    // db-guard is enforced (previous test): one more round of probes, then its rows.
    await probe();
    // The default rows of db's endpoint match too (db-guard isolates it); its own rules are these.
    const all = await stats([DB]);
    const rules = all.filter((s) => s.policy === DB);
    const row = (direction: string, index: number) => {
      const r = rules.find((s) => s.direction === direction && s.index === index && s.mode === "enforce");
      assert.ok(r, `${DB} ${direction}[${index}] has a row: ${JSON.stringify(rules)}`);
      return r;
    };
    // Matched: the backend into db (5432), Prometheus denied, db out to the backend.
    for (const [dir, i] of [
      ["ingress", 0],
      ["ingress", 1],
      ["egress", 0],
    ] as const) {
      const r = row(dir, i);
      assert.ok(r.packets > 0 && r.flows > 0 && r.bytes > 0, JSON.stringify(r));
      assert.ok(
        r.endpoints === 1 && r.nodes === 1,
        `only db's endpoint on node-b carries it: ${JSON.stringify(r)}`,
      );
      assert.ok(r.lastMatched, JSON.stringify(r));
    }
    assert.equal(row("ingress", 1).action, "deny");
    // Dead: from-batch selects no pod (no entry anywhere); frontend-admin's port sees no traffic.
    const noEntry = row("ingress", 2);
    assert.deepEqual(
      [noEntry.packets, noEntry.flows, noEntry.endpoints, noEntry.lastMatched],
      [0, 0, 0, undefined],
    );
    const never = row("ingress", 3);
    assert.deepEqual([never.packets, never.flows, never.endpoints, never.lastMatched], [0, 0, 1, undefined]);
    assert.deepEqual(
      sorted(rules.map(statName)),
      sorted([0, 1, 2, 3].map((i) => `${DB} ingress[${i}] enforce`).concat(`${DB} egress[0] enforce`)),
      "every rule of the enforced policy, once",
    );

    // The table: a header, and the dead rules said in words.
    const table = await sluice(["stats", "--lab", "db-guard"]);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trim().split("\n");
    assert.match(
      lines[0]!,
      /^POLICY\s+RULE\s+ACTION\s+MODE\s+PACKETS\s+BYTES\s+FLOWS\s+ENDPOINTS\s+LAST MATCHED$/,
    );
    assert.equal(lines.length, 1 + all.length, table.stdout);
    assert.ok(
      lines.some((l) =>
        /SecurityPolicy\/shop\/db-guard\s+ingress\[2\] "from-batch"\s+allow\s+enforce\s+0\s+0\s+0\s+0\s+no entry$/.test(
          l,
        ),
      ),
      table.stdout,
    );
    assert.ok(
      lines.some((l) =>
        /SecurityPolicy\/shop\/db-guard\s+ingress\[3\] "frontend-admin"\s+allow\s+enforce\s+0\s+0\s+0\s+1\s+never$/.test(
          l,
        ),
      ),
      table.stdout,
    );
    assert.ok(
      lines.some((l) => /ingress\[1\] "no-monitoring"\s+deny\s+enforce\s+[1-9]\d*\s/.test(l)),
      table.stdout,
    );

    // One node only: db runs on node-b, so node-a carries none of db-guard's rules.
    const nodeA = await sluice(["stats", "--lab", "--node", "node-a", "db-guard", "-o", "json"]);
    assert.equal(nodeA.code, 0, nodeA.stderr);
    const a = JSON.parse(nodeA.stdout) as { nodes: string[]; rules: RuleStat[] };
    assert.deepEqual(a.nodes, ["node-a"]);
    assert.ok(
      a.rules.every((s) => s.endpoints === 0 && s.packets === 0),
      nodeA.stdout,
    );
  });

  test("an Audit allow under an enforced isolation: traffic stays denied, the audit names what it would open; promoted, exactly that opens", async (t) => {
    if (!requirePrivileged(t, agentMissing)) return;
    assert.ok(up);
    await kubectl(["delete", "securitypolicy", "-n", "shop", "db-guard"]);
    await probeUntil(baseline, "db-guard deleted");

    // backend-guard isolates the backend (only the frontend, on 8080); backend-scrape, in Audit, would
    // let Prometheus in on 9100/TCP and 5000/UDP.
    const wouldOpen = [
      "monitoring/prometheus -> shop/backend 5000/UDP",
      "monitoring/prometheus -> shop/backend 9100/TCP",
    ];
    const prediction = predicted(BACKEND_GUARD, backendScrape("Audit"));
    assert.deepEqual(prediction.audited, wouldOpen, "the compiler agrees with the manifests");
    await apply(`${BACKEND_GUARD}\n---\n${backendScrape("Audit")}`);
    await probeUntil(prediction.rows, "backend-guard enforced, backend-scrape in Audit");
    const since = new Date().toISOString();
    const countersBefore = await stats();
    const measured = await probe();
    assert.deepEqual(measured, prediction.rows);
    const closed = denied(measured);
    assert.deepEqual(
      closed,
      [
        "monitoring/prometheus -> shop/backend 5000/UDP",
        "monitoring/prometheus -> shop/backend 8080/TCP",
        "monitoring/prometheus -> shop/backend 9100/TCP",
        "shop/db -> shop/backend 5000/UDP",
        "shop/db -> shop/backend 8080/TCP",
        "shop/db -> shop/backend 9100/TCP",
        "shop/frontend -> shop/backend 5000/UDP",
        "shop/frontend -> shop/backend 9100/TCP",
      ],
      "the Audit allow opens nothing",
    );
    const flows = await flowsSince(since);
    const countersAfter = await stats();
    const audit = flows.filter((f) => f.verdict === "audit");
    const rule = `${SCRAPE} ingress[0]`;
    assert.deepEqual(
      namedBy(audit, (f) => `${f.enforced} -> ${f.audit?.verdict} by ${f.audit?.decidedBy}`),
      new Map(wouldOpen.map((k) => [k, [`denied -> allowed by ${rule}`]])),
      "the audit flows are exactly what the Audit allow would open",
    );
    // Denied flows: every closed probe, none of them allowed by the audit in passing.
    assert.deepEqual(sorted(flows.filter((f) => f.verdict !== "allowed").map(flowKey)), closed);

    const delta = added(countersBefore, countersAfter);
    const rose = [...delta.values()].filter((s) => s.mode === "audit" && s.packets > 0);
    const perRule = count(audit, (f) => ruleOfFlow(f, "audit"));
    assert.deepEqual(sorted(rose.map(statName)), [`${rule} audit`]);
    // Nothing is allowed, so every packet was a decision: a flow per audited packet.
    for (const s of rose)
      assert.deepEqual([s.flows, s.packets], [perRule.get(statName(s)), perRule.get(statName(s))]);
    const guard = delta.get("SecurityPolicy/shop/backend-guard ingress[0] enforce");
    assert.ok(guard && guard.packets > 0 && guard.flows > 0, "the frontend's allowed probes count");

    // Promoted by its annotation: exactly the audited flows open.
    await apply(backendScrape("Enforce"));
    const promoted = predicted(BACKEND_GUARD, backendScrape("Enforce"));
    await probeUntil(promoted.rows, "backend-scrape promoted");
    assert.deepEqual(
      closed.filter((k) => !denied(promoted.rows).includes(k)),
      wouldOpen,
      "promoting opens what was audited",
    );
    const now = await probe();
    assert.deepEqual(
      closed.filter((k) => !denied(now).includes(k)),
      wouldOpen,
    );
    const promotedStats = await stats([SCRAPE]);
    assert.ok(
      promotedStats.some((s) => s.mode === "enforce" && s.index === 0 && s.packets > 0),
      `the promoted rule decides: ${JSON.stringify(promotedStats)}`,
    );
  });
});
