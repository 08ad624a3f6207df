// The scale rig's results as markdown tables: one column per scale run, the last one compared with
// the first (the baseline measured in the same invocation) as a ratio, next to issue 14's goals.
import { markdownTable } from "../bench/table.ts";
import { REQUESTERS } from "./requesters.ts";
import type { RigResult } from "./rig.ts";

const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
const s1 = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const perS = (n: number, ms: number) => `${Math.round((n * 1000) / ms)}/s`;
const ofCeiling = (v: number, ceiling: number) => `${(v / ceiling).toFixed(2)}× the API server alone`;

interface Row {
  what: string;
  value: (r: RigResult) => number;
  format: (v: number, r: RigResult) => string;
  goal?: string;
}

const ROWS: Row[] = [
  {
    what: "populate: pods created + status (rate)",
    value: (r) => (r.shape.pods * 1000) / r.populate.podsMs,
    format: (v) => `${Math.round(v)}/s`,
  },
  {
    what: "API server alone: identity creates, deletes (16 in flight, before the operator starts)",
    value: (r) => r.ceiling.createsPerS,
    format: (v, r) => `${Math.round(v)}/s, ${Math.round(r.ceiling.deletesPerS)}/s (${r.ceiling.n})`,
  },
  { what: "operator: caches synced", value: (r) => r.operator.syncMs, format: s1 },
  {
    what: "operator: initial identity allocation (label sets/s)",
    value: (r) => (r.operator.initialLabelSets * 1000) / r.operator.initialAllocationMs,
    format: (v, r) =>
      `${Math.round(v)}/s (${r.operator.initialLabelSets} in ${s1(r.operator.initialAllocationMs)}; ${ofCeiling(v, r.ceiling.createsPerS)})`,
    goal: "≥ 500/s",
  },
  { what: "operator: RSS after allocation", value: (r) => r.operator.rssAfterAllocation, format: mib },
  { what: "operator: RSS at the end", value: (r) => r.operator.rss, format: mib, goal: "< 300 MiB" },
  { what: "operator: heap used at the end", value: (r) => r.operator.heapUsed, format: mib },
  {
    what: "operator: heap committed, external memory at the end",
    value: (r) => r.operator.heapTotal,
    format: (v, r) => `${mib(v)}, ${mib(r.operator.external)}`,
  },
  { what: "operator: V8 young generation reserved", value: (r) => r.operator.newSpace, format: mib },
  {
    what: "operator: CPU seconds, start to end",
    value: (r) => r.operator.cpuSeconds,
    format: (v) => `${v.toFixed(1)} s`,
  },
  { what: "agent: initial sync (start → maps written, ready)", value: (r) => r.agent.readyMs, format: s1 },
  {
    what: "agent: caches synced",
    value: (r) => r.agent.cachesSyncedMs,
    format: (v) => `${Math.round(v)} ms`,
  },
  { what: "agent: first full pass", value: (r) => r.agent.firstPassMs, format: (v) => `${Math.round(v)} ms` },
  { what: "agent: RSS at scale (steady)", value: (r) => r.agent.rss, format: mib, goal: "< 150 MiB" },
  { what: "agent: RSS at the end (after the churn)", value: (r) => r.agent.rssEnd, format: mib },
  { what: "agent: heap used at scale", value: (r) => r.agent.heapUsed, format: mib },
  { what: "agent: V8 young generation reserved", value: (r) => r.agent.newSpace, format: mib },
  {
    what: "agent: CPU seconds, steady sample to end",
    value: (r) => r.agent.cpuSecondsAfterSteady,
    format: (v) => `${v.toFixed(1)} s`,
  },
  {
    what: "agent: passes over that span, compile time per pass",
    value: (r) => r.agent.compileMsPerPass,
    format: (v, r) => `${r.agent.passesAfterSteady} passes, ${Math.round(v)} ms`,
  },
  {
    what: "policy change → Enforced=True on all nodes",
    value: (r) => r.policyChange.ms,
    format: (v, r) => `${s1(v)} (${r.policyChange.nodes} nodes)`,
  },
  {
    what: "  its policy status writes",
    value: (r) => r.policyChange.statusWrites,
    format: (v) => String(v),
    goal: "O(nodes), not O(nodes × policies)",
  },
  {
    what: "  status reconciles (time in them, writes included)",
    value: (r) => r.policyChange.statusReconcileSeconds,
    format: (v, r) => `${r.policyChange.statusReconciles} (${v.toFixed(2)} s)`,
  },
  { what: "  node status writes", value: (r) => r.policyChange.nodeStatusWrites, format: (v) => String(v) },
  {
    what: "burst: new label sets → identities",
    value: (r) => (r.burst.labelSets * 1000) / r.burst.allocMs,
    format: (v, r) =>
      `${Math.round(v)}/s (${r.burst.labelSets}; pods created at ${perS(r.burst.labelSets, r.burst.createMs)}; ${ofCeiling(v, r.ceiling.createsPerS)})`,
    goal: "≥ 500/s",
  },
  {
    what: "burst: identity GC (deletes; rate is a lower bound)",
    value: (r) => (r.burst.gcDeleted * 1000) / r.burst.gcMs,
    format: (v, r) =>
      `${Math.round(v)}/s (${r.burst.gcDeleted} in ${s1(r.burst.gcMs)}; pods deleted over ${s1(r.burst.deleteMs)}; ${ofCeiling(v, r.ceiling.deletesPerS)})`,
    goal: "≥ 500/s",
  },
  {
    what: "identities: live / duplicates / used sets missing one",
    value: (r) => r.identities.duplicates + r.identities.missing,
    format: (_v, r) => `${r.identities.live} / ${r.identities.duplicates} / ${r.identities.missing}`,
    goal: "0 duplicates",
  },
  {
    what: "churn: operations (identities allocated)",
    value: (r) => r.churn.ops,
    format: (v, r) => `${v} in ${r.churn.seconds.toFixed(0)} s (${r.churn.allocated})`,
  },
];

