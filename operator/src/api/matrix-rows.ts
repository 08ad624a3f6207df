// The connectivity matrix's rows and the ports they probe: one shape for what `sluice matrix` computes
// from policy (policy/matrix.ts) and what `sluice lab` measures with packets (lab/lab.ts), so the two
// compare row by row; the `--ports` option of every command that probes; the table they print.
// Dependency-free: the lab, the CLI and the compiler's simulator all import it.

export type ProbeProtocol = "TCP" | "UDP" | "SCTP";

// A port/protocol pair to probe: a pod's container port, or one of `--ports`.
export interface ProbePort {
  port: number;
  protocol: ProbeProtocol;
}

export interface MatrixRow {
  // Pod keys, "namespace/name" (api/k8s.ts podKey).
  from: string;
  to: string;
  port: number;
  protocol: ProbeProtocol;
  verdict: "allow" | "deny";
}

// `-o json` of `sluice matrix`, `lab run` and `lab probe`.
export interface MatrixJson {
  results: MatrixRow[];
}

export class PortsError extends Error {
  override name = "PortsError";
}

const protocols: readonly ProbeProtocol[] = ["TCP", "UDP", "SCTP"];

// `--ports "80/TCP,81/TCP,80/UDP"` → ports; the protocol defaults to TCP and is case-insensitive, a
// pair given twice is probed once.
export function parsePorts(text: string): ProbePort[] {
  const out: ProbePort[] = [];
  for (const raw of text.split(",")) {
    const item = raw.trim();
    if (item === "") continue;
    const [portText, protoText = "TCP", extra] = item.split("/");
    if (extra !== undefined) throw new PortsError(`--ports: "${item}": expected PORT[/PROTOCOL]`);
    const port = Number(portText);
    if (!/^\d+$/.test(portText) || port < 1 || port > 65535)
      throw new PortsError(`--ports: "${item}": port must be an integer in 1..65535`);
    const protocol = protoText.toUpperCase() as ProbeProtocol;
    if (!protocols.includes(protocol))
      throw new PortsError(`--ports: "${item}": protocol must be one of ${protocols.join(", ")}`);
    if (!out.some((p) => p.port === port && p.protocol === protocol)) out.push({ port, protocol });
  }
  if (out.length === 0) throw new PortsError("--ports: no ports given");
  return out;
}

export function formatPort(p: { port: number; protocol: string }): string {
  return `${p.port}/${p.protocol}`;
}

// Rows of other shapes (a plan's) compare by the same key.
type AnyRow = Omit<MatrixRow, "protocol"> & { protocol: string };

export function rowKey(r: Pick<AnyRow, "from" | "to" | "port" | "protocol">): string {
  return `${r.from} -> ${r.to} ${formatPort(r)}`;
}

export function sortRows<R extends AnyRow>(rows: readonly R[]): R[] {
  return [...rows].sort((a, b) => {
    const x = rowKey(a);
    const y = rowKey(b);
    return x < y ? -1 : x > y ? 1 : 0;
  });
}

// Rows whose verdicts differ between two matrices, and rows only one of them has.
export function diffMatrices(a: readonly AnyRow[], b: readonly AnyRow[]): string[] {
  const bm = new Map(b.map((r) => [rowKey(r), r.verdict]));
  const out: string[] = [];
  for (const r of a) {
    const k = rowKey(r);
    const v = bm.get(k);
    if (v === undefined) out.push(`${k}: only in the first (${r.verdict})`);
    else if (v !== r.verdict) out.push(`${k}: ${r.verdict} vs ${v}`);
    bm.delete(k);
  }
  for (const [k, v] of bm) out.push(`${k}: only in the second (${v})`);
  return out;
}

// One line per (from, to) pair, one column per port/protocol probed anywhere; "-" where that port was
// not probed for that destination.
export function formatMatrixTable(rows: ReadonlyArray<AnyRow>): string {
  const cols: string[] = [];
  const pairs = new Map<string, Map<string, string>>();
  for (const r of rows) {
    const col = formatPort(r);
    if (!cols.includes(col)) cols.push(col);
    const pk = `${r.from}\u0000${r.to}`;
    let cells = pairs.get(pk);
    if (!cells) {
      cells = new Map();
      pairs.set(pk, cells);
    }
    cells.set(col, r.verdict);
  }
  cols.sort((a, b) => {
    const [pa, xa] = a.split("/");
    const [pb, xb] = b.split("/");
    return xa === xb ? Number(pa) - Number(pb) : xa < xb ? -1 : 1;
  });
  const table: string[][] = [["FROM", "TO", ...cols]];
  for (const [pk, cells] of pairs) {
    const [from, to] = pk.split("\u0000");
    table.push([from, to, ...cols.map((c) => cells.get(c) ?? "-")]);
  }
  const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)));
  return table
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i]))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}
