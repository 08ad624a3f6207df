// `sluice validate <files|dirs|->...`: every YAML document checked against the CRD schemas (ajv), the
// CRDs' CEL rules (their intent, in TS) and semantic checks. Prints
// `path:line: kind/namespace/name: field: message`; exit 1 on any error. For a GitOps repo's CI.
import { isValidatedKind, validateSchema } from "../api/schemas.ts";
import { classifyObjects } from "../api/objects.ts";
import type { LoadedDocument } from "../manifests/load.ts";
import type { AnyPolicy } from "../policy/normalize.ts";
import { validatePolicy } from "../policy/validate.ts";
import { checkInputs, loadInputs } from "./inputs.ts";
import { outputFormat, outputOption, plural, writeOutput } from "./output.ts";
import { parseCommandArgs } from "./usage.ts";

const usage =
  "usage: sluice validate <file or dir>... [-o table|json|yaml]   (- or -f -: manifests from stdin)\n" +
  "       exit 0: valid; 1: errors (path:line: kind/namespace/name: field: message); 2: usage";

export interface ValidationMessage {
  path: string;
  line: number;
  object: string;
  field: string;
  message: string;
}

function objectName(o: unknown): string {
  const x = o as { kind?: string; metadata?: { namespace?: string; name?: string } };
  return [x.kind ?? "?", x.metadata?.namespace, x.metadata?.name ?? "?"]
    .filter((s) => s !== undefined)
    .join("/");
}

export function validateDocuments(docs: readonly LoadedDocument[]): ValidationMessage[] {
  const context = classifyObjects(docs.map((d) => d.object));
  const out: ValidationMessage[] = [];
  for (const d of docs) {
    const o = d.object as { kind?: unknown };
    if (!isValidatedKind(o.kind)) continue;
    const at = { path: d.path, line: d.line, object: objectName(o) };
    const schemaErrors = validateSchema(o);
    for (const e of schemaErrors) out.push({ ...at, ...e });
    if (schemaErrors.length > 0 || o.kind === "SecurityIdentity") continue;
    for (const e of validatePolicy(o as AnyPolicy, context)) out.push({ ...at, ...e });
  }
  return out;
}

export function formatMessage(m: ValidationMessage): string {
  return `${m.path}:${m.line}: ${m.object}: ${m.field}: ${m.message}`;
}

export async function validateMain(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    {
      args: [...argv],
      options: { file: { type: "string", short: "f", multiple: true }, ...outputOption },
      allowPositionals: true,
      strict: true,
    },
    usage,
  );
  const output = outputFormat(values.output);
  const paths = [...(values.file ?? []), ...positionals];
  checkInputs(undefined, paths);
  const { documents, errors, files } = loadInputs(paths);
  // A YAML syntax error has no object or field: it is reported as field "yaml".
  const messages: Array<Partial<ValidationMessage> & { path: string; line: number; message: string }> = [
    ...errors.map((e) => ({ ...e, field: "yaml" })),
    ...validateDocuments(documents),
  ];
  const n = messages.length;
  writeOutput(output, { documents: documents.length, files, errors: messages }, () =>
    messages
      .map((m) =>
        m.object === undefined
          ? `${m.path}:${m.line}: yaml: ${m.message}`
          : formatMessage(m as ValidationMessage),
      )
      .join("\n"),
  );
  if (output === "table") {
    const failing = new Set(messages.map((m) => m.path)).size;
    process.stderr.write(
      n === 0
        ? `${plural(documents.length, "document")} in ${plural(files, "file")} valid\n`
        : `${plural(n, "error")} in ${plural(failing, "file")}\n`,
    );
  }
  return n === 0 ? 0 : 1;
}
