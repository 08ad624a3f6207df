// The API server's decoding and schema checks of an object, with its field paths: nulls as it reads
// them, unknown fields (fieldValidation=Strict, kubectl's default since 1.27), then the OpenAPI schema
// (ajv) — the CRDs' openAPIV3Schema read from crds/ (SIG Network's policy API from crds/upstream/), or
// NetworkPolicy's Go types (networkpolicy.schema.ts). Defaults are applied first, as the API server does.
// CEL rules are in crd-rules.ts, NetworkPolicy's validation code in networkpolicy.ts.
import { readFileSync } from "node:fs";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import addFormatsModule from "ajv-formats";
import { parse } from "yaml";
import { checkRulesKnown, type Finding, type StructuralSchema } from "./crd-rules.ts";
import { networkPolicySchema, objectMetaSchema } from "./networkpolicy.schema.ts";

const CRD_FILES: Record<string, string> = {
  SecurityPolicy: "securitypolicies.yaml",
  ClusterSecurityPolicy: "clustersecuritypolicies.yaml",
  SecurityIdentity: "securityidentities.yaml",
  SecurityNodeStatus: "securitynodestatuses.yaml",
  ClusterNetworkPolicy: "upstream/clusternetworkpolicies.yaml",
  AdminNetworkPolicy: "upstream/adminnetworkpolicies.yaml",
  BaselineAdminNetworkPolicy: "upstream/baselineadminnetworkpolicies.yaml",
};

// Kubernetes schema extensions ajv must accept as annotations.
const KEYWORDS = [
  "x-kubernetes-validations",
  "x-kubernetes-int-or-string",
  "x-kubernetes-list-type",
  "x-kubernetes-list-map-keys",
  "x-kubernetes-preserve-unknown-fields",
  "x-kubernetes-map-type",
];

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === "object" && !Array.isArray(v);

// ajv has no int-or-string type: spell it out.
function intOrString(schema: StructuralSchema): StructuralSchema {
  const out: StructuralSchema = schema["x-kubernetes-int-or-string"]
    ? { ...schema, anyOf: [{ type: "integer" }, { type: "string" }] }
    : { ...schema };
  if (schema.properties)
    out.properties = Object.fromEntries(
      Object.entries(schema.properties).map(([k, v]) => [k, intOrString(v)]),
    );
  if (schema.items) out.items = intOrString(schema.items);
  if (typeof schema.additionalProperties === "object")
    out.additionalProperties = intOrString(schema.additionalProperties);
  return out;
}

export function crdSchema(kind: string): StructuralSchema {
  const file = new URL(`../../../crds/${CRD_FILES[kind]}`, import.meta.url);
  const crd = parse(readFileSync(file, "utf8"));
  return crd.spec.versions.find((v: { storage: boolean }) => v.storage).schema.openAPIV3Schema;
}

export function isCrdKind(kind: string): boolean {
  return kind in CRD_FILES;
}

interface Compiled {
  /** What decoding and pruning check: the schema with metadata as ObjectMeta. */
  schema: StructuralSchema;
  validate: ValidateFunction;
  crd: boolean;
}

let compiled: Map<string, Compiled> | undefined;

function getCompiled(): Map<string, Compiled> {
  if (compiled) return compiled;
  // useDefaults: the API server defaults (e.g. a port's protocol: TCP) before it validates `required`.
  const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: true });
  for (const k of KEYWORDS) ajv.addKeyword(k);
  // ajv-formats is CommonJS: its default export arrives wrapped.
  const addFormats =
    (addFormatsModule as unknown as { default: (a: Ajv) => void }).default ?? addFormatsModule;
  addFormats(ajv);
  ajv.addFormat("int32", {
    type: "number",
    validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31,
  });
  ajv.addFormat("int64", { type: "number", validate: (n: number) => Number.isInteger(n) });
  compiled = new Map<string, Compiled>();
  for (const kind of Object.keys(CRD_FILES)) {
    const raw = crdSchema(kind);
    checkRulesKnown(raw, kind);
    // Custom resources' metadata is ObjectMeta whatever the CRD says.
    const schema = { ...raw, properties: { ...raw.properties, metadata: objectMetaSchema } };
    // The API server resets status on create (a status subresource): only its unknown fields count.
    const forAjv = { ...schema, properties: { ...schema.properties, status: {} } };
    compiled.set(kind, { schema, validate: ajv.compile(intOrString(forAjv) as object), crd: true });
  }
  const np = networkPolicySchema as StructuralSchema;
  compiled.set("NetworkPolicy", { schema: np, validate: ajv.compile(intOrString(np) as object), crd: false });
  return compiled;
}

