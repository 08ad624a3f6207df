// Objects the API server must reject (CRD schema and CEL rules) or accept but the operator must mark
// Accepted=False, for test/integration/kubectl-samples.test.ts (against a real API server) and
// test/unit/validate-crd-cases.test.ts (the same objects through `sluice validate`). The CEL cases are
// generated: every x-kubernetes-validations rule of crds/*.yaml, at every place it appears, gets the
// violating fragments VIOLATIONS lists for its rule text, placed into the smallest valid object.
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parse } from "yaml";

const repoRoot = resolve(import.meta.dirname, "../..");

export const NS = "kubectl-cases";

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: unknown };
  [k: string]: unknown;
}

export type Json = Record<string, unknown>;

export interface CelRule {
  crd: string;
  kind: string;
  /** Schema location of the rule, e.g. ["spec", "ingress", "[]", "ports", "[]"]. */
  at: string[];
  rule: string;
  message: string;
  fieldPath?: string;
}

interface Schema {
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
  "x-kubernetes-validations"?: Array<{ rule: string; message: string; fieldPath?: string }>;
}

/** Every x-kubernetes-validations rule of every CRD in crds/ and crds/upstream/, with where it sits. */
export function celRules(): CelRule[] {
  const dir = join(repoRoot, "crds");
  const out: CelRule[] = [];
  const files = [
    ...readdirSync(dir).filter((x) => x.endsWith(".yaml")),
    ...readdirSync(join(dir, "upstream"))
      .filter((x) => x.endsWith(".yaml"))
      .map((x) => `upstream/${x}`),
  ].sort();
  for (const f of files) {
    const crd = parse(readFileSync(join(dir, f), "utf8")) as {
      spec: { names: { kind: string }; versions: Array<{ schema: { openAPIV3Schema: Schema } }> };
    };
    const walk = (s: Schema, at: string[]) => {
      for (const v of s["x-kubernetes-validations"] ?? [])
        out.push({ crd: f, kind: crd.spec.names.kind, at, ...v });
      for (const [k, sub] of Object.entries(s.properties ?? {})) walk(sub, [...at, k]);
      if (s.items) walk(s.items, [...at, "[]"]);
      if (typeof s.additionalProperties === "object") walk(s.additionalProperties, [...at, "{}"]);
    };
    for (const v of crd.spec.versions) walk(v.schema.openAPIV3Schema, []);
  }
  return out;
}

/** What kubectl prints as the field: ["spec","ingress","[]"] + ".action" → "spec.ingress[0].action". */
export function fieldOf(at: readonly string[], fieldPath = ""): string {
  const path = at.reduce((s, seg) => (seg === "[]" ? `${s}[0]` : s ? `${s}.${seg}` : seg), "") + fieldPath;
  return path.replace(/^\./, "");
}

export function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function merge(base: unknown, patch: unknown): unknown {
  if (!isObject(base) || !isObject(patch)) return structuredClone(patch);
  const out: Json = { ...base };
  for (const [k, v] of Object.entries(patch)) out[k] = merge(base[k], v);
  return out;
}

/** base with fragment merged in at schema location `at` (one-element arrays on the way). */
function place(base: unknown, at: readonly string[], fragment: unknown): unknown {
  if (at.length === 0) return merge(base, fragment);
  const [seg, ...rest] = at;
  if (seg === "{}") throw new Error("rules under additionalProperties need a case of their own");
  const obj: Json = isObject(base) ? { ...base } : {};
  if (rest[0] === "[]") {
    const first = Array.isArray(obj[seg]) ? (obj[seg] as unknown[])[0] : undefined;
    obj[seg] = [place(first ?? {}, rest.slice(1), fragment)];
  } else obj[seg] = place(obj[seg], rest, fragment);
  return obj;
}

