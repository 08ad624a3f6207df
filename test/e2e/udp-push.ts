// A flow that lives on conntrack alone: the client sends one datagram, then the server sends datagrams
// back to it for a while and the client sends nothing more. Where the client's pod is ingress-isolated,
// those datagrams pass only as replies of the tracked flow.
//   server <port> <rate> <durationMs>: prints "ready", serves one client, prints {"sent": n, "startedAt": ms}
//   (startedAt: the wall clock when the client's first datagram came, the push's start)
//   client <ip> <port> <durationMs>: prints {"received": n, "lastSeq": s, "overflowed": m}
//   (overflowed: datagrams the kernel dropped at a full socket receive buffer in the client's network
//   namespace meanwhile, its UDP RcvbufErrors: a client starved of CPU loses datagrams the datapath
//   delivered, which is not a datapath loss)
import { createSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import { isIPv6 } from "node:net";

// This network namespace's UDP RcvbufErrors (/proc/net/snmp is per namespace).
function rcvbufErrors(): number {
  const [names, values] = readFileSync("/proc/net/snmp", "utf8")
    .split("\n")
    .filter((l) => l.startsWith("Udp:"))
    .map((l) => l.trim().split(/\s+/));
  const i = names?.indexOf("RcvbufErrors") ?? -1;
  if (!values || i < 0) throw new Error("/proc/net/snmp has no Udp RcvbufErrors");
  return Number(values[i]);
}

const [mode, ...args] = process.argv.slice(2);

function server(port: number, rate: number, durationMs: number): void {
  const sock = createSocket({ type: "udp6", ipv6Only: false });
  sock.bind(port, "::", () => process.stdout.write("ready\n"));
  let started = false;
  sock.on("message", (_msg, peer) => {
    if (started) return;
    started = true;
    const startedAt = Date.now();
    let seq = 0;
    const t0 = performance.now();
    // Batches every 10 ms at the asked rate.
    const timer = setInterval(() => {
      const due = Math.min(
        Math.floor(((performance.now() - t0) * rate) / 1000),
        Math.floor((durationMs * rate) / 1000),
      );
      for (; seq < due; seq++) {
        const b = Buffer.alloc(8);
        b.writeUInt32BE(seq, 0);
        sock.send(b, peer.port, peer.address);
      }
      if (performance.now() - t0 >= durationMs) {
        clearInterval(timer);
        setTimeout(() => {
          process.stdout.write(`${JSON.stringify({ sent: seq, startedAt })}\n`);
          sock.close();
        }, 200);
      }
    }, 10);
  });
}

function client(ip: string, port: number, durationMs: number): void {
  // A larger buffer than the default rides out a short stall (the kernel caps it at net.core.rmem_max).
  const sock = createSocket({ type: isIPv6(ip) ? "udp6" : "udp4", recvBufferSize: 4 << 20 });
  let received = 0;
  let lastSeq = -1;
  const overflowedBefore = rcvbufErrors();
  sock.on("message", (msg) => {
    received++;
    lastSeq = Math.max(lastSeq, msg.readUInt32BE(0));
  });
  // Until the first datagram comes back (the server may not listen yet), then never again.
  const hello = setInterval(() => {
    if (received === 0) sock.send("start", port, ip);
    else clearInterval(hello);
  }, 100);
  sock.send("start", port, ip);
  setTimeout(() => {
    clearInterval(hello);
    process.stdout.write(
      `${JSON.stringify({ received, lastSeq, overflowed: rcvbufErrors() - overflowedBefore })}\n`,
    );
    sock.close();
  }, durationMs + 1500);
}

if (mode === "server") server(Number(args[0]), Number(args[1]), Number(args[2]));
else if (mode === "client") client(args[0], Number(args[1]), Number(args[2]));
else {
  process.stderr.write("usage: udp-push.ts server <port> <rate> <ms> | client <ip> <port> <ms>\n");
  process.exit(2);
}
