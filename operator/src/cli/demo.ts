// `sluice demo` (what `npm run demo` runs): the lab from samples/demo, its connectivity matrix before
// and after the sample policies with one drop explained (`sluice explain`) and as the datapath
// reported it (`sluice monitor`), then the datapath replaced under traffic with the packets lost and
// leaked, then cleanup. Prints the time of every step.
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { diffMatrices, formatMatrixTable, formatPort, type MatrixRow } from "../api/matrix-rows.ts";
import { loadObjects } from "../manifests/load.ts";
import { inputsFromObjects } from "../policy/index.ts";
import type { FlowRecord } from "../monitor/flow-record.ts";
import { readFlows } from "../monitor/client.ts";
import { formatFlow, tableHeader } from "../monitor/format.ts";
import type { Explanation } from "../policy/explain.ts";
import { explainRequest, formatExplanation } from "./explain.ts";
import { matrixFromPaths } from "./matrix.ts";
import { Lab } from "../lab/lab.ts";
import { runLiveTraffic } from "../lab/traffic.ts";
import { topologyFromObjects } from "../lab/topology.ts";
import { plural } from "./output.ts";
import { parseCommandArgs, UsageError } from "./usage.ts";

const usage =
  "usage: sluice demo [--dir <dir>] [--traffic-ms 5000] [--rate 3000]   (root; what `npm run demo` runs)\n" +
  "       --dir: topology files (*.yaml) and a policies/ folder; default samples/demo";

const DEFAULT_DIR = fileURLToPath(new URL("../../../samples/demo", import.meta.url));
// A port no sample policy opens: the denied stream's target when no denied UDP row exists.
const SPARE_UDP_PORT = 9;

function out(line = ""): void {
  process.stdout.write(`${line}\n`);
}

function ms(t0: number): string {
  return `${((performance.now() - t0) / 1000).toFixed(2)} s`;
}