// The smallest valid object of each kind; the cases below break exactly one rule of it.
function baseObject(kind: string, name: string): K8sObject {
  const apiVersion = "sluice.dev/v1alpha1";
  switch (kind) {
    case "SecurityPolicy":
      return { apiVersion, kind, metadata: { name, namespace: NS }, spec: { endpointSelector: {} } };
    case "ClusterSecurityPolicy":
      return {
        apiVersion,
        kind,
        metadata: { name },
        spec: { tier: "Admin", priority: 1, endpointSelector: {} },
      };
    case "SecurityIdentity":
      return {
        apiVersion,
        kind,
        metadata: { name },
        spec: { labels: { "io.kubernetes.pod.namespace": NS } },
      };
    // SIG Network's kinds: with one valid rule each way, so a fragment placed in a rule (a port
    // range, a CIDR) lands in an otherwise valid one; the egress peer is a networks peer for that.
    case "ClusterNetworkPolicy":
      return {
        apiVersion: "policy.networking.k8s.io/v1alpha2",
        kind,
        metadata: { name },
        spec: {
          tier: "Admin",
          priority: 1,
          subject: { namespaces: {} },
          ingress: [{ action: "Accept", from: [{ namespaces: {} }] }],
          egress: [{ action: "Accept", to: [{ networks: ["10.0.0.0/8"] }] }],
        },
      };
    case "AdminNetworkPolicy":
    case "BaselineAdminNetworkPolicy":
      return {
        apiVersion: "policy.networking.k8s.io/v1alpha1",
        kind,
        // The BaselineAdminNetworkPolicy is a singleton named default (each case is rejected: none is stored).
        metadata: { name: kind === "AdminNetworkPolicy" ? name : "default" },
        spec: {
          ...(kind === "AdminNetworkPolicy" ? { priority: 1 } : {}),
          subject: { namespaces: {} },
          ingress: [{ action: "Allow", from: [{ namespaces: {} }] }],
          egress: [{ action: "Allow", to: [{ networks: ["10.0.0.0/8"] }] }],
        },
      };
    default:
      throw new Error(`no base object for ${kind}: add one to test a rule of its CRD`);
  }
}

interface Violation {
  /** Merged into the object at the rule's location. */
  fragment: unknown;
  /** Applied first (same name), for transition rules that compare with the stored object. */
  before?: unknown;
}

// One or more violations per CEL rule (by rule text). A rule added to crds/ without an entry here
// fails the coverage test; a known rule at a new place is tested there automatically.
export const VIOLATIONS: Record<string, Violation[]> = {
  "(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)": [
    { fragment: { key: "app", operator: "In" } },
    { fragment: { key: "app", operator: "Exists", values: ["x"] } },
  ],
  "isCIDR(self.cidr)": [{ fragment: { cidr: "10.0.0.0/33" } }, { fragment: { cidr: "not-a-cidr" } }],
  "!has(self.except) || self.except.all(e, isCIDR(e) && isCIDR(self.cidr) && cidr(self.cidr).containsCIDR(cidr(e)))":
    [{ fragment: { cidr: "10.0.0.0/16", except: ["10.1.0.0/24"] } }],
  "!has(self.endPort) || (has(self.port) && type(self.port) == int && self.endPort >= self.port)": [
    { fragment: { protocol: "TCP", port: 90, endPort: 80 } },
    { fragment: { protocol: "TCP", port: "http", endPort: 80 } },
  ],
  "!has(self.port) || type(self.port) != int || (self.port >= 1 && self.port <= 65535)": [
    { fragment: { protocol: "TCP", port: 0 } },
    { fragment: { protocol: "UDP", port: 65536 } },
  ],
  "(!has(self.type) && !has(self.code)) || (has(self.protocol) && self.protocol in ['ICMP', 'ICMPv6'])": [
    { fragment: { protocol: "TCP", type: 8 } },
  ],
  "!has(self.code) || has(self.type)": [{ fragment: { protocol: "ICMP", code: 0 } }],
  "!has(self.port) || !has(self.protocol) || !(self.protocol in ['ICMP', 'ICMPv6'])": [
    { fragment: { protocol: "ICMPv6", port: 80 } },
  ],
  "!has(self.ingress) || self.ingress.all(r, !has(r.action) || r.action != 'Pass')": [
    { fragment: { ingress: [{ action: "Allow" }, { action: "Pass" }] } },
  ],
  "!has(self.egress) || self.egress.all(r, !has(r.action) || r.action != 'Pass')": [
    { fragment: { egress: [{ action: "Pass" }] } },
  ],
  "self.tier == 'Admin' || ((!has(self.ingress) || self.ingress.all(r, !has(r.action) || r.action != 'Pass')) && (!has(self.egress) || self.egress.all(r, !has(r.action) || r.action != 'Pass')))":
    [
      { fragment: { tier: "Baseline", ingress: [{ action: "Pass" }] } },
      { fragment: { tier: "Baseline", egress: [{ action: "Deny" }, { action: "Pass" }] } },
    ],
  "self == oldSelf": [
    {
      before: { labels: { "io.kubernetes.pod.namespace": NS, app: "a" } },
      fragment: { labels: { app: "b" } },
    },
  ],
  // SIG Network's policy API (crds/upstream/).
  "isCIDR(self)": [{ fragment: "10.0.0.0/33" }, { fragment: "not-a-cidr" }],
  "self.start < self.end": [{ fragment: { start: 90, end: 80 } }, { fragment: { start: 80, end: 80 } }],
  "self.metadata.name == 'default'": [{ fragment: { metadata: { name: "mine" } } }],
  "!(self.to.exists(peer, has(peer.networks) || has(peer.nodes) || has(peer.domainNames)) && has(self.protocols) && self.protocols.exists(protocol, has(protocol.destinationNamedPort)))":
    [
      {
        fragment: {
          action: "Accept",
          to: [{ networks: ["10.0.0.0/8"] }],
          protocols: [{ destinationNamedPort: "http" }],
        },
      },
    ],
  "!(self.to.exists(peer, has(peer.networks) || has(peer.nodes) || has(peer.domainNames)) && has(self.ports) && self.ports.exists(port, has(port.namedPort)))":
    [{ fragment: { action: "Allow", to: [{ nodes: {} }], ports: [{ namedPort: "http" }] } }],
  "!(self.to.exists(peer, has(peer.networks) || has(peer.nodes)) && has(self.ports) && self.ports.exists(port, has(port.namedPort)))":
    [{ fragment: { action: "Deny", to: [{ networks: ["10.0.0.0/8"] }], ports: [{ namedPort: "http" }] } }],
  "self.metadata.name.matches('^[1-9][0-9]{2,9}$') && int(self.metadata.name) >= 256 && int(self.metadata.name) < 16777216":
    [
      { fragment: { metadata: { name: "255" } } },
      { fragment: { metadata: { name: "16777216" } } },
      { fragment: { metadata: { name: "0400" } } },
    ],
};

