// Runs inside one pod's network namespace (started by the lab through nsenter): listens on the
// probed ports and answers probes with the pod's key, so a probe also proves it reached the right
// pod. It doubles as the sink of the live-replacement traffic: sequence-numbered UDP datagrams
// ("S<stream>:<seq>") are counted, TCP bytes after the greeting are counted, and a "stats" line on
// stdin prints the counts as one JSON line.
//
// usage: node pod-server.ts <key> <port/PROTO>,...
import type { Socket } from "node:net";
import { createInterface } from "node:readline";
import { listenTcp, listenUdp, StreamCounter } from "./probe-sockets.ts";

interface Stats {
  udpStreams: Record<string, number>;
  tcpBytes: number;
  tcpConnections: number;
  tcpErrors: string[];
}

const [key, portList = ""] = process.argv.slice(2);
if (!key) {
  process.stderr.write("usage: pod-server.ts <key> <port/PROTO>,...\n");
  process.exit(2);
}
const ports = portList
  .split(",")
  .filter((s) => s !== "")
  .map((s) => {
    const [port, protocol] = s.split("/");
    return { port: Number(port), protocol };
  });

const streams = new StreamCounter();
const stats: Omit<Stats, "udpStreams"> = { tcpBytes: 0, tcpConnections: 0, tcpErrors: [] };
const sockets = new Set<Socket>();

function snapshot(): Stats {
  return { udpStreams: streams.snapshot(), ...stats, tcpErrors: [...stats.tcpErrors] };
}

function countTcp(port: number, sock: Socket): void {
  stats.tcpConnections++;
  sockets.add(sock);
  sock.on("data", (d: Buffer) => {
    stats.tcpBytes += d.length;
  });
  sock.on("error", (err: NodeJS.ErrnoException) => {
    stats.tcpErrors.push(`${port}: ${err.code ?? err.message}`);
  });
  sock.on("close", () => sockets.delete(sock));
}

async function main(): Promise<void> {
  for (const { port, protocol } of ports) {
    if (protocol === "TCP") await listenTcp(key, port, { onConnection: (sock) => countTcp(port, sock) });
    else if (protocol === "UDP")
      await listenUdp(key, port, { recvBufferSize: 4 << 20, onDatagram: (msg) => streams.count(port, msg) });
    // SCTP: Node has no SCTP sockets; the lab skips SCTP probes (see probe.ts).
  }
  createInterface({ input: process.stdin }).on("line", (line) => {
    if (line === "stats") process.stdout.write(`${JSON.stringify(snapshot())}\n`);
    else if (line === "reset") {
      streams.clear();
      stats.tcpBytes = 0;
      stats.tcpConnections = 0;
      stats.tcpErrors = [];
    }
  });
  process.stdin.on("end", () => process.exit(0));
  process.stdout.write("ready\n");
}

main().catch((err: Error) => {
  process.stderr.write(`pod-server ${key}: ${err.message}\n`);
  process.exit(1);
});
