// The `--ports` option: which port/protocol pairs to probe instead of each pod's container ports.
import type { LabPort, LabProtocol } from "./topology.ts";

export class PortsError extends Error {
  override name = "PortsError";
}

const protocols: readonly LabProtocol[] = ["TCP", "UDP", "SCTP"];

// "80/TCP,81/TCP,80/UDP" → ports; the protocol defaults to TCP, and is case-insensitive.
export function parsePorts(text: string): LabPort[] {
  const out: LabPort[] = [];
  for (const raw of text.split(",")) {
    const item = raw.trim();
    if (item === "") continue;
    const [portText, protoText = "TCP", extra] = item.split("/");
    if (extra !== undefined) throw new PortsError(`--ports: "${item}": expected PORT[/PROTOCOL]`);
    const port = Number(portText);
    if (!/^\d+$/.test(portText) || port < 1 || port > 65535)
      throw new PortsError(`--ports: "${item}": port must be an integer in 1..65535`);
    const protocol = protoText.toUpperCase() as LabProtocol;
    if (!protocols.includes(protocol))
      throw new PortsError(`--ports: "${item}": protocol must be one of ${protocols.join(", ")}`);
    if (!out.some((p) => p.port === port && p.protocol === protocol)) out.push({ port, protocol });
  }
  if (out.length === 0) throw new PortsError("--ports: no ports given");
  return out;
}

export function formatPort(p: LabPort): string {
  return `${p.port}/${p.protocol}`;
}
