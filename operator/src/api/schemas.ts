// ajv validation of objects against the same schemas the API server uses: the CRDs' openAPIV3Schema
// (read from crds/) and the NetworkPolicy schema. CEL rules are not run here; validate.ts checks
// their intent in TypeScript.
import { readFileSync } from "node:fs";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import addFormatsModule from "ajv-formats";
import { parse } from "yaml";
import { networkPolicySchema } from "./networkpolicy.schema.ts";

const CRD_FILES: Record<string, string> = {
  SecurityPolicy: "securitypolicies.yaml",
  ClusterSecurityPolicy: "clustersecuritypolicies.yaml",
  SecurityIdentity: "securityidentities.yaml",
};

// Kubernetes schema extensions ajv must accept as annotations.
const KEYWORDS = [
  "x-kubernetes-validations",
  "x-kubernetes-int-or-string",
  "x-kubernetes-list-type",
  "x-kubernetes-list-map-keys",
  "x-kubernetes-preserve-unknown-fields",
];

function intOrString(schema: Record<string, unknown>): unknown {
  // ajv has no int-or-string type: spell it out.
  if (schema["x-kubernetes-int-or-string"])
    return { ...schema, anyOf: [{ type: "integer" }, { type: "string" }] };
  // kubectl's strict field validation rejects unknown fields: so do we.
  const out: Record<string, unknown> =
    schema.properties && schema.additionalProperties === undefined ? { additionalProperties: false } : {};
  for (const [k, v] of Object.entries(schema))
    out[k] =
      v && typeof v === "object" && !Array.isArray(v)
        ? k === "properties"
          ? Object.fromEntries(
              Object.entries(v).map(([pk, pv]) => [pk, intOrString(pv as Record<string, unknown>)]),
            )
          : intOrString(v as Record<string, unknown>)
        : v;
  return out;
}

export function crdSchema(kind: string): Record<string, unknown> {
  const file = new URL(`../../../crds/${CRD_FILES[kind]}`, import.meta.url);
  const crd = parse(readFileSync(file, "utf8"));
  return crd.spec.versions.find((v: { storage: boolean }) => v.storage).schema.openAPIV3Schema;
}

let validators: Map<string, ValidateFunction> | undefined;

function getValidators(): Map<string, ValidateFunction> {
  if (validators) return validators;
  const ajv = new Ajv({ allErrors: true, strict: false });
  for (const k of KEYWORDS) ajv.addKeyword(k);
  // ajv-formats is CommonJS: its default export arrives wrapped.
  const addFormats =
    (addFormatsModule as unknown as { default: (a: Ajv) => void }).default ?? addFormatsModule;
  addFormats(ajv);
  ajv.addFormat("int32", {
    type: "number",
    validate: (n: number) => Number.isInteger(n) && Math.abs(n) < 2 ** 31,
  });
  ajv.addFormat("int64", { type: "number", validate: (n: number) => Number.isInteger(n) });
  validators = new Map<string, ValidateFunction>();
  for (const kind of Object.keys(CRD_FILES))
    validators.set(kind, ajv.compile(intOrString(crdSchema(kind)) as object));
  validators.set("NetworkPolicy", ajv.compile(intOrString(networkPolicySchema) as object));
  return validators;
}

export interface SchemaError {
  field: string;
  message: string;
}

export function isValidatedKind(kind: unknown): boolean {
  return typeof kind === "string" && (kind in CRD_FILES || kind === "NetworkPolicy");
}

export function validateSchema(object: { kind?: unknown }): SchemaError[] {
  const v = getValidators().get(String(object.kind));
  if (!v) return [];
  if (v(object)) return [];
  return (v.errors ?? [])
    .filter((e) => e.keyword !== "anyOf")
    .map((e: ErrorObject) => ({
      field:
        e.instancePath
          .replace(/^\//, "")
          .replace(/\/(\d+)(?=\/|$)/g, "[$1]")
          .replace(/\//g, ".") || "(root)",
      message:
        e.keyword === "additionalProperties"
          ? `unknown field ${JSON.stringify(e.params.additionalProperty)}`
          : (e.message ?? "invalid"),
    }));
}