export interface RejectCase {
  what: string;
  object: K8sObject;
  before?: K8sObject;
  /** stderr must contain each of these (the field and the reason). */
  expect: string[];
  rule?: CelRule;
}

let serial = 0;
function caseName(kind: string): string {
  serial++;
  // SecurityIdentity names are their numbers.
  return kind === "SecurityIdentity" ? String(100_000 + serial) : `case-${serial}`;
}

function celCases(rules: readonly CelRule[]): RejectCase[] {
  const out: RejectCase[] = [];
  for (const r of rules)
    for (const v of VIOLATIONS[r.rule] ?? []) {
      const base = baseObject(r.kind, caseName(r.kind));
      const object = place(base, r.at, v.fragment) as K8sObject;
      out.push({
        what: `${r.kind} ${fieldOf(r.at) || "(object)"}: ${r.message}`,
        object,
        before: v.before === undefined ? undefined : (place(base, r.at, v.before) as K8sObject),
        // Object-level rules have no field ("<nil>" in the message): the object's name is the field.
        expect: [
          `The ${r.kind} "${object.metadata.name}" is invalid`,
          fieldOf(r.at, r.fieldPath),
          r.message,
        ].filter((s) => s !== ""),
        rule: r,
      });
    }
  return out;
}

function sp(spec: Json): K8sObject {
  const name = caseName("SecurityPolicy");
  return merge(baseObject("SecurityPolicy", name), { spec }) as K8sObject;
}
function csp(spec: Json): K8sObject {
  const name = caseName("ClusterSecurityPolicy");
  return merge(baseObject("ClusterSecurityPolicy", name), { spec }) as K8sObject;
}

