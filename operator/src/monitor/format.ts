// `sluice monitor -o table`: one line a flow, Hubble-style (time, node, direction, verdict, source ->
// destination, port/protocol, what decided), and a line for what a stream lost. Pure.
import type { FlowPeer, FlowRecord, StatsRecord } from "./flow-record.ts";

export const TABLE_HEADER = [
  "TIME",
  "NODE",
  "DIRECTION",
  "VERDICT",
  "SOURCE",
  "",
  "DESTINATION",
  "PORT",
  "DECIDED BY",
];
const WIDTHS = [19, 12, 9, 8, 28, 2, 28, 10];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

// "Dec  3 19:20:17.123" in local time, as Hubble prints it.
export function formatTime(iso: string): string {
  const d = new Date(iso);
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2)} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

// A pod by key; otherwise the entity (with its node or CIDR) and the address.
export function formatPeer(p: FlowPeer, labels = false): string {
  let s: string;
  if (p.pod) s = p.pod;
  else if (p.entity === "host" || p.entity === "remote-node")
    s = `${p.entity}${p.node ? `:${p.node}` : ""} ${p.address}`;
  else if (p.cidr) s = `${p.cidr} ${p.address}`;
  else s = p.entity === "pod" ? p.address : `${p.entity} ${p.address}`;
  if (!labels) return s;
  const l = Object.entries(p.labels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
  return `${s} [id ${p.identity}${l ? ` ${l}` : ""}]`;
}

function row(cells: readonly string[]): string {
  return cells
    .map((c, i) => (i < WIDTHS.length ? c.padEnd(WIDTHS[i]!) : c))
    .join(" ")
    .trimEnd();
}

export function tableHeader(): string {
  return row(TABLE_HEADER);
}

export function formatFlow(r: FlowRecord, labels = false): string {
  const port =
    r.protocol === "TCP" || r.protocol === "UDP" || r.protocol === "SCTP"
      ? `${r.port}/${r.protocol}`
      : r.protocol;
  return row([
    formatTime(r.time),
    r.node,
    r.direction,
    r.verdict,
    formatPeer(r.source, labels),
    "->",
    formatPeer(r.destination, labels),
    port,
    r.audit
      ? `${r.enforced} by ${r.decidedBy}; audit would ${r.audit.verdict === "denied" ? "deny" : "allow"}: ${r.audit.decidedBy}`
      : r.decidedBy,
  ]);
}

// What the stream lost so far, or undefined when nothing: flows this reader skipped, denied packets the
// datapath did not report although it samples every one (its rate limit or a full ring buffer).
export function formatLoss(s: StatsRecord): string | undefined {
  const parts: string[] = [];
  if (s.readerDropped > 0) parts.push(`${s.readerDropped} flows skipped (this reader was too slow)`);
  if (s.judged && s.sampling.deny === 1) {
    const unreported = s.judged.denied - s.received.denied;
    if (unreported > 0)
      parts.push(
        `${unreported} denied packets not reported (rate limit ${s.sampling.perSecond}/s per CPU, or the ring buffer was full)`,
      );
  }
  if (s.undecodable > 0) parts.push(`${s.undecodable} events could not be named`);
  return parts.length > 0 ? `${s.node}: ${parts.join("; ")}` : undefined;
}
