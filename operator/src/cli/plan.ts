// `sluice plan --before <dir> --after <dir> [--ports ...] [-o table|json|yaml]`: the connectivity rows
// that a change of manifests opens or closes. Audit mode (issue 13 §4): a policy whose enforcement
// changes (Audit -> Enforce is a promotion) is named above the rows its change opens or closes, with
// what the datapath observed of its rules when counters are given (planReport's `observed`, keyed by
// rule id); the Audit policies still in Audit after the change are listed with the rows promoting
// them would open or close.
import { readFileSync } from "node:fs";
import { type MatrixRow, parsePorts } from "../api/matrix-rows.ts";
import { collectPolicies, type PolicyInputs, policyObjects } from "../policy/compile.ts";
import { enforcementName } from "../policy/enforcement.ts";
import { type Direction, ReservedRuleId } from "../policy/mapstate.ts";
import type { RuleStat } from "../stats/rule-stats.ts";
import type { AuditedRow } from "../policy/matrix.ts";
import { type NormPolicy, policyKey } from "../policy/normalize.ts";
import { formatRule, ruleNameInSpec, ruleNameOf, type RuleName } from "../policy/rule-names.ts";
import { checkInputs } from "./inputs.ts";
import { matrixFromPaths } from "./matrix.ts";
import { outputFormat, outputOption, writeOutput } from "./output.ts";
import { flagValue, parseCommandArgs, UsageError } from "./usage.ts";

const usage =
  "usage: sluice plan --before <file or dir>... --after <file or dir>... [--ports 80/TCP]\n" +
  "                   [--observed <sluice stats -o json output>] [-o table|json|yaml]\n" +
  "       (- for one of them: manifests from stdin, e.g. --after -)\n" +
  "--observed: what the cluster's datapath counted of each Audit policy rule (`sluice stats -o json`),\n" +
  "shown beside the rules a promotion would enforce.";

export interface PlanRow {
  from: string;
  to: string;
  port: number;
  protocol: string;
  change: "opened" | "closed" | "added" | "removed";
  verdict: "allow" | "deny";
}

export function planRows(before: readonly MatrixRow[], after: readonly MatrixRow[]): PlanRow[] {
  const key = (r: MatrixRow) => `${r.from}|${r.to}|${r.port}|${r.protocol}`;
  const old = new Map(before.map((r) => [key(r), r]));
  const now = new Map(after.map((r) => [key(r), r]));
  const out: PlanRow[] = [];
  for (const r of after) {
    const o = old.get(key(r));
    const row = { from: r.from, to: r.to, port: r.port, protocol: r.protocol, verdict: r.verdict };
    if (!o) {
      // A new pod pair: only worth a line when it is open.
      if (r.verdict === "allow") out.push({ ...row, change: "added" });
    } else if (o.verdict !== r.verdict)
      out.push({ ...row, change: r.verdict === "allow" ? "opened" : "closed" });
  }
  for (const r of before)
    if (!now.has(key(r)) && r.verdict === "allow")
      out.push({
        from: r.from,
        to: r.to,
        port: r.port,
        protocol: r.protocol,
        verdict: r.verdict,
        change: "removed",
      });
  return out;
}

/** What the datapath counted for one rule (sluice stats): the agent's per-rule counters summed. */
export interface ObservedCounters {
  packets: number;
  flows: number;
}

/**
 * The audited default of the endpoints some Audit policies isolate, in one direction: what it would
 * have denied (sluice stats' audit rows of policy "default"), with the policies isolating them.
 */
export interface ObservedDefault extends ObservedCounters {
  direction: Direction;
  isolatedBy: string[];
}

/** What `--observed` gives: per rule id, and the audited defaults. */
export interface ObservedStats {
  rules: ReadonlyMap<number, ObservedCounters>;
  defaults: readonly ObservedDefault[];
}

export type EnforcementChange = "promote" | "demote" | "add-audit" | "delete-audit";

const CHANGE_TEXT: Record<EnforcementChange, string> = {
  promote: "promote Audit → Enforce",
  demote: "demote Enforce → Audit",
  "add-audit": "add in Audit",
  "delete-audit": "delete while in Audit",
};

