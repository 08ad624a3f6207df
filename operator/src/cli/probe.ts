// `sluice probe serve|connect`: the cluster tests' traffic endpoints, shipped in the Sluice image
// (the only image there is). serve answers on the given ports with the pod's hostname, connect
// reports what a policy does to one try per port. Both speak the lab's probe protocol
// (lab/probe-sockets.ts), so connect also says which pod answered (through a Service, say).
import { isIP } from "node:net";
import { hostname } from "node:os";
import { parseArgs } from "node:util";
import { type ProbePort, parsePorts } from "../api/matrix-rows.ts";
import {
  listenTcp,
  listenUdp,
  type ProbeResult,
  probeTcp,
  probeUdp,
  StreamCounter,
} from "../lab/probe-sockets.ts";
import { parseDuration } from "./duration.ts";

const usage =
  "usage: sluice probe serve --ports 80/TCP,53/UDP [--ip ADDR] [--name NAME]\n" +
  "       sluice probe connect --to IP|HOST --ports 80/TCP,53/UDP [--timeout 1s] [-o json|table]\n" +
  "       sluice probe stats --port 53/UDP   (inside the pod: the lab's traffic streams serve has counted)\n" +
  "       sluice probe send --to IP --port 53/UDP --stream ID [--rate 1000] [--duration 3s]   (a numbered stream; prints what it sent)";

export interface ConnectRow {
  port: number;
  protocol: "TCP" | "UDP";
  result: ProbeResult["result"];
  ms: number;
  // What the server answered: a `probe serve`'s name.
  reply?: string;
  error?: string;
}

class UsageError extends Error {}

// Bad flags, ports or durations are usage errors (exit 2), not failures.
function parsing<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw err instanceof UsageError ? err : new UsageError(err instanceof Error ? err.message : String(err));
  }
}

function tcpUdpPorts(text: string | undefined): Array<ProbePort & { protocol: "TCP" | "UDP" }> {
  if (!text) throw new UsageError("--ports is required");
  const ports = parsePorts(text);
  const sctp = ports.find((p) => p.protocol === "SCTP");
  if (sctp) throw new UsageError(`--ports: ${sctp.port}/SCTP: Node has no SCTP sockets`);
  return ports as Array<ProbePort & { protocol: "TCP" | "UDP" }>;
}

async function serve(argv: string[]): Promise<number> {
  const { values } = parsing(() =>
    parseArgs({
      args: argv,
      options: { ports: { type: "string" }, ip: { type: "string" }, name: { type: "string" } },
    }),
  );
  const ports = parsing(() => tcpUdpPorts(values.ports));
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
  const { values } = parsing(() => parseArgs({ args: argv, options: { port: { type: "string" } } }));
  const [p] = parsing(() => tcpUdpPorts(values.port));
  if (!p || p.protocol !== "UDP") throw new UsageError("--port: one UDP port, e.g. 5000/UDP");
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
    process.stdout.write(`${reply}\n`);
  } finally {
    sock.close();
  }
  return 0;
}

// A sequence-numbered UDP stream from the first instant the process runs (the lab's traffic sender):
// what a new pod sends before anything could have enforced it, counted by the peer's `probe serve`.
async function send(argv: string[]): Promise<number> {
  const { values } = parsing(() =>
    parseArgs({
      args: argv,
      options: {
        to: { type: "string" },
        port: { type: "string" },
        stream: { type: "string" },
        rate: { type: "string", default: "1000" },
        duration: { type: "string", default: "3s" },
      },
    }),
  );
  if (!values.to || isIP(values.to) === 0) throw new UsageError("--to: an IP address is required");
  const [p] = parsing(() => tcpUdpPorts(values.port));
  if (!p || p.protocol !== "UDP") throw new UsageError("--port: one UDP port, e.g. 5000/UDP");
  if (!values.stream || /[:\s]/.test(values.stream))
    throw new UsageError("--stream: an id without ':' or spaces");
  const rate = Number(values.rate);
  if (!Number.isInteger(rate) || rate < 1 || rate > 100_000)
    throw new UsageError("--rate: datagrams per second, 1 to 100000");
  const durationMs = parsing(() => parseDuration(values.duration, "--duration"));
  const { sendTraffic } = await import("../lab/traffic-sender.ts");
  const report = await sendTraffic({
    durationMs,
    udp: [{ stream: values.stream, ip: values.to, port: p.port, rate }],
  });
  process.stdout.write(`${JSON.stringify(report)}\n`);
  return 0;
}

async function connect(argv: string[]): Promise<number> {
  const { values } = parsing(() =>
    parseArgs({
      args: argv,
      options: {
        to: { type: "string" },
        ports: { type: "string" },
        timeout: { type: "string", default: "1s" },
        output: { type: "string", short: "o", default: "table" },
      },
    }),
  );
  if (!values.to) throw new UsageError("--to is required");
  if (values.output !== "table" && values.output !== "json") throw new UsageError("-o: table or json");
  const ports = parsing(() => tcpUdpPorts(values.ports));
  const timeoutMs = parsing(() => parseDuration(values.timeout, "--timeout"));
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
  if (values.output === "json") process.stdout.write(`${JSON.stringify(rows)}\n`);
  else process.stdout.write(formatTable(rows));
  return 0;
}

function formatTable(rows: readonly ConnectRow[]): string {
  const table = [
    ["PORT", "RESULT", "MS", "REPLY"],
    ...rows.map((r) => [`${r.port}/${r.protocol}`, r.result, r.ms.toFixed(1), r.reply ?? r.error ?? ""]),
  ];
  const widths = table[0].map((_, c) => Math.max(...table.map((row) => row[c].length)));
  const lines = table.map((row) =>
    row
      .map((cell, c) => cell.padEnd(widths[c]))
      .join("  ")
      .trimEnd(),
  );
  return `${lines.join("\n")}\n`;
}

export async function probeMain(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "--help" || sub === "-h" || sub === "help") {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  try {
    if (sub === "serve") return await serve(rest);
    if (sub === "connect") return await connect(rest);
    if (sub === "stats") return await stats(rest);
    if (sub === "send") return await send(rest);
    throw new UsageError(
      sub ? `unknown probe command ${JSON.stringify(sub)}` : "a probe command is required",
    );
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`sluice probe: ${err.message}\n${usage}\n`);
    return 2;
  }
}
