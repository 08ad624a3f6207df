// `sluice probe serve|connect`: the cluster tests' traffic endpoints, shipped in the Sluice image
// (the only image there is). serve answers on the given ports with the pod's hostname, connect
// reports what a policy does to one try per port. Both speak the lab's probe protocol
// (lab/probe-sockets.ts), so connect also says which pod answered (through a Service, say).
import { isIP } from "node:net";
import { hostname } from "node:os";
import { type ProbePort, parsePorts } from "../api/matrix-rows.ts";
import {
  listenTcp,
  listenUdp,
  type ProbeResult,
  probeTcp,
  probeUdp,
  StreamCounter,
} from "../lab/probe-sockets.ts";
import type { probeSubcommands } from "./commands.ts";
import { parseDuration } from "./duration.ts";
import { outputFormat, outputOption, writeOutput } from "./output.ts";
import { dispatch, parseCommandArgs, type Subcommand, UsageError } from "./usage.ts";

const usage: Record<(typeof probeSubcommands)[number], string> = {
  serve: "usage: sluice probe serve --ports 80/TCP,53/UDP [--ip ADDR] [--name NAME]",
  connect:
    "usage: sluice probe connect --to IP|HOST --ports 80/TCP,53/UDP [--timeout 1s] [-o table|json|yaml]",
  send:
    "usage: sluice probe send --to IP --port 53/UDP --stream ID [--rate 1000] [--duration 3s] [-o json|yaml|table]\n" +
    "       (a numbered stream; prints what it sent, as JSON by default)",
  stats:
    "usage: sluice probe stats --port 53/UDP [-o table|json|yaml]   (inside the pod: the stream datagrams serve has counted)",
};

export interface ConnectRow {
  port: number;
  protocol: "TCP" | "UDP";
  result: ProbeResult["result"];
  ms: number;
  // What the server answered: a `probe serve`'s name.
  reply?: string;
  error?: string;
}

// parsePorts names --ports in its messages; stats and send take the one --port.
function tcpUdpPorts(
  text: string | undefined,
  flag = "--ports",
): Array<ProbePort & { protocol: "TCP" | "UDP" }> {
  if (!text) throw new UsageError(`${flag} is required`);
  let ports: ProbePort[];
  try {
    ports = parsePorts(text);
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message.replace(/^--ports:/, `${flag}:`) : String(e));
  }
  const sctp = ports.find((p) => p.protocol === "SCTP");
  if (sctp) throw new UsageError(`${flag}: ${sctp.port}/SCTP: Node has no SCTP sockets`);
  return ports as Array<ProbePort & { protocol: "TCP" | "UDP" }>;
}

async function serve(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(
    {
      args: argv,
      options: { ports: { type: "string" }, ip: { type: "string" }, name: { type: "string" } },
      strict: true,
    },
    usage.serve,
  );
  const ports = tcpUdpPorts(values.ports);
  if (values.ip !== undefined && isIP(values.ip) === 0)
    throw new UsageError(`--ip: ${values.ip} is not an IP`);
  const name = values.name ?? hostname();
  const streams = new StreamCounter();
  // As a container's PID 1 no signal has a default action: without these, SIGTERM would be
  // ignored and the pod would wait out its grace period.
  for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => process.exit(0));
  for (const { port, protocol } of ports) {
    if (protocol === "TCP")
      await listenTcp(name, port, {
        host: values.ip,
        // Greet and close: clients (nc, a kubelet tcpSocket probe) need nothing more.
        onConnection: (sock) => {
          sock.on("error", () => {});
          sock.end();
        },
      });
    else
      await listenUdp(name, port, {
        host: values.ip,
        recvBufferSize: 4 << 20,
        onDatagram: (msg, from, sock) => {
          if (streams.count(port, msg)) return;
          // The counts, to `probe stats` on the pod's own loopback (no policy applies there).
          if (msg.toString() === STATS_QUERY && isLoopback(from.address))
            sock.send(JSON.stringify({ udpStreams: streams.snapshot() }), from.port, from.address);
          // Anything else than a probe datagram still gets the name back.
          else sock.send(`${name}\n`, from.port, from.address);
        },
      });
  }
  process.stderr.write(
    `probe serve: ${name} listening on ${values.ip ?? "*"} ${ports.map((p) => `${p.port}/${p.protocol}`).join(",")}\n`,
  );
  return new Promise<number>(() => {}); // until a signal
}

const STATS_QUERY = "Qstats";

function isLoopback(address: string): boolean {
  return address === "::1" || address.startsWith("127.") || address.startsWith("::ffff:127.");
}

