// `sluice monitor`: the nodes' verdicts as they happen, named: which pod sent what to which, allowed or
// denied, and by which policy rule (or the default deny, and the policies that isolate the pod). Each
// agent serves its node's flows on its loopback (monitor/server.ts); against a cluster this reaches
// every agent through the API server's pods/portforward, against `sluice lab up` (--lab) through the
// sockets the lab's state file names.
import { parseDuration } from "./duration.ts";
import { agentTargetsFromFlags } from "./agent-targets.ts";
import { kubeOptions, kubeUsage } from "./kube-flags.ts";
import { outputFormat, outputOption } from "./output.ts";
import { parseCommandArgs, UsageError } from "./usage.ts";
import {
  FILTER_PARAMS,
  FilterError,
  type FlowFilter,
  filterQuery,
  parseFlowFilter,
} from "../monitor/filter.ts";
import type { FlowRecord, MonitorRecord, StatsRecord } from "../monitor/flow-record.ts";
import type { MonitorTarget } from "../monitor/client.ts";

const usage =
  "usage: sluice monitor [--follow] [filters] [-o table|json] [--labels]\n" +
  `                      ${kubeUsage}\n` +
  "                      [--sluice-namespace <ns>]   (where the agent pods run; default sluice-system)\n" +
  "       sluice monitor --lab [--follow] [filters] [-o table|json]   (the agents of `sluice lab up`)\n" +
  "filters (each given must match):\n" +
  "  --verdict allowed|denied|audit   --port PORT[/PROTOCOL][,...]\n" +
  "  --namespace <ns>             source or destination pod in <ns>\n" +
  "  --pod <ns/pod|pod>           source or destination (a pod, an entity: world, host, remote-node, an address)\n" +
  "  --from <peer>  --to <peer>   the source / the destination, as --pod\n" +
  "  --policy <Kind/ns/name|ns/name|name>   the deciding policy, or one isolating the pod of a default deny\n" +
  "  --node <name>[,...]          only these nodes' agents\n" +
  "  --since <5m|RFC 3339 time>   flows from then on (default: all the agents still hold)\n" +
  "--follow: keep streaming new flows until interrupted. --labels: identities and their labels.\n" +
  "The agents keep their recent flows (--monitor-buffer); denied packets are reported 1 of 1 and allowed\n" +
  "ones sampled (--event-sample-allow), within a per-CPU rate limit; what was lost is reported on stderr.";

export async function monitorMain(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandArgs(
    {
      args: [...argv],
      options: {
        ...outputOption,
        ...kubeOptions,
        follow: { type: "boolean", default: false },
        labels: { type: "boolean", default: false },
        lab: { type: "boolean", default: false },
        "sluice-namespace": { type: "string", default: "sluice-system" },
        node: { type: "string" },
        ...Object.fromEntries(FILTER_PARAMS.map((p) => [p, { type: "string" } as const])),
      },
      strict: true,
    },
    usage,
  );
  const format = outputFormat(values.output);
  if (format === "yaml") throw new UsageError("-o: a stream prints table or json (one object a line)");
  const strings = values as unknown as Record<string, string | undefined>;
  let filter: FlowFilter;
  try {
    filter = parseFlowFilter((p) => (p === "since" ? sinceOf(strings.since) : strings[p]));
  } catch (e) {
    if (e instanceof FilterError) throw new UsageError(e.message);
    throw e;
  }
  const targets = await agentTargetsFromFlags(values);
  const query = filterQuery(filter);
  if (values.follow) query.set("follow", "true");
  if (values.labels) query.set("labels", "true");
  return stream(targets, query, { json: format === "json", labels: values.labels, follow: values.follow });
}

// --since 5m: that long before now, the same instant for every agent.
function sinceOf(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  if (/^\d+(\.\d+)?(ms|s|m|h)?$/.test(text.trim()))
    return String(Date.now() - parseDuration(text, "--since"));
  return text;
}

interface Printing {
  json: boolean;
  labels: boolean;
  follow: boolean;
}

async function stream(
  targets: readonly MonitorTarget[],
  query: URLSearchParams,
  o: Printing,
): Promise<number> {
  const { readFlows } = await import("../monitor/client.ts");
  const { formatFlow, formatLoss, tableHeader } = await import("../monitor/format.ts");
  const abort = new AbortController();
  const stop = () => abort.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  const write = (line: string) => process.stdout.write(`${line}\n`);
  if (!o.json) write(tableHeader());
  // Without --follow every agent's buffered flows are merged in time order; following, flows print
  // as they come.
  const held: FlowRecord[] = [];
  const lastLoss = new Map<string, string>();
  const onRecord = (r: MonitorRecord) => {
    if (r.type === "stats") return reportLoss(r);
    if (!o.follow) held.push(r);
    else write(o.json ? JSON.stringify(r) : formatFlow(r, o.labels));
  };
  const reportLoss = (s: StatsRecord) => {
    if (o.json) write(JSON.stringify(s));
    const loss = formatLoss(s);
    if (loss && loss !== lastLoss.get(s.node)) process.stderr.write(`${loss}\n`);
    if (loss) lastLoss.set(s.node, loss);
  };
  const failures: string[] = [];
  await Promise.all(
    targets.map(async (t) => {
      try {
        for await (const r of readFlows(t, query, abort.signal)) onRecord(r);
      } catch (e) {
        if (abort.signal.aborted) return;
        const message = e instanceof Error ? e.message : String(e);
        failures.push(message);
        process.stderr.write(`sluice monitor: node ${t.node} (${t.via}): ${message}\n`);
      }
    }),
  );
  process.off("SIGINT", stop);
  process.off("SIGTERM", stop);
  if (!o.follow) {
    held.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
    for (const r of held) write(o.json ? JSON.stringify(r) : formatFlow(r, o.labels));
  }
  if (failures.length === targets.length) throw new Error(`no agent answered (${failures.length} tried)`);
  return 0;
}
