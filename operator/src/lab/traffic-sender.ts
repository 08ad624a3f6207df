// Runs inside a pod's network namespace: sends the sequence-numbered UDP streams and the long TCP
// stream of a TrafficSpec (JSON on stdin) for its duration, then prints a TrafficReport.
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { isIPv6, Socket } from "node:net";
import type { TrafficReport, TrafficSpec } from "./traffic-protocol.ts";

const TICK_MS = 2;

async function readSpec(): Promise<TrafficSpec> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString()) as TrafficSpec;
}

function connectUdp(ip: string, port: number): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    const sock = createSocket({ type: isIPv6(ip) ? "udp6" : "udp4", sendBufferSize: 1 << 20 });
    sock.once("error", reject);
    sock.connect(port, ip, () => resolve(sock));
  });
}

/** Sends the spec's streams for its duration; what was sent (the receivers count what arrived). */
export async function sendTraffic(spec: TrafficSpec): Promise<TrafficReport> {
  const report: TrafficReport = { udpSent: {}, udpSendErrors: 0, tcpBytes: 0, tcpConnected: false };
  const udp = await Promise.all(
    spec.udp.map(async (s) => {
      const sock = await connectUdp(s.ip, s.port);
      // Errors from the kernel (e.g. an ICMP error) must not kill the sender; drops are counted at the receiver.
      sock.on("error", () => {
        report.udpSendErrors++;
      });
      report.udpSent[s.stream] = 0;
      return { spec: s, sock, seq: 0 };
    }),
  );

  let ending = false;
  let tcp: Socket | undefined;
  let tcpDone: Promise<void> = Promise.resolve();
  const chunk = Buffer.alloc(16 * 1024, 0x61);
  if (spec.tcp) {
    const t = spec.tcp;
    tcp = new Socket();
    tcpDone = new Promise<void>((resolve) => {
      tcp!.on("error", (err: NodeJS.ErrnoException) => {
        report.tcpError ??= err.code ?? err.message;
      });
      tcp!.on("close", () => resolve());
    });
    tcp.on("data", () => {}); // the greeting
    tcp.on("end", () => {
      if (!ending) report.tcpError ??= "closed by the peer";
    });
    await new Promise<void>((resolve, reject) => {
      tcp!.once("connect", () => {
        report.tcpConnected = true;
        resolve();
      });
      tcp!.once("error", reject);
      tcp!.connect({ host: t.ip, port: t.port });
    });
  }

  const t0 = performance.now();
  const bytesPerTick = spec.tcp ? Math.max(1, Math.round((spec.tcp.bytesPerSecond * TICK_MS) / 1000)) : 0;
  let tcpOwed = 0;
  let tcpBlocked = false;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = performance.now() - t0;
      const until = Math.min(elapsed, spec.durationMs);
      for (const s of udp) {
        const due = Math.floor((s.spec.rate * until) / 1000);
        while (s.seq < due) {
          s.sock.send(`S${s.spec.stream}:${s.seq}`);
          s.seq++;
          report.udpSent[s.spec.stream]++;
        }
      }
      if (tcp && !tcp.destroyed && elapsed < spec.durationMs) {
        tcpOwed += bytesPerTick;
        while (!tcpBlocked && tcpOwed > 0) {
          const n = Math.min(tcpOwed, chunk.length);
          tcpOwed -= n;
          report.tcpBytes += n;
          if (!tcp.write(chunk.subarray(0, n))) {
            tcpBlocked = true;
            tcp.once("drain", () => {
              tcpBlocked = false;
            });
          }
        }
      }
      if (elapsed >= spec.durationMs) {
        clearInterval(timer);
        resolve();
      }
    }, TICK_MS);
  });
  ending = true;
  if (tcp && !tcp.destroyed) tcp.end();
  await tcpDone;
  for (const s of udp) s.sock.close();
  return report;
}

// Run as a script (the lab, through nsenter; `kubectl exec` in a cluster): the spec on stdin.
if (import.meta.main)
  readSpec()
    .then(sendTraffic)
    .then((report) => process.stdout.write(`${JSON.stringify(report)}\n`))
    .catch((err: Error) => {
      process.stderr.write(`traffic-sender: ${err.message}\n`);
      process.exit(1);
    });
