// Traffic across an enforced path while the datapath is replaced: a UDP stream to a port policy
// allows (every datagram must arrive), one to a port policy denies (none may arrive) and a long TCP
// stream (it must survive), from one lab pod to another. The replacement is `sluice datapath
// replace` on every node's bpffs root, run in a loop for the middle of the stream.
import { collect, labScript, NODE, NODE_FLAGS, SLUICE_MAIN, spawnIn } from "./children.ts";
import type { Lab } from "./lab.ts";
import { probeAddress } from "./netns-plan.ts";
import type { TrafficReport, TrafficSpec } from "./traffic-protocol.ts";

export interface LiveTrafficOptions {
  from: string;
  to: string;
  allowedUdpPort: number;
  deniedUdpPort: number;
  tcpPort: number;
  family?: 4 | 6;
  // Datagrams per second of each UDP stream.
  rate?: number;
  durationMs?: number;
  tcpBytesPerSecond?: number;
  // Replace the datapath during the stream; false gives the baseline.
  replace?: boolean;
  // Replacements per `sluice datapath replace` invocation.
  replaceTimes?: number;
  // Time after the senders stop for the last packets to land before counting.
  settleMs?: number;
}

export interface LiveTrafficResult {
  sent: number;
  received: number;
  lost: number;
  deniedSent: number;
  leaked: number;
  tcpBytesSent: number;
  tcpBytes: number;
  tcpReset: boolean;
  tcpError?: string;
  udpSendErrors: number;
  replacements: number;
  replaceRuns: number;
  replaceMs: number;
  durationMs: number;
}

interface ReplaceJson {
  replacements: number;
  durationMs: number;
}

let streamCounter = 0;

export async function runLiveTraffic(lab: Lab, opts: LiveTrafficOptions): Promise<LiveTrafficResult> {
  const to = lab.pod(opts.to);
  const from = lab.pod(opts.from);
  const ip = probeAddress(to.pod, opts.family);
  if (!ip) throw new Error(`${opts.to} has no IPv${opts.family} address`);
  const id = `${process.pid}x${++streamCounter}`;
  const allowed = `a${id}`;
  const denied = `d${id}`;
  const durationMs = opts.durationMs ?? 4000;
  const rate = opts.rate ?? 3000;
  const spec: TrafficSpec = {
    durationMs,
    udp: [
      { stream: allowed, ip, port: opts.allowedUdpPort, rate },
      { stream: denied, ip, port: opts.deniedUdpPort, rate },
    ],
    tcp: { ip, port: opts.tcpPort, bytesPerSecond: opts.tcpBytesPerSecond ?? 8 << 20 },
  };
  const before = await lab.serverStats(opts.to);
  const t0 = performance.now();
  const sender = collect(
    spawnIn(from.netns, `traffic ${opts.from}`, [NODE, ...NODE_FLAGS, labScript("traffic-sender.ts")]),
    JSON.stringify(spec),
    durationMs + 60000,
  );

  let replacements = 0;
  let replaceRuns = 0;
  let replaceMs = 0;
  let sending = true;
  const replacer = (async () => {
    if (!opts.replace) return;
    await sleep(Math.min(500, durationMs / 5));
    // Keep replacing on every node until the stream ends; each run must leave the path whole.
    while (sending) {
      const runs = await Promise.all(
        lab.plan.nodes.map(async (n) => {
          const out = await lab.exec(n.netns, `datapath replace ${n.name}`, [
            NODE,
            ...NODE_FLAGS,
            SLUICE_MAIN,
            "datapath",
            "replace",
            "--bpffs-root",
            lab.nodeBpffsRoot(n.name),
            "--times",
            String(opts.replaceTimes ?? 200),
          ]);
          return JSON.parse(out) as ReplaceJson;
        }),
      );
      replaceRuns++;
      for (const r of runs) {
        replacements += r.replacements;
        replaceMs += r.durationMs;
      }
    }
  })();

  let report: TrafficReport;
  try {
    report = JSON.parse(await sender) as TrafficReport;
  } finally {
    sending = false;
    await replacer.catch(() => {}); // its error, if any, is rethrown below
  }
  await replacer;
  await sleep(opts.settleMs ?? 300);
  const after = await lab.serverStats(opts.to);

  const recv = (s: string) => after.udpStreams[`${opts.allowedUdpPort}/${s}`] ?? 0;
  const received = recv(allowed);
  const leaked = after.udpStreams[`${opts.deniedUdpPort}/${denied}`] ?? 0;
  const newTcpErrors = after.tcpErrors.slice(before.tcpErrors.length);
  const tcpError = report.tcpError ?? newTcpErrors[0];
  return {
    sent: report.udpSent[allowed],
    received,
    lost: report.udpSent[allowed] - received,
    deniedSent: report.udpSent[denied],
    leaked,
    tcpBytesSent: report.tcpBytes,
    tcpBytes: after.tcpBytes - before.tcpBytes,
    tcpReset: tcpError !== undefined || !report.tcpConnected,
    tcpError,
    udpSendErrors: report.udpSendErrors,
    replacements,
    replaceRuns,
    replaceMs,
    durationMs: performance.now() - t0,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