/** The schema `sluice validate` checks a kind against, for the CEL walk; undefined when it has none. */
export function schemaOf(kind: string): StructuralSchema | undefined {
  return getCompiled().get(kind)?.schema;
}

function zero(s: StructuralSchema | undefined): unknown {
  if (s?.["x-kubernetes-int-or-string"]) return undefined;
  switch (s?.type) {
    case "string":
      return "";
    case "integer":
    case "number":
      return 0;
    case "boolean":
      return false;
    case "array":
      return [];
    default:
      return {};
  }
}

/**
 * The object as the API server reads it. A Go type (NetworkPolicy, and ObjectMeta everywhere) decodes
 * null as the zero value: an absent field, an empty struct or string in a list. A CRD's structural
 * schema drops a null field (it is then absent, so `required` still applies) but keeps a null list item,
 * which fails its type.
 */
export function decodeNulls(s: StructuralSchema | undefined, v: unknown, goType: boolean): unknown {
  if (Array.isArray(v))
    return v.map((item) => (item === null && goType ? zero(s?.items) : decodeNulls(s?.items, item, goType)));
  if (!isObj(v)) return v;
  const out: Obj = {};
  for (const [k, item] of Object.entries(v)) {
    const sub =
      s?.properties?.[k] ??
      (typeof s?.additionalProperties === "object" ? s.additionalProperties : undefined);
    if (item === null) {
      // Map values: a Go map keeps the key with the zero value.
      if (goType && !s?.properties?.[k] && sub) out[k] = zero(sub);
      continue;
    }
    out[k] = decodeNulls(sub, item, goType || sub === objectMetaSchema);
  }
  return out;
}

/**
 * Fields the schema does not know, as the strict decoder names them (`spec.ingress[0].bad`). A CRD's
 * pruning also calls every key of an object where the schema has a string or a list unknown; Go's
 * decoder calls that a type error instead (schemaErrors).
 */
export function unknownFields(s: StructuralSchema | undefined, v: unknown, crd: boolean, at = ""): Finding[] {
  if (!s || s["x-kubernetes-preserve-unknown-fields"]) return [];
  const out: Finding[] = [];
  const shaped = s.properties !== undefined || s.additionalProperties !== undefined;
  if (Array.isArray(v)) {
    for (const [i, item] of v.entries()) out.push(...unknownFields(s.items, item, crd, `${at}[${i}]`));
  } else if (isObj(v) && (shaped || (crd && s.type !== undefined && s.type !== "object")))
    for (const [k, item] of Object.entries(v)) {
      const field = at ? `${at}.${k}` : k;
      const sub =
        s.properties?.[k] ??
        (typeof s.additionalProperties === "object" ? s.additionalProperties : undefined);
      if (!sub && s.additionalProperties !== true) out.push({ field, message: "unknown field" });
      else out.push(...unknownFields(sub, item, crd, field));
    }
  else if (isObj(v) && crd && s["x-kubernetes-int-or-string"])
    for (const k of Object.keys(v)) out.push({ field: at ? `${at}.${k}` : k, message: "unknown field" });
  return out;
}

