// `sluice matrix -f <files|dirs>... [--ports 80/TCP,81/UDP] [-o table|json]`
import { parseArgs } from "node:util";
import { formatMatrixTable, type MatrixRow, parsePorts } from "../api/matrix-rows.ts";
import { loadManifests } from "../manifests/load.ts";
import { inputsFromObjects } from "../policy/index.ts";
import { computeMatrix } from "../policy/matrix.ts";

const usage = "usage: sluice matrix -f <file or dir>... [--ports 80/TCP,81/UDP] [-o table|json]";

export function matrixFromPaths(
  paths: readonly string[],
  ports?: string,
): { rows: MatrixRow[]; errors: string[] } {
  const { documents, errors } = loadManifests(paths);
  const inputs = inputsFromObjects(documents.map((d) => d.object));
  return {
    rows: computeMatrix(inputs, { ports: ports ? parsePorts(ports) : undefined }),
    errors: errors.map((e) => `${e.path}:${e.line}: ${e.message}`),
  };
}

export async function matrixMain(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      file: { type: "string", short: "f", multiple: true },
      ports: { type: "string" },
      output: { type: "string", short: "o", default: "table" },
    },
  });
  if (!values.file?.length || (values.output !== "table" && values.output !== "json")) {
    process.stderr.write(`${usage}\n`);
    return 2;
  }
  const { rows, errors } = matrixFromPaths(values.file, values.ports);
  for (const e of errors) process.stderr.write(`${e}\n`);
  if (errors.length > 0) return 1;
  if (values.output === "json") process.stdout.write(`${JSON.stringify({ results: rows })}\n`);
  else process.stdout.write(`${formatMatrixTable(rows)}\n`);
  return 0;
}
