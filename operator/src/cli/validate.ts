// `sluice validate <files|dirs>...`: every YAML document checked against the CRD schemas (ajv), the
// CRDs' CEL rules (their intent, in TS) and semantic checks. Prints
// `path:line: kind/namespace/name: field: message`; exit 1 on any error. For a GitOps repo's CI.
import { isValidatedKind, validateSchema } from "../api/schemas.ts";
import { classifyObjects } from "../api/objects.ts";
import { loadManifests, type LoadedDocument } from "../manifests/load.ts";
import type { AnyPolicy } from "../policy/normalize.ts";
import { validatePolicy } from "../policy/validate.ts";

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
  if (argv.length === 0 || argv.includes("-h") || argv.includes("--help")) {
    process.stderr.write("usage: sluice validate <file or dir>...\n");
    return 2;
  }
  const { documents, errors } = loadManifests(argv);
  const messages = validateDocuments(documents);
  for (const e of errors) process.stdout.write(`${e.path}:${e.line}: yaml: ${e.message}\n`);
  for (const m of messages) process.stdout.write(`${formatMessage(m)}\n`);
  const n = errors.length + messages.length;
  process.stderr.write(n === 0 ? `${documents.length} documents valid\n` : `${n} errors\n`);
  return n === 0 ? 0 : 1;
}
