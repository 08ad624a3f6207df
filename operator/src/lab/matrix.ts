// The connectivity matrix the lab measures: the same JSON `sluice matrix` computes from policy,
// so the two can be compared row by row.
import type { LabProtocol } from "./topology.ts";

export interface MatrixRow {
  from: string;
  to: string;
  port: number;
  protocol: LabProtocol;
  verdict: "allow" | "deny";
}

export interface MatrixJson {
  results: MatrixRow[];
}

export function rowKey(r: Pick<MatrixRow, "from" | "to" | "port"> & { protocol: string }): string {
  return `${r.from} -> ${r.to} ${r.port}/${r.protocol}`;
}

export function sortRows<R extends AnyRow>(rows: readonly R[]): R[] {
  return [...rows].sort((a, b) => {
    const x = rowKey(a);
    const y = rowKey(b);
    return x < y ? -1 : x > y ? 1 : 0;
  });
}

// Rows whose verdicts differ between two matrices, and rows only one of them has.
type AnyRow = Omit<MatrixRow, "protocol"> & { protocol: string };

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
export function formatMatrixTable(
  rows: ReadonlyArray<Pick<MatrixRow, "from" | "to" | "port" | "verdict"> & { protocol: string }>,
): string {
  const cols: string[] = [];
  const pairs = new Map<string, Map<string, string>>();
  for (const r of rows) {
    const col = `${r.port}/${r.protocol}`;
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
