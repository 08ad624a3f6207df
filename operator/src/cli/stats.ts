// `sluice stats [policy]`: packets, bytes and flows per policy rule, counted by the datapath on every
// node and summed across nodes, with how many endpoints carry each rule and when it last matched. A rule
// with no entry on any node, or that never matched, is the "dead or shadowed rule" answer. Audit policy
// rules count what they would have decided differently (mode audit); so does the default of the pods an
// Audit policy isolates (policy "default", a row per direction naming the policies it is the default
// of, listed with those policies' rules). Each agent serves its node's
// counters next to its flows (GET /v1/rules, monitor/server.ts), reached like `sluice monitor` reaches
// them: pods/portforward in a cluster, the lab's sockets with --lab.
import { ruleLabel } from "../policy/rule-names.ts";
import { matchesPolicy, type RuleStat, type RulesRecord, sumRules } from "../stats/rule-stats.ts";
import { agentTargetsFromFlags } from "./agent-targets.ts";
import { kubeOptions, kubeUsage } from "./kube-flags.ts";
import { outputFormat, outputOption, writeOutput } from "./output.ts";
import { parseCommandArgs, UsageError } from "./usage.ts";

const usage =
  "usage: sluice stats [<Kind/ns/name|ns/name|name>] [--node <name>[,...]] [-o table|json|yaml]\n" +
  `                    ${kubeUsage}\n` +
  "                    [--sluice-namespace <ns>]   (where the agent pods run; default sluice-system)\n" +
  "       sluice stats --lab [policy] [...]         (the agents of `sluice lab up`)\n" +
  "Counts since each rule's counter was created on the node (an agent restart keeps them). ENDPOINTS 0:\n" +
  "no entry of the rule on any node (it selects no pod there, or higher-precedence rules shadow it).";

export async function statsMain(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    {
      args: [...argv],
      options: {
        ...outputOption,
        ...kubeOptions,
        lab: { type: "boolean", default: false },
        "sluice-namespace": { type: "string", default: "sluice-system" },
        node: { type: "string" },
      },
      allowPositionals: true,
      strict: true,
    },
    usage,
  );
  if (positionals.length > 1) throw new UsageError(`one policy at most (got ${positionals.join(" ")})`);
  const format = outputFormat(values.output);
  const targets = await agentTargetsFromFlags(values);
  const { readRules } = await import("../monitor/client.ts");
  const records: RulesRecord[] = [];
  const failures: string[] = [];
  await Promise.all(
    targets.map(async (t) => {
      try {
        records.push(await readRules(t));
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        failures.push(t.node);
        process.stderr.write(`sluice stats: node ${t.node} (${t.via}): ${message}\n`);
      }
    }),
  );
  const policy = positionals[0];
  const stats = sumRules(records).filter((s) => policy === undefined || matchesPolicy(s, policy));
  if (policy !== undefined && stats.length === 0 && failures.length === 0)
    process.stderr.write(`sluice stats: no rule of ${policy} on any node (${records.length} read)\n`);
  const uncounted = records.reduce((n, r) => n + r.uncounted, 0);
  if (uncounted > 0)
    process.stderr.write(
      `sluice stats: ${uncounted} entries are not counted (the nodes' rule counter slots are full)\n`,
    );
  writeOutput(format, { nodes: records.map((r) => r.node).sort(), rules: stats }, () => statsTable(stats));
  return failures.length > 0 ? 1 : 0;
}

// `ingress[1] "name"`; the default's rows: its direction and the policies whose default it is.
function ruleColumn(s: RuleStat): string {
  if (s.direction === undefined) return "-";
  if (s.index !== undefined)
    return ruleLabel({ direction: s.direction, index: s.index, ruleName: s.ruleName });
  return s.isolatedBy?.length ? `${s.direction} (isolated by ${s.isolatedBy.join(", ")})` : s.direction;
}

export function statsTable(stats: readonly RuleStat[]): string {
  const rows = [
    ["POLICY", "RULE", "ACTION", "MODE", "PACKETS", "BYTES", "FLOWS", "ENDPOINTS", "LAST MATCHED"],
  ];
  for (const s of stats)
    rows.push([
      s.policy,
      ruleColumn(s),
      s.action ?? "-",
      s.mode,
      String(s.packets),
      String(s.bytes),
      String(s.flows),
      String(s.endpoints),
      s.lastMatched ?? (s.endpoints === 0 ? "no entry" : "never"),
    ]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}