// OpenAPI schema errors (not CEL): the API server's own wording, with the field.
export const SCHEMA_CASES: RejectCase[] = [
  {
    what: "wrong type: priority is a string",
    object: csp({ priority: "high" }),
    expect: ["spec.priority", 'Invalid value: "string"', "must be of type integer"],
  },
  {
    what: "wrong type: ingress is a string",
    object: sp({ ingress: "all" }),
    expect: ["spec.ingress", "must be of type array"],
  },
  {
    what: "unknown enum value: protocol",
    object: sp({ ingress: [{ ports: [{ protocol: "TCPX", port: 80 }] }] }),
    expect: ["spec.ingress[0].ports[0].protocol", 'Unsupported value: "TCPX"', "supported values"],
  },
  {
    what: "unknown enum value: action",
    object: sp({ egress: [{ action: "Reject" }] }),
    expect: ["spec.egress[0].action", 'Unsupported value: "Reject"'],
  },
  {
    what: "unknown enum value: tier",
    object: csp({ tier: "Namespace" }),
    expect: ["spec.tier", 'Unsupported value: "Namespace"'],
  },
  {
    what: "unknown enum value: entity",
    object: sp({ ingress: [{ entities: ["internet"] }] }),
    expect: ["spec.ingress[0].entities[0]", 'Unsupported value: "internet"'],
  },
  {
    what: "out-of-range port: endPort above 65535",
    object: sp({ ingress: [{ ports: [{ protocol: "TCP", port: 80, endPort: 70000 }] }] }),
    expect: ["spec.ingress[0].ports[0].endPort", "should be less than or equal to 65535"],
  },
  {
    what: "out-of-range ICMP type",
    object: sp({ ingress: [{ ports: [{ protocol: "ICMP", type: 256 }] }] }),
    expect: ["spec.ingress[0].ports[0].type", "should be less than or equal to 255"],
  },
  {
    what: "missing required field: tier",
    object: (() => {
      const o = csp({});
      delete (o.spec as Json).tier;
      return o;
    })(),
    expect: ["spec.tier", "Required value"],
  },
  {
    what: "missing required field: endpointSelector",
    object: (() => {
      const o = sp({ ingress: [] });
      delete (o.spec as Json).endpointSelector;
      return o;
    })(),
    expect: ["spec.endpointSelector", "Required value"],
  },
  {
    what: "missing required field: cidr",
    object: sp({ egress: [{ cidrs: [{ except: ["10.0.0.0/8"] }] }] }),
    expect: ["spec.egress[0].cidrs[0].cidr", "Required value"],
  },
  {
    what: "too many items: entities",
    object: sp({ ingress: [{ entities: ["world", "cluster", "host", "remote-node", "all", "world"] }] }),
    expect: ["spec.ingress[0].entities", "Too many: 6: must have at most 5 items"],
  },
  {
    what: "too many items: rules",
    object: sp({ ingress: Array.from({ length: 101 }, () => ({ action: "Allow" })) }),
    expect: ["spec.ingress", "Too many: 101: must have at most 100 items"],
  },
  {
    what: "too long: a named port of 16 characters",
    object: sp({ ingress: [{ ports: [{ port: "abcdefghijklmnop" }] }] }),
    expect: ["spec.ingress[0].ports[0].port", "Too long", "15"],
  },
  {
    what: "NetworkPolicy: In without values (built-in validation, which validate.ts mirrors)",
    object: {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: caseName("NetworkPolicy"), namespace: NS },
      spec: { podSelector: { matchExpressions: [{ key: "app", operator: "In" }] } },
    },
    expect: ["spec.podSelector.matchExpressions[0]", "must be specified when `operator` is 'In' or 'NotIn'"],
  },
  {
    what: "unknown field (kubectl's strict field validation)",
    object: sp({ ingres: [] }),
    expect: ['unknown field "spec.ingres"'],
  },
];

// Accepted by the schema, wrong in meaning: the operator's validatePolicy (policy/validate.ts) finds
// these and the status controller reports Accepted=False, reason Invalid, message "field: message".
export interface SemanticCase {
  what: string;
  object: K8sObject;
  field: string;
  message: string;
}

export const SEMANTIC_CASES: SemanticCase[] = [
  {
    what: "egress to a named port no pod has",
    object: sp({
      endpointSelector: { matchLabels: { app: "frontend" } },
      egress: [{ ports: [{ port: "no-such-port", protocol: "TCP" }] }],
    }),
    field: "spec.egress[0].ports[0].port",
    message: 'no pod has a port named "no-such-port"',
  },
  {
    what: "a named port that is not an IANA service name",
    object: sp({
      endpointSelector: { matchLabels: { app: "frontend" } },
      ingress: [{ ports: [{ port: "Http_Port", protocol: "TCP" }] }],
    }),
    field: "spec.ingress[0].ports[0].port",
    message: "a named port must be an IANA service name",
  },
  {
    what: "a selector that can never match",
    object: sp({
      endpointSelector: { matchLabels: { app: "db" } },
      ingress: [
        {
          endpoints: [
            {
              endpointSelector: {
                matchExpressions: [
                  { key: "app", operator: "Exists" },
                  { key: "app", operator: "DoesNotExist" },
                ],
              },
            },
          ],
        },
      ],
    }),
    field: "spec.ingress[0]",
    message: "selector requires app to exist and not to exist: the rule matches nothing",
  },
  {
    what: "a cidr its own except covers entirely",
    object: sp({ egress: [{ cidrs: [{ cidr: "10.0.0.0/8", except: ["10.0.0.0/8"] }] }] }),
    field: "spec.egress[0]",
    message: "every cidr of this rule is covered by its own except: the rule matches nothing",
  },
  {
    what: "a rule shadowed by a match-all rule before it",
    object: csp({
      tier: "Baseline",
      ingress: [{ action: "Deny" }, { action: "Allow", ports: [{ port: 80, protocol: "TCP" }] }],
    }),
    field: "spec.ingress[1]",
    message: "shadowed by spec.ingress[0], which matches every peer and port",
  },
];

export const RULES = celRules();
export const CEL_CASES = celCases(RULES);