export async function demoMain(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandArgs(
    {
      args: [...argv],
      options: {
        dir: { type: "string", default: DEFAULT_DIR },
        "traffic-ms": { type: "string", default: "5000" },
        rate: { type: "string", default: "3000" },
      },
      strict: true,
    },
    usage,
  );
  for (const flag of ["traffic-ms", "rate"] as const)
    if (!/^[1-9]\d*$/.test(values[flag]))
      throw new UsageError(`--${flag}: ${JSON.stringify(values[flag])} is not a positive integer`);
  if (process.getuid?.() !== 0) throw new Error("needs root (network namespaces and BPF): run it with sudo");
  const dir = values.dir;
  const policiesDir = join(dir, "policies");
  const topologyFiles = readdirSync(dir)
    .filter((f) => /\.(ya?ml|json)$/.test(f))
    .map((f) => join(dir, f));
  if (topologyFiles.length === 0) throw new Error(`${dir}: no topology files (*.yaml)`);
  if (!existsSync(policiesDir))
    throw new Error(`${policiesDir}: missing (the demo applies the policies in it)`);
  const start = performance.now();

  const topology = topologyFromObjects(loadObjects(topologyFiles));
  let t = performance.now();
  const lab = await Lab.create(topology, {
    extraPorts: [{ port: SPARE_UDP_PORT, protocol: "UDP" }],
    staticMonitor: true,
  });
  try {
    out(
      `Lab ${lab.plan.runId}: ${plural(topology.nodes.length, "node")} (${topology.nodes.join(", ")}), ${plural(topology.pods.length, "pod")}, built in ${ms(t)}`,
    );

    t = performance.now();
    await lab.startAgents(topologyFiles);
    out(`Agents started without policies in ${ms(t)}`);
    const before = await lab.probe();
    out();
    out(
      `Connectivity before policies (${plural(before.results.length, "probe")} in ${(before.durationMs / 1000).toFixed(2)} s):`,
    );
    out(formatMatrixTable(before.results));

    t = performance.now();
    await lab.stopAgents();
    await lab.startAgents([...topologyFiles, policiesDir]);
    out();
    out(
      `Agents restarted with ${policiesDir} in ${ms(t)} (they adopt the pinned datapath and apply the policies)`,
    );
    const after = await lab.probe();
    out();
    out(
      `Connectivity after policies (${plural(after.results.length, "probe")} in ${(after.durationMs / 1000).toFixed(2)} s):`,
    );
    out(formatMatrixTable(after.results));
    const changes = diffMatrices(before.results, after.results);
    out(`${changes.length} of ${plural(after.results.length, "row")} changed`);
    // The same inputs through the compiler and the TS simulation of the BPF lookup.
    const predicted = matrixFromPaths([...topologyFiles, policiesDir]);
    const disagree = diffMatrices(
      after.results,
      predicted.rows.filter((r) => r.protocol !== "SCTP"),
    );
    out(
      disagree.length === 0
        ? "Measured matrix matches `sluice matrix` on the same files"
        : `Measured matrix DIFFERS from \`sluice matrix\`: ${disagree.join("; ")}`,
    );
    if (disagree.length > 0) process.exitCode = 1;
    const explained = explainOneDrop(after.results, [...topologyFiles, policiesDir]);
    if (explained) await monitorOneDrop(lab, explained);
    for (const n of [...before.notes, ...after.notes]) out(`note: ${n}`);
    if (before.skipped.length + after.skipped.length > 0)
      out(
        `note: ${plural(after.skipped.length, "probe")} skipped: ${[...new Set(after.skipped.map((s) => s.reason))].join("; ")}`,
      );

    const pair = await pickTrafficPair(lab, after.results);
    out();
    if (!pair) {
      out("Live replacement: skipped, no pod pair with an allowed UDP and TCP port in the sample policies");
    } else {
      out(
        `Live replacement: ${pair.from} -> ${pair.to}: UDP ${pair.allowedUdpPort} (allowed) and UDP ${pair.deniedUdpPort} (denied) at ${values.rate} pps each, TCP ${pair.tcpPort} stream, while replacing the datapath on every node`,
      );
      t = performance.now();
      const r = await runLiveTraffic(lab, {
        ...pair,
        rate: Number(values.rate),
        durationMs: Number(values["traffic-ms"]),
        replace: true,
      });
      out(
        `  datapath replacements: ${r.replacements} (${plural(r.replaceRuns, "round")} on ${plural(lab.plan.nodes.length, "node")})`,
      );
      out(`  allowed UDP: sent ${r.sent}, received ${r.received}, lost ${r.lost}`);
      out(`  denied UDP:  sent ${r.deniedSent}, leaked ${r.leaked}`);
      out(
        `  TCP stream:  ${(r.tcpBytes / 1e6).toFixed(1)} MB received, ${r.tcpReset ? `BROKEN (${r.tcpError})` : "no reset"}`,
      );
      out(`  took ${ms(t)}`);
      if (r.lost !== 0 || r.leaked !== 0 || r.tcpReset) {
        out("FAILED: the datapath replacement lost, leaked or reset traffic");
        process.exitCode = 1;
      }
    }
  } finally {
    t = performance.now();
    await lab.destroy();
    out();
    out(`Cleaned up in ${ms(t)}; demo took ${ms(start)}`);
  }
  return typeof process.exitCode === "number" ? process.exitCode : 0;
}