/** x-kubernetes-list-type: set: a value that repeats an earlier one, named by its index as the API server does. */
export function duplicateSetItems(s: StructuralSchema | undefined, v: unknown, at = ""): Finding[] {
  if (!s) return [];
  const out: Finding[] = [];
  if (Array.isArray(v)) {
    if (s["x-kubernetes-list-type"] === "set") {
      const seen = new Set<string>();
      for (const [i, item] of v.entries()) {
        const key = JSON.stringify(item);
        if (seen.has(key)) out.push({ field: `${at}[${i}]`, message: `Duplicate value: ${key}` });
        seen.add(key);
      }
    }
    for (const [i, item] of v.entries()) out.push(...duplicateSetItems(s.items, item, `${at}[${i}]`));
  } else if (isObj(v))
    for (const [k, item] of Object.entries(v)) {
      const sub =
        s.properties?.[k] ??
        (typeof s.additionalProperties === "object" ? s.additionalProperties : undefined);
      out.push(...duplicateSetItems(sub, item, at ? `${at}.${k}` : k));
    }
  return out;
}

function fieldOf(e: ErrorObject): string {
  const path = e.instancePath
    .split("/")
    .slice(1)
    .map((seg) => seg.replace(/~1/g, "/").replace(/~0/g, "~"))
    .reduce((s, seg) => (/^\d+$/.test(seg) ? `${s}[${seg}]` : s ? `${s}.${seg}` : seg), "");
  if (e.keyword === "required") {
    const p = (e.params as { missingProperty: string }).missingProperty;
    return path ? `${path}.${p}` : p;
  }
  return path || "(root)";
}

function messageOf(e: ErrorObject): string {
  switch (e.keyword) {
    case "required":
      return "Required value";
    case "enum":
      return `Unsupported value: supported values: ${(e.params as { allowedValues: unknown[] }).allowedValues.map((x) => JSON.stringify(x)).join(", ")}`;
    default:
      return e.message ?? "invalid";
  }
}

export interface SchemaResult {
  /** The object with nulls as the API server reads them. */
  decoded: unknown;
  /** Unknown fields and type errors: what the API server's decoder refuses (HTTP 400). */
  decodeErrors: Finding[];
  /** Schema errors (HTTP 422). */
  schemaErrors: Finding[];
  /** A value of the wrong type or a missing required field: the API server then skips the CEL rules. */
  structural: boolean;
}

/** Decoding and schema checks of an object of a kind with a schema (isCrdKind or NetworkPolicy). */
export function checkSchema(kind: string, object: unknown): SchemaResult {
  const c = getCompiled().get(kind);
  if (!c) throw new Error(`no schema for ${kind}`);
  const decoded = decodeNulls(c.schema, object, !c.crd);
  // Strict decoding names an unknown field even when its value is null.
  const decodeErrors = unknownFields(c.schema, object, c.crd);
  const schemaErrors: Finding[] = [];
  let structural = false;
  if (!c.validate(decoded))
    for (const e of c.validate.errors ?? []) {
      if (["type", "required", "anyOf"].includes(e.keyword)) structural = true;
      // An int-or-string's anyOf: one message for the field instead of each branch's.
      const intOrStr = c.validate.errors?.some(
        (x) => x.keyword === "anyOf" && x.instancePath === e.instancePath,
      );
      if (intOrStr && e.keyword !== "anyOf") continue;
      const f = {
        field: fieldOf(e),
        message: e.keyword === "anyOf" ? "must be an integer or a string" : messageOf(e),
      };
      // A Go type's wrong JSON type is a decoding error; for a CRD, everything here is a schema error.
      const bucket =
        !c.crd || f.field === "metadata" || f.field.startsWith("metadata.") ? decodeErrors : schemaErrors;
      if (!bucket.some((x) => x.field === f.field && x.message === f.message)) bucket.push(f);
    }
  if (c.crd) schemaErrors.push(...duplicateSetItems(c.schema, decoded));
  return { decoded, decodeErrors, schemaErrors, structural };
}