/** A policy in audit mode before or after the change, and what the change does to its mode. */
export interface AuditPolicyPlan {
  policy: string;
  before?: "Enforce" | "Audit";
  after?: "Enforce" | "Audit";
  change?: EnforcementChange;
  // Its rules (of the version in Audit), with what the datapath observed of each when counters were given.
  rules: Array<RuleName & { observed?: ObservedCounters }>;
  // The audited defaults this policy takes part in (it isolates their endpoints), when counters were given.
  isolation?: ObservedDefault[];
}

/** Rows the Audit policies still in Audit after the change would open or close if promoted. */
export interface PendingRow extends PlanRow {
  change: "opened" | "closed";
}

export interface PlanReport {
  changes: PlanRow[];
  audit: AuditPolicyPlan[];
  pending: PendingRow[];
}

function auditPlans(
  before: PolicyInputs,
  after: PolicyInputs,
  observed: ObservedStats | undefined,
): AuditPolicyPlan[] {
  const index = (inputs: PolicyInputs) => new Map(collectPolicies(inputs).map((p) => [p.key, p]));
  const [b, a] = [index(before), index(after)];
  const specs = new Map<string, unknown>();
  for (const inputs of [before, after])
    for (const o of policyObjects(inputs)) {
      const ns =
        o.kind === "NetworkPolicy" || o.kind === "SecurityPolicy"
          ? (o.metadata.namespace ?? "default")
          : undefined;
      specs.set(policyKey(o.kind, ns, o.metadata.name ?? ""), o.spec);
    }
  const out: AuditPolicyPlan[] = [];
  for (const key of [...new Set([...b.keys(), ...a.keys()])].sort()) {
    const [pb, pa] = [b.get(key), a.get(key)];
    if (!pb?.audit && !pa?.audit) continue;
    const change: EnforcementChange | undefined =
      pb?.audit && pa && !pa.audit
        ? "promote"
        : pa?.audit && pb && !pb.audit
          ? "demote"
          : !pb
            ? "add-audit"
            : !pa
              ? "delete-audit"
              : undefined;
    const shown = (pb?.audit ? pb : pa) as NormPolicy;
    const rules = shown.rules.map((r) => {
      const name = ruleNameOf(r.ref, r.action, r.id, ruleNameInSpec(specs.get(key), r.ref));
      const seen = observed?.rules.get(r.id);
      return seen ? { ...name, observed: seen } : name;
    });
    const isolation = observed?.defaults.filter((d) => d.isolatedBy.includes(key)) ?? [];
    out.push({
      policy: key,
      ...(isolation.length > 0 ? { isolation } : {}),
      ...(pb ? { before: enforcementName(pb.audit) } : {}),
      ...(pa ? { after: enforcementName(pa.audit) } : {}),
      ...(change ? { change } : {}),
      rules,
    });
  }
  return out;
}

/**
 * The plan of a change from the matrices (computed with their audit verdicts) and inputs of both sides.
 * `observed`: per-rule counters by rule id, from the cluster (sluice stats); each Audit policy's rules
 * show them, and the audited defaults of the endpoints it isolates.
 */
export function planReport(
  before: { rows: readonly AuditedRow[]; inputs: PolicyInputs },
  after: { rows: readonly AuditedRow[]; inputs: PolicyInputs },
  observed?: ObservedStats,
): PlanReport {
  const pending: PendingRow[] = after.rows
    .filter((r) => r.audit !== undefined)
    .map((r) => ({
      from: r.from,
      to: r.to,
      port: r.port,
      protocol: r.protocol,
      verdict: r.audit!,
      change: r.audit === "allow" ? "opened" : "closed",
    }));
  return {
    changes: planRows(before.rows, after.rows),
    audit: auditPlans(before.inputs, after.inputs, observed),
    pending,
  };
}

const observedText = (o: ObservedCounters) => `observed ${o.packets} packets, ${o.flows} flows`;

const rowText = (r: PlanRow) =>
  `${r.change.padEnd(7)} ${r.from} -> ${r.to} ${r.port}/${r.protocol} (${r.verdict})`;

