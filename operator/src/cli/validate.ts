// `sluice validate <files|dirs|->...`: every YAML document checked as the API server would check a
// `kubectl apply` of it (api/admission.ts: kind and apiVersion, unknown fields, ObjectMeta, the CRD
// schemas and CEL rules, NetworkPolicy's validation), then the semantic checks the operator makes
// (policy/validate.ts). Prints `path:line: kind/namespace/name: field: message`; exit 1 on any error.
// Objects that are not policies (Pods, Namespaces, Deployments…) are passed over and counted. For a
// GitOps repo's CI.
import { admit } from "../api/admission.ts";
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
  /** apiserver: the API server would reject the object; sluice: it would store it, the operator refuses it. */
  source: "apiserver" | "sluice";
}

/** A document that is not a policy and was not checked beyond its kind. */
export interface PassedOver {
  path: string;
  line: number;
  object: string;
  note: string;
}

function objectName(o: unknown): string {
  const x = (o ?? {}) as { kind?: unknown; metadata?: { namespace?: unknown; name?: unknown } };
  const part = (v: unknown) => (typeof v === "string" && v !== "" ? v : undefined);
  return [part(x.kind) ?? "?", part(x.metadata?.namespace), part(x.metadata?.name) ?? "?"]
    .filter((s) => s !== undefined)
    .join("/");
}

export function validateManifests(docs: readonly LoadedDocument[]): {
  messages: ValidationMessage[];
  passedOver: PassedOver[];
} {
  const context = classifyObjects(docs.map((d) => d.object));
  const messages: ValidationMessage[] = [];
  const passedOver: PassedOver[] = [];
  for (const d of docs) {
    const at = { path: d.path, line: d.line, object: objectName(d.object) };
    const a = admit(d.object);
    for (const e of a.errors) messages.push({ ...at, ...e, source: "apiserver" });
    if (a.errors.length === 0 && a.role === "other")
      passedOver.push({ ...at, note: a.note ?? "not a policy" });
    if (a.errors.length > 0 || a.role !== "policy") continue;
    for (const e of validatePolicy(a.decoded as AnyPolicy, context))
      messages.push({ ...at, ...e, source: "sluice" });
  }
  return { messages, passedOver };
}

export function validateDocuments(docs: readonly LoadedDocument[]): ValidationMessage[] {
  return validateManifests(docs).messages;
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
  const checked = validateManifests(documents);
  // A YAML syntax error has no object or field: it is reported as field "yaml".
  const messages: Array<Partial<ValidationMessage> & { path: string; line: number; message: string }> = [
    ...errors.map((e) => ({ ...e, field: "yaml" })),
    ...checked.messages,
  ];
  const n = messages.length;
  writeOutput(
    output,
    { documents: documents.length, files, errors: messages, passedOver: checked.passedOver },
    () =>
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
    const skipped = checked.passedOver.length;
    // Say what was not checked, so a policy whose kind a typo turned into something else cannot hide.
    const kinds = [...new Set(checked.passedOver.map((p) => p.object.split("/")[0]))].sort().join(", ");
    const passed = skipped > 0 ? ` (${plural(skipped, "object")} passed over, not policies: ${kinds})` : "";
    process.stderr.write(
      n === 0
        ? `${plural(documents.length, "document")} in ${plural(files, "file")} valid${passed}\n`
        : `${plural(n, "error")} in ${plural(failing, "file")}${passed}\n`,
    );
  }
  return n === 0 ? 0 : 1;
}
