// `sluice plan --before <dir> --after <dir> [--ports ...] [-o table|json|yaml]`: the connectivity rows
// that a change of manifests opens or closes.
import { type MatrixRow, parsePorts } from "../api/matrix-rows.ts";
import { checkInputs } from "./inputs.ts";
import { matrixFromPaths } from "./matrix.ts";
import { outputFormat, outputOption, writeOutput } from "./output.ts";
import { flagValue, parseCommandArgs } from "./usage.ts";

const usage =
  "usage: sluice plan --before <file or dir>... --after <file or dir>... [--ports 80/TCP] [-o table|json|yaml]\n" +
  "       (- for one of them: manifests from stdin, e.g. --after -)";

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
  const { values } = parseCommandArgs(
    {
      args: [...argv],
      options: {
        before: { type: "string", multiple: true },
        after: { type: "string", multiple: true },
        ports: { type: "string" },
        ...outputOption,
      },
      strict: true,
    },
    usage,
  );
  const output = outputFormat(values.output);
  if (values.ports) flagValue(() => parsePorts(values.ports ?? ""));
  const before = values.before ?? [];
  const after = values.after ?? [];
  checkInputs("--before", before);
  checkInputs("--after", after);
  checkInputs("--before/--after", [...before, ...after]);
  const a = matrixFromPaths(before, values.ports);
  const b = matrixFromPaths(after, values.ports);
  const errors = [...a.errors, ...b.errors];
  for (const e of errors) process.stderr.write(`${e}\n`);
  if (errors.length > 0) return 1;
  const rows = planRows(a.rows, b.rows);
  writeOutput(output, { changes: rows }, () =>
    rows.length === 0
      ? "no connectivity changes"
      : rows
          .map((r) => `${r.change.padEnd(7)} ${r.from} -> ${r.to} ${r.port}/${r.protocol} (${r.verdict})`)
          .join("\n"),
  );
  return 0;
}