export function formatPlan(report: PlanReport): string {
  const lines: string[] = [];
  const policyLines = (p: AuditPolicyPlan) => [
    `${p.change ? CHANGE_TEXT[p.change] : "in Audit"}: ${p.policy}`,
    ...p.rules.map(
      (r) => `  ${formatRule(r)} (${r.action}${r.observed ? `; ${observedText(r.observed)}` : ""})`,
    ),
    ...(p.isolation ?? []).map(
      (d) =>
        `  default ${d.direction} of the endpoints it isolates (isolated by ${d.isolatedBy.join(", ")}) (deny; ${observedText(d)})`,
    ),
  ];
  const changing = report.audit.filter((p) => p.change === "promote" || p.change === "demote");
  for (const p of changing) lines.push(...policyLines(p));
  lines.push(...(report.changes.length === 0 ? ["no connectivity changes"] : report.changes.map(rowText)));
  const still = report.audit.filter((p) => p.after === "Audit");
  if (still.length > 0) {
    lines.push("", "still in Audit after the change (they enforce nothing):");
    for (const p of still) lines.push(...policyLines(p));
    lines.push(
      ...(report.pending.length === 0
        ? ["promoting them would change no connectivity"]
        : ["promoting them would change:", ...report.pending.map((r) => `  ${rowText(r)}`)]),
    );
  }
  return lines.join("\n");
}

/**
 * The audit counts of a `sluice stats -o json` output: summed per rule id (rule ids are hashes of the
 * rule's reference, so the cluster's and this plan's compiles agree on them), and the audited defaults
 * (policy "default", by direction and isolating policies). Only mode "audit" rows: what the Audit
 * policies would have decided differently is what promoting them changes.
 */
export function observedFromStats(text: string, source: string): ObservedStats {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`--observed ${source}: not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  const rows = (doc as { rules?: unknown } | null)?.rules;
  if (!Array.isArray(rows))
    throw new UsageError(
      `--observed ${source}: no "rules" list (expected the output of sluice stats -o json)`,
    );
  const rules = new Map<number, ObservedCounters>();
  const defaults = new Map<string, ObservedDefault>();
  rows.forEach((r: Partial<Record<keyof RuleStat, unknown>>, i) => {
    for (const field of ["ruleId", "packets", "flows"] as const)
      if (typeof r?.[field] !== "number")
        throw new UsageError(`--observed ${source}: rules[${i}].${field} is not a number`);
    if (r.mode !== "audit") return;
    const counts = { packets: r.packets as number, flows: r.flows as number };
    if (r.ruleId === ReservedRuleId.DEFAULT) {
      if (r.direction !== "ingress" && r.direction !== "egress") return;
      const isolatedBy = Array.isArray(r.isolatedBy) ? r.isolatedBy.map(String).sort() : [];
      const k = `${r.direction}|${isolatedBy.join(",")}`;
      const d = defaults.get(k) ?? { direction: r.direction, isolatedBy, packets: 0, flows: 0 };
      defaults.set(k, addCounts(d, counts));
      return;
    }
    const id = r.ruleId as number;
    rules.set(id, addCounts(rules.get(id) ?? { packets: 0, flows: 0 }, counts));
  });
  return { rules, defaults: [...defaults.values()] };
}

function addCounts<T extends ObservedCounters>(a: T, b: ObservedCounters): T {
  return { ...a, packets: a.packets + b.packets, flows: a.flows + b.flows };
}

function readObserved(path: string): ObservedStats {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new UsageError(`--observed ${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  return observedFromStats(text, path);
}

export async function planMain(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandArgs(
    {
      args: [...argv],
      options: {
        before: { type: "string", multiple: true },
        after: { type: "string", multiple: true },
        ports: { type: "string" },
        observed: { type: "string" },
        ...outputOption,
      },
      strict: true,
    },
    usage,
  );
  const output = outputFormat(values.output);
  if (values.ports) flagValue(() => parsePorts(values.ports ?? ""));
  const before = values.before ?? [];
  const after = values.after ?? [];
  checkInputs("--before", before);
  checkInputs("--after", after);
  checkInputs("--before/--after", [...before, ...after]);
  const a = matrixFromPaths(before, values.ports, true);
  const b = matrixFromPaths(after, values.ports, true);
  const errors = [...a.errors, ...b.errors];
  for (const e of errors) process.stderr.write(`${e}\n`);
  if (errors.length > 0) return 1;
  const observed = values.observed === undefined ? undefined : readObserved(values.observed);
  const report = planReport(a, b, observed);
  // Without Audit policies on either side the output is what it always was.
  const json = report.audit.length === 0 ? { changes: report.changes } : report;
  writeOutput(output, json, () => formatPlan(report));
  return 0;
}
