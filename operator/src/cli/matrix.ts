// `sluice matrix -f <files|dirs|->... [--ports 80/TCP,81/UDP] [-o table|json|yaml]`
import { formatMatrixTable, parsePorts } from "../api/matrix-rows.ts";
import { inputsFromObjects } from "../policy/index.ts";
import type { PolicyInputs } from "../policy/compile.ts";
import { type AuditedRow, computeMatrix } from "../policy/matrix.ts";
import { checkInputs, loadInputs } from "./inputs.ts";
import { outputFormat, outputOption, writeOutput } from "./output.ts";
import { flagValue, parseCommandArgs } from "./usage.ts";

const usage =
  "usage: sluice matrix -f <file or dir>... [--ports 80/TCP,81/UDP] [-o table|json|yaml]\n" +
  "       (-f -: manifests from stdin)";

export function matrixFromPaths(
  paths: readonly string[],
  ports?: string,
  audit = false,
): { rows: AuditedRow[]; errors: string[]; inputs: PolicyInputs } {
  const { documents, errors } = loadInputs(paths);
  const inputs = inputsFromObjects(documents.map((d) => d.object));
  return {
    inputs,
    rows: computeMatrix(inputs, { ports: ports ? parsePorts(ports) : undefined, audit }),
    errors: errors.map((e) => `${e.path}:${e.line}: ${e.message}`),
  };
}

export async function matrixMain(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandArgs(
    {
      args: [...argv],
      options: {
        file: { type: "string", short: "f", multiple: true },
        ports: { type: "string" },
        ...outputOption,
      },
      strict: true,
    },
    usage,
  );
  const output = outputFormat(values.output);
  if (values.ports) flagValue(() => parsePorts(values.ports ?? ""));
  checkInputs("-f", values.file ?? []);
  const { rows, errors } = matrixFromPaths(values.file ?? [], values.ports);
  for (const e of errors) process.stderr.write(`${e}\n`);
  if (errors.length > 0) return 1;
  writeOutput(output, { results: rows }, () => formatMatrixTable(rows));
  return 0;
}