// `sluice explain` on one probe the policies drop (one a rule decides, where there is one): which
// policy and rule decided it. Explain must call it a drop too.
function explainOneDrop(rows: readonly MatrixRow[], files: readonly string[]): ExplainedDrop | undefined {
  const inputs = inputsFromObjects(loadObjects(files));
  const explained = rows
    .filter((r) => r.verdict === "deny")
    .map((r) => ({
      port: formatPort(r),
      r,
      x: explainRequest(inputs, { from: r.from, to: r.to, port: formatPort(r) }),
    }));
  const byRule = (e: (typeof explained)[number]) =>
    [e.x.explanation.egress, e.x.explanation.ingress].some(
      (s) => s?.datapath.verdict === "deny" && s.decision.by === "rule",
    );
  const pick = explained.find(byRule) ?? explained[0];
  if (!pick) return undefined;
  out();
  out(
    `Why one probe was dropped (sluice explain --from ${pick.r.from} --to ${pick.r.to} --port ${pick.port}):`,
  );
  out(formatExplanation(pick.x.explanation, pick.x.portLabel));
  if (pick.x.explanation.verdict !== "deny") {
    out("FAILED: the lab dropped it, `sluice explain` says it is allowed");
    process.exitCode = 1;
  }
  return { row: pick.r, port: pick.port, explanation: pick.x.explanation };
}

interface ExplainedDrop {
  row: MatrixRow;
  port: string;
  explanation: Explanation;
}

// The same drop as the datapath reported it (`sluice monitor`: the agents' flows, named by each
// agent): the side that denied it must name the rule explain named.
async function monitorOneDrop(lab: Lab, d: ExplainedDrop): Promise<void> {
  const query = new URLSearchParams({ verdict: "denied", from: d.row.from, to: d.row.to, port: d.port });
  const flows: FlowRecord[] = [];
  for (const node of lab.plan.nodes.map((n) => n.name)) {
    const address = lab.agentMonitorAddress(node);
    if (!address) continue;
    const target = { node, via: address, connection: { socketPath: address.replace(/^unix:/, "") } };
    for await (const r of readFlows(target, query)) if (r.type === "flow") flows.push(r);
  }
  out();
  out(
    `The same drop as the datapath reported it (sluice monitor --verdict denied --from ${d.row.from} --to ${d.row.to} --port ${d.port}):`,
  );
  out(tableHeader());
  for (const f of flows.slice(-3)) out(formatFlow(f));
  const side = d.explanation[flows.at(-1)?.direction ?? "ingress"];
  if (flows.length === 0 || !side || flows.at(-1)?.rule?.ruleId !== (side.datapath.ruleId || undefined)) {
    out("FAILED: the monitor does not show the drop with the rule `sluice explain` named");
    process.exitCode = 1;
  }
}

interface TrafficPair {
  from: string;
  to: string;
  allowedUdpPort: number;
  deniedUdpPort: number;
  tcpPort: number;
}

// A pair across nodes where policy allows a UDP and a TCP port and denies some UDP port; the spare
// port stands in for the denied one when its denial is confirmed by a probe.
async function pickTrafficPair(lab: Lab, rows: readonly MatrixRow[]): Promise<TrafficPair | undefined> {
  const node = new Map(lab.topology.pods.map((p) => [p.key, p.node]));
  const pairs = [...new Set(rows.map((r) => `${r.from}\u0000${r.to}`))].map((k) => k.split("\u0000"));
  pairs.sort((a, b) => Number(node.get(a[0]) === node.get(a[1])) - Number(node.get(b[0]) === node.get(b[1])));
  for (const [from, to] of pairs) {
    const mine = rows.filter((r) => r.from === from && r.to === to);
    const udp = mine.find((r) => r.protocol === "UDP" && r.verdict === "allow");
    const tcp = mine.find((r) => r.protocol === "TCP" && r.verdict === "allow");
    if (!udp || !tcp) continue;
    let denied = mine.find((r) => r.protocol === "UDP" && r.verdict === "deny")?.port;
    if (denied === undefined) {
      const spare = await lab.probe({ from: [from], ports: [{ port: SPARE_UDP_PORT, protocol: "UDP" }] });
      if (spare.results.some((r) => r.to === to && r.verdict === "deny")) denied = SPARE_UDP_PORT;
    }
    if (denied !== undefined)
      return { from, to, allowedUdpPort: udp.port, deniedUdpPort: denied, tcpPort: tcp.port };
  }
  return undefined;
}
