// `sluice plan --before <dir> --after <dir> [--ports ...] [-o table|json]`: the connectivity rows
// that a change of manifests opens or closes.
import { parseArgs } from "node:util";
import type { MatrixRow } from "../api/matrix-rows.ts";
import { matrixFromPaths } from "./matrix.ts";

const usage =
  "usage: sluice plan --before <file or dir>... --after <file or dir>... [--ports 80/TCP] [-o table|json]";

export interface PlanRow {
  from: string;
  to: string;
  port: number;
  protocol: string;
  change: "opened" | "closed" | "added" | "removed";
  verdict: "allow" | "deny";
}

export function planRows(before: readonly MatrixRow[], after: readonly MatrixRow[]): PlanRow[] {
  const key = (r: MatrixRow) => `${r.from}|${r.to}|${r.port}|${r.protocol}`;
  const old = new Map(before.map((r) => [key(r), r]));
  const now = new Map(after.map((r) => [key(r), r]));
  const out: PlanRow[] = [];
  for (const r of after) {
    const o = old.get(key(r));
    if (!o) {
      // A new pod pair: only worth a line when it is open.
      if (r.verdict === "allow") out.push({ ...r, change: "added" });
    } else if (o.verdict !== r.verdict)
      out.push({ ...r, change: r.verdict === "allow" ? "opened" : "closed" });
  }
  for (const r of before)
    if (!now.has(key(r)) && r.verdict === "allow") out.push({ ...r, change: "removed" });
  return out;
}

export async function planMain(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      before: { type: "string", multiple: true },
      after: { type: "string", multiple: true },
      ports: { type: "string" },
      output: { type: "string", short: "o", default: "table" },
    },
  });
  if (
    !values.before?.length ||
    !values.after?.length ||
    (values.output !== "table" && values.output !== "json")
  ) {
    process.stderr.write(`${usage}\n`);
    return 2;
  }
  const a = matrixFromPaths(values.before, values.ports);
  const b = matrixFromPaths(values.after, values.ports);
  const errors = [...a.errors, ...b.errors];
  for (const e of errors) process.stderr.write(`${e}\n`);
  if (errors.length > 0) return 1;
  const rows = planRows(a.rows, b.rows);
  if (values.output === "json") {
    process.stdout.write(`${JSON.stringify({ changes: rows })}\n`);
    return 0;
  }
  if (rows.length === 0) process.stdout.write("no connectivity changes\n");
  for (const r of rows)
    process.stdout.write(
      `${r.change.padEnd(7)} ${r.from} -> ${r.to} ${r.port}/${r.protocol} (${r.verdict})\n`,
    );
  return 0;
}
