// Runs inside one pod's network namespace: reads a probe list (JSON) on stdin, sends real packets
// to every target in parallel and prints the verdicts as JSON. Drops are silent, so "deny" means
// no answer within the timeout: no TCP handshake, no UDP reply after the retries.
import { type ProbeResult, probeTcp, probeUdp } from "./probe-sockets.ts";
import type { ProbeOutcome, ProbeRequest, ProbeResponse } from "./probe-protocol.ts";

// A refusal is a reply: the packets passed both ways but nothing listened.
function outcome(r: ProbeResult, expectKey: string, refusedNote: string): ProbeOutcome {
  if (r.result === "refused") return { verdict: "allow", note: refusedNote };
  if (r.result === "blocked") return r.error ? { verdict: "deny", note: r.error } : { verdict: "deny" };
  return r.answer === expectKey
    ? { verdict: "allow" }
    : { verdict: "allow", note: `answered by ${r.answer}` };
}

async function main(): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const req = JSON.parse(Buffer.concat(chunks).toString()) as ProbeRequest;
  const results = await Promise.all(
    req.probes.map(async (p, i): Promise<ProbeOutcome & { id: number }> => {
      const o =
        p.protocol === "TCP"
          ? outcome(
              await probeTcp(p.ip, p.port, { timeoutMs: req.tcpTimeoutMs, greeting: "required" }),
              p.expectKey,
              "connection refused",
            )
          : outcome(
              await probeUdp(p.ip, p.port, {
                timeoutMs: req.udpTimeoutMs,
                tries: req.udpTries,
                token: `${process.pid}-${i}`,
              }),
              p.expectKey,
              "port unreachable",
            );
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