function apiRows(results: readonly RigResult[]): string[][] {
  const rows: string[][] = [];
  for (const phase of ["steady", "policyChange", "churn"] as const)
    for (const u of REQUESTERS)
      rows.push([`${phase}: ${u}`, ...results.map((r) => `${r.api[phase].perSecond[u].toFixed(2)}/s`)]);
  return rows;
}

export function scaleTables(labels: readonly string[], results: readonly RigResult[]): string {
  const first = results[0];
  const last = results[results.length - 1];
  const withRatio = results.length > 1;
  const header = [
    "",
    ...labels,
    ...(withRatio ? [`${labels[labels.length - 1]} ÷ ${labels[0]}`] : []),
    "goal",
  ];
  const rows = ROWS.map((row) => [
    row.what,
    ...results.map((r) => row.format(row.value(r), r)),
    ...(withRatio ? [ratioOf(row.value(last), row.value(first))] : []),
    row.goal ?? "",
  ]);
  const shape = results.map(
    (r) =>
      `${r.shape.nodes} nodes, ${r.shape.pods} pods, ${r.shape.namespaces} namespaces, ${r.shape.labelSets} label sets, ${r.shape.policies} policies`,
  );
  const maps = results.map(
    (r, i) =>
      `${labels[i]}: ${Object.entries(r.agent.maps)
        .map(([m, v]) => `${m} ${v}`)
        .join(", ")}`,
  );
  const top = results.flatMap((r, i) =>
    (["steady", "policyChange", "churn"] as const).flatMap((ph) =>
      r.api[ph].top.map((t) => `${labels[i]} ${ph}: ${t}`),
    ),
  );
  return [
    shape.map((x, i) => `- ${labels[i]}: ${x}`).join("\n"),
    "",
    markdownTable(header, rows),
    "",
    "API requests per second by requester (the API server's audit log):",
    "",
    markdownTable(["", ...labels], apiRows(results)),
    "",
    "Agent map entries/capacity:",
    ...maps.map((m) => `- ${m}`),
    "",
    "Busiest requests:",
    ...top.map((t) => `- ${t}`),
  ].join("\n");
}

function ratioOf(x: number, base: number): string {
  if (!Number.isFinite(x) || !Number.isFinite(base) || base === 0) return "–";
  return `${(x / base).toFixed(2)}×`;
}