// Asks the pod's own `probe serve` (over loopback) for the stream datagrams it counted on a port.
async function stats(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(
    { args: argv, options: { port: { type: "string" }, ...outputOption }, strict: true },
    usage.stats,
  );
  const output = outputFormat(values.output);
  const [p] = tcpUdpPorts(values.port, "--port");
  if (p?.protocol !== "UDP") throw new UsageError("--port: one UDP port, e.g. 5000/UDP");
  const { createSocket } = await import("node:dgram");
  const sock = createSocket("udp4");
  try {
    const reply = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no answer from probe serve on 127.0.0.1:${p.port}`)),
        2000,
      );
      sock.once("message", (m) => {
        clearTimeout(timer);
        resolve(m.toString());
      });
      sock.send(STATS_QUERY, p.port, "127.0.0.1");
    });
    const counts = JSON.parse(reply) as { udpStreams: Record<string, number> };
    writeOutput(output, counts, () =>
      formatTable([
        ["STREAM", "DATAGRAMS"],
        ...Object.entries(counts.udpStreams).map(([stream, n]) => [stream, String(n)]),
      ]),
    );
  } finally {
    sock.close();
  }
  return 0;
}

// A sequence-numbered UDP stream from the first instant the process runs (the lab's traffic sender):
// what a new pod sends before anything could have enforced it, counted by the peer's `probe serve`.
async function send(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(
    {
      args: argv,
      options: {
        to: { type: "string" },
        port: { type: "string" },
        stream: { type: "string" },
        rate: { type: "string", default: "1000" },
        duration: { type: "string", default: "3s" },
        ...outputOption,
      },
      strict: true,
    },
    usage.send,
  );
  // JSON by default: callers (the cluster tests, reading the senders' logs) parse the report.
  const output = outputFormat(values.output, "json");
  if (!values.to || isIP(values.to) === 0) throw new UsageError("--to: an IP address is required");
  const [p] = tcpUdpPorts(values.port, "--port");
  if (p?.protocol !== "UDP") throw new UsageError("--port: one UDP port, e.g. 5000/UDP");
  if (!values.stream || /[:\s]/.test(values.stream))
    throw new UsageError("--stream: an id without ':' or spaces");
  const rate = Number(values.rate);
  if (!Number.isInteger(rate) || rate < 1 || rate > 100_000)
    throw new UsageError("--rate: datagrams per second, 1 to 100000");
  const durationMs = parseDuration(values.duration, "--duration");
  const { sendTraffic } = await import("../lab/traffic-sender.ts");
  const report = await sendTraffic({
    durationMs,
    udp: [{ stream: values.stream, ip: values.to, port: p.port, rate }],
  });
  writeOutput(output, report, () =>
    Object.entries(report)
      .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : String(v)}`)
      .join("\n"),
  );
  return 0;
}

async function connect(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(
    {
      args: argv,
      options: {
        to: { type: "string" },
        ports: { type: "string" },
        timeout: { type: "string", default: "1s" },
        ...outputOption,
      },
      strict: true,
    },
    usage.connect,
  );
  const output = outputFormat(values.output);
  if (!values.to) throw new UsageError("--to is required");
  const ports = tcpUdpPorts(values.ports);
  const timeoutMs = parseDuration(values.timeout, "--timeout");
  let ip = values.to;
  if (isIP(ip) === 0) ip = (await (await import("node:dns/promises")).lookup(ip)).address;
  const rows = await Promise.all(
    ports.map(async ({ port, protocol }, i): Promise<ConnectRow> => {
      const r =
        protocol === "TCP"
          ? await probeTcp(ip, port, { timeoutMs, greeting: Math.min(200, timeoutMs) })
          : // Three datagrams within the timeout: one lost datagram is not a blocked port.
            await probeUdp(ip, port, {
              timeoutMs: Math.max(1, Math.floor(timeoutMs / 3)),
              tries: 3,
              token: `${process.pid}-${i}`,
              connected: true,
            });
      const row: ConnectRow = { port, protocol, result: r.result, ms: Math.round(r.ms * 10) / 10 };
      if (r.result === "open" && r.answer !== undefined) row.reply = r.answer;
      if (r.result === "blocked" && r.error !== undefined) row.error = r.error;
      return row;
    }),
  );
  writeOutput(output, rows, () =>
    formatTable([
      ["PORT", "RESULT", "MS", "REPLY"],
      ...rows.map((r) => [`${r.port}/${r.protocol}`, r.result, r.ms.toFixed(1), r.reply ?? r.error ?? ""]),
    ]),
  );
  return 0;
}

// Columns padded to their widest cell, kubectl's plain table.
function formatTable(table: readonly string[][]): string {
  const widths = table[0].map((_, c) => Math.max(...table.map((row) => row[c].length)));
  const lines = table.map((row) =>
    row
      .map((cell, c) => cell.padEnd(widths[c]))
      .join("  ")
      .trimEnd(),
  );
  return `${lines.join("\n")}\n`;
}

const subcommands: Record<(typeof probeSubcommands)[number], Subcommand> = {
  serve: { usage: usage.serve, run: serve },
  connect: { usage: usage.connect, run: connect },
  send: { usage: usage.send, run: send },
  stats: { usage: usage.stats, run: stats },
};

export async function probeMain(argv: readonly string[]): Promise<number> {
  return dispatch("probe", subcommands, argv);
}
