// Runs inside one pod's network namespace: reads a probe list (JSON) on stdin, sends real packets
// to every target in parallel and prints the verdicts as JSON. Drops are silent, so "deny" means
// no answer within the timeout: no TCP handshake, no UDP reply after the retries.
import { createSocket } from "node:dgram";
import { isIPv6, Socket } from "node:net";
import type { ProbeRequest, ProbeResponse, ProbeOutcome } from "./probe-protocol.ts";

function probeTcp(ip: string, port: number, expectKey: string, timeoutMs: number): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    const sock = new Socket();
    let buf = "";
    let settled = false;
    const finish = (o: ProbeOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(o);
    };
    const timer = setTimeout(() => finish({ verdict: "deny" }), timeoutMs);
    sock.on("data", (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      const got = buf.slice(0, nl);
      finish(got === expectKey ? { verdict: "allow" } : { verdict: "allow", note: `answered by ${got}` });
    });
    sock.on("error", (err: NodeJS.ErrnoException) => {
      // A refusal is a reply: the packets passed both ways but nothing listened.
      if (err.code === "ECONNREFUSED") finish({ verdict: "allow", note: "connection refused" });
      else finish({ verdict: "deny", note: err.code ?? err.message });
    });
    sock.connect({ host: ip, port });
  });
}

function probeUdp(
  ip: string,
  port: number,
  expectKey: string,
  timeoutMs: number,
  tries: number,
  token: string,
): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    const sock = createSocket(isIPv6(ip) ? "udp6" : "udp4");
    let settled = false;
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    const finish = (o: ProbeOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.close();
      resolve(o);
    };
    const send = () => {
      if (sent === tries) return finish({ verdict: "deny" });
      sent++;
      sock.send(`P${token}`, port, ip, (err) => {
        if (err) finish({ verdict: "deny", note: (err as NodeJS.ErrnoException).code ?? err.message });
      });
      timer = setTimeout(send, timeoutMs);
    };
    sock.on("message", (msg) => {
      const text = msg.toString();
      if (!text.endsWith(` ${token}`)) return; // a late answer to another probe
      const got = text.slice(0, -token.length - 1);
      finish(got === expectKey ? { verdict: "allow" } : { verdict: "allow", note: `answered by ${got}` });
    });
    sock.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ECONNREFUSED") finish({ verdict: "allow", note: "port unreachable" });
      else finish({ verdict: "deny", note: err.code ?? err.message });
    });
    sock.bind(0, send);
  });
}

async function main(): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const req = JSON.parse(Buffer.concat(chunks).toString()) as ProbeRequest;
  const results = await Promise.all(
    req.probes.map(async (p, i): Promise<ProbeOutcome & { id: number }> => {
      const o =
        p.protocol === "TCP"
          ? await probeTcp(p.ip, p.port, p.expectKey, req.tcpTimeoutMs)
          : await probeUdp(p.ip, p.port, p.expectKey, req.udpTimeoutMs, req.udpTries, `${process.pid}-${i}`);
      return { id: p.id, ...o };
    }),
  );
  const res: ProbeResponse = { results };
  process.stdout.write(`${JSON.stringify(res)}\n`);
}

main().catch((err: Error) => {
  process.stderr.write(`pod-prober: ${err.message}\n`);
  process.exit(1);
});
