// `sluice validate` agrees with the API server (issue 12 §3): a seeded generator makes valid policies of
// every kind Sluice enforces and mutates them field by field (wrong types, nulls, bad names, label keys
// and values, CIDRs, ipBlock beside a selector, ports and endPort, protocols, operators, policyTypes,
// missing and unknown fields, misspelled kinds and apiVersions); each object goes to a real API server
// as kubectl apply would send it (a create, fieldValidation=Strict: kubectl's default since 1.27, here
// with dryRun=All) and through validate's library function. They must agree on accept or reject, and
// on the fields of every reject. A disagreement found here becomes a fixed case in
// test/unit/validate-differential-cases.test.ts. A kind is added by adding a KindGen.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { request } from "node:https";
import { after, before, describe, test } from "node:test";
import { KNOWN_GROUP_VERSIONS } from "../../operator/src/api/admission.ts";
import { validateManifests } from "../../operator/src/cli/validate.ts";
import { type Cluster, kubectlOk, pool, startCluster } from "./operator-helpers.ts";

// ---- The generator -------------------------------------------------------------------------------

const SEED = Number(process.env.SLUICE_DIFF_SEED ?? 12_3);
const PER_KIND = Number(process.env.SLUICE_DIFF_PER_KIND ?? 900);
const NAMESPACES = ["vd-a", "vd-b"];

type Json = Record<string, unknown>;
type Path = Array<string | number>;

interface Generated {
  kind: string;
  what: string;
  object: Json;
}

// mulberry32: small, seeded, the same sequence on every machine.
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Gen {
  readonly next: () => number;
  constructor(next: () => number) {
    this.next = next;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  some<T>(max: number, f: () => T): T[] {
    return Array.from({ length: 1 + this.int(max) }, f);
  }
}

const GOOD_KEYS = ["app", "tier", "example.com/team", "k8s.io/role", "a.b_c-d", "x"];
const GOOD_VALUES = ["web", "db", "v1.2", "a_b-c", "", "x"];
const GOOD_CIDRS: Array<[string, string[]]> = [
  ["10.0.0.0/8", ["10.1.0.0/16", "10.2.3.0/24"]],
  ["192.168.0.0/16", ["192.168.1.0/24"]],
  ["0.0.0.0/0", ["10.0.0.0/8", "172.16.0.0/12"]],
  ["2001:db8::/32", ["2001:db8:1::/48"]],
  ["fd00::/8", ["fd00:1::/32"]],
  ["1.2.3.4/32", []],
];
// Pools of subtly wrong (and a few right) values, by what the field holds.
const POOLS: Record<string, readonly unknown[]> = {
  name: ["A", "a_b", "a.b", "-a", "a-", "a".repeat(254), "a".repeat(253), "ok-1", "", "a..b", 5],
  namespace: ["Bad_ns", "a.b", "a".repeat(64), "-x", "UPPER"],
  labelKey: [
    "a/b/c",
    "-a",
    "a".repeat(64),
    "UPPER/x",
    "/x",
    "x/",
    "example.com/ok",
    "Ok_Key.1",
    "",
    "a b",
    "Example.com/x",
    `${"a".repeat(254)}/x`,
  ],
  labelValue: ["x y", "-a", "a".repeat(64), "a".repeat(63), "", "ok.v_1", "a-", "ä"],
  cidr: [
    "10.0.0.1/8",
    "010.0.0.0/8",
    "10.0.0.0/08",
    "10.0.0.0/33",
    "::ffff:10.0.0.0/104",
    "2001:DB8::/32",
    "2001:db8::1/32",
    "fe80::%eth0/64",
    "10.0.0.0",
    "not",
    "0.0.0.0/0",
    "::/0",
    "1.2.3.4/32",
    "10.0.0.0/8 ",
    "",
    "11.0.0.0/16",
    "10.0.0.0/8",
  ],
  port: [
    0,
    1,
    65535,
    65536,
    -1,
    "http",
    "HTTP",
    "a--b",
    "-ab",
    "",
    "80",
    "abcdefghijklmnop",
    "abcdefghijklmno",
    2 ** 31,
    8080,
    "dns-tcp",
    1.5,
    true,
  ],
  endPort: [0, 1, 80, 65535, 65536, "90", 2 ** 31, 1.5],
  protocol: ["TCP", "UDP", "SCTP", "tcp", "ICMP", "ICMPv6", "ANY", "", 6],
  operator: ["In", "NotIn", "Exists", "DoesNotExist", "in", "Equals", ""],
  policyType: ["Ingress", "Egress", "ingress", "", "Both"],
  action: ["Allow", "Deny", "Pass", "allow", "Reject"],
  tier: ["Admin", "Baseline", "admin", "Namespace"],
  priority: [0, 1000, 1001, -1, "1", 1.5],
  icmp: [0, 8, 255, 256, -1, "8"],
  entity: ["world", "cluster", "host", "remote-node", "all", "World", "internet"],
  any: [null, "", "x y", -1, 0, 1.5, true, [], {}, { zz: 1 }, [null], "TCP"],
};

function selector(g: Gen): Json {
  const s: Json = {};
  if (g.chance(0.5))
    s.matchLabels = Object.fromEntries(g.some(2, () => [g.pick(GOOD_KEYS), g.pick(GOOD_VALUES)]));
  if (g.chance(0.4))
    s.matchExpressions = g.some(2, () => {
      const op = g.pick(["In", "NotIn", "Exists", "DoesNotExist"]);
      return op === "In" || op === "NotIn"
        ? { key: g.pick(GOOD_KEYS), operator: op, values: g.some(2, () => g.pick(GOOD_VALUES)) }
        : { key: g.pick(GOOD_KEYS), operator: op };
    });
  return s;
}

function cidrBlock(g: Gen): Json {
  const [cidr, except] = g.pick(GOOD_CIDRS);
  return except.length > 0 && g.chance(0.5)
    ? { cidr, except: except.slice(0, 1 + g.int(except.length)) }
    : { cidr };
}

function l4Port(g: Gen): Json {
  const p: Json = {};
  if (g.chance(0.7)) p.protocol = g.pick(["TCP", "UDP", "SCTP"]);
  if (g.chance(0.8)) {
    if (g.chance(0.7)) {
      p.port = 1 + g.int(60000);
      if (g.chance(0.3)) p.endPort = (p.port as number) + g.int(100);
    } else p.port = g.pick(["http", "dns", "metrics", "grpc-web"]);
  }
  return p;
}

function meta(g: Gen, namespaced: boolean): Json {
  const m: Json = { name: `p-${g.int(1e6)}` };
  if (namespaced) m.namespace = g.pick(NAMESPACES);
  if (g.chance(0.3)) m.labels = { [g.pick(GOOD_KEYS)]: g.pick(GOOD_VALUES) };
  if (g.chance(0.2)) m.annotations = { "example.com/note": "some text, any text" };
  return m;
}

function networkPolicy(g: Gen): Json {
  const peer = (): Json => {
    const kind = g.int(4);
    if (kind === 0) return { podSelector: selector(g) };
    if (kind === 1) return { namespaceSelector: selector(g) };
    if (kind === 2) return { podSelector: selector(g), namespaceSelector: selector(g) };
    return { ipBlock: cidrBlock(g) };
  };
  const rule = (dir: "from" | "to"): Json => {
    const r: Json = {};
    if (g.chance(0.7)) r[dir] = g.some(3, peer);
    if (g.chance(0.6)) r.ports = g.some(3, () => l4Port(g));
    return r;
  };
  const spec: Json = { podSelector: selector(g) };
  if (g.chance(0.7)) spec.ingress = g.some(2, () => rule("from"));
  if (g.chance(0.5)) spec.egress = g.some(2, () => rule("to"));
  if (g.chance(0.4)) spec.policyTypes = g.pick([["Ingress"], ["Egress"], ["Ingress", "Egress"]]);
  return { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: meta(g, true), spec };
}

// cluster: a ClusterSecurityPolicy rule (Pass in the Admin tier, node peers).
function sluiceRule(g: Gen, pass: boolean, cluster = false): Json {
  const r: Json = {};
  if (g.chance(0.3)) r.name = `rule-${g.int(100)}`;
  if (g.chance(0.5)) r.action = g.pick(pass ? ["Allow", "Deny", "Pass"] : ["Allow", "Deny"]);
  if (g.chance(0.5))
    r.endpoints = g.some(2, () => {
      const e: Json = {};
      if (g.chance(0.7)) e.endpointSelector = selector(g);
      if (g.chance(0.5)) e.namespaceSelector = selector(g);
      return e;
    });
  if (g.chance(0.3)) r.cidrs = g.some(2, () => cidrBlock(g));
  if (g.chance(0.2)) r.entities = [g.pick(["world", "cluster", "host", "remote-node", "all"])];
  if (cluster && g.chance(0.3)) r.nodes = g.some(2, () => selector(g));
  if (g.chance(0.5))
    r.ports = g.some(2, () => {
      if (g.chance(0.2)) {
        const p: Json = { protocol: g.pick(["ICMP", "ICMPv6"]) };
        if (g.chance(0.7)) {
          p.type = g.int(256);
          if (g.chance(0.5)) p.code = g.int(256);
        }
        return p;
      }
      const p = l4Port(g);
      if (g.chance(0.1)) p.protocol = "ANY";
      return p;
    });
  return r;
}

function securityPolicy(g: Gen): Json {
  const spec: Json = { endpointSelector: selector(g) };
  if (g.chance(0.7)) spec.ingress = g.some(2, () => sluiceRule(g, false));
  if (g.chance(0.5)) spec.egress = g.some(2, () => sluiceRule(g, false));
  return { apiVersion: "sluice.dev/v1alpha1", kind: "SecurityPolicy", metadata: meta(g, true), spec };
}

function clusterSecurityPolicy(g: Gen): Json {
  const tier = g.pick(["Admin", "Baseline"]);
  const spec: Json = { tier, priority: g.int(1001), endpointSelector: selector(g) };
  if (g.chance(0.5)) spec.namespaceSelector = selector(g);
  if (g.chance(0.7)) spec.ingress = g.some(2, () => sluiceRule(g, tier === "Admin", true));
  if (g.chance(0.5)) spec.egress = g.some(2, () => sluiceRule(g, tier === "Admin", true));
  // The API server drops a cluster-scoped object's namespace; so must validate.
  const m = meta(g, g.chance(0.1));
  return { apiVersion: "sluice.dev/v1alpha1", kind: "ClusterSecurityPolicy", metadata: m, spec };
}

// SIG Network's policy API (crds/upstream/). One generator for both versions: they differ in the
// subject's and peers' field names only where v1alpha2 renamed ports to protocols.
function upstreamSubject(g: Gen): Json {
  return g.chance(0.5)
    ? { namespaces: selector(g) }
    : { pods: { namespaceSelector: selector(g), podSelector: selector(g) } };
}

function upstreamPeer(g: Gen, egress: boolean, domainNames: boolean): Json {
  const kinds = [
    "namespaces",
    "pods",
    ...(egress ? ["networks", "nodes", ...(domainNames ? ["domainNames"] : [])] : []),
  ];
  switch (g.pick(kinds)) {
    case "namespaces":
      return { namespaces: selector(g) };
    case "pods":
      return { pods: { namespaceSelector: selector(g), podSelector: selector(g) } };
    case "networks":
      return { networks: g.some(2, () => g.pick(GOOD_CIDRS)[0]) };
    case "nodes":
      return { nodes: selector(g) };
    default:
      return { domainNames: [g.pick(["example.com", "*.example.com", "api.example.org."])] };
  }
}

function v1alpha2Protocol(g: Gen): Json {
  if (g.chance(0.15)) return { destinationNamedPort: g.pick(["http", "dns"]) };
  const start = 1 + g.int(60000);
  const destinationPort = g.chance(0.6)
    ? { number: start }
    : { range: { start, end: start + 1 + g.int(100) } };
  return { [g.pick(["tcp", "udp", "sctp"])]: { destinationPort } };
}

function v1alpha1Port(g: Gen): Json {
  if (g.chance(0.15)) return { namedPort: g.pick(["http", "dns"]) };
  const start = 1 + g.int(60000);
  const protocol = g.chance(0.7) ? { protocol: g.pick(["TCP", "UDP", "SCTP"]) } : {};
  return g.chance(0.6)
    ? { portNumber: { ...protocol, port: start } }
    : { portRange: { ...protocol, start, end: start + g.int(100) } };
}

function upstreamRule(
  g: Gen,
  dir: "ingress" | "egress",
  actions: readonly string[],
  ports: "protocols" | "ports",
  domainNames: boolean,
): Json {
  const r: Json = { action: g.pick(actions) };
  if (g.chance(0.3)) r.name = `rule-${g.int(100)}`;
  const peers = g.some(2, () => upstreamPeer(g, dir === "egress", domainNames));
  r[dir === "ingress" ? "from" : "to"] = peers;
  // Named ports only with peers that have them (the CRD's rule, which mutations then break).
  const onlyPods = peers.every((p) => p.namespaces !== undefined || p.pods !== undefined);
  if (g.chance(0.5))
    r[ports] = g
      .some(2, () => (ports === "protocols" ? v1alpha2Protocol(g) : v1alpha1Port(g)))
      .filter((p) => onlyPods || (p.namedPort === undefined && p.destinationNamedPort === undefined));
  if (Array.isArray(r[ports]) && (r[ports] as unknown[]).length === 0) delete r[ports];
  return r;
}

function clusterNetworkPolicy(g: Gen): Json {
  const spec: Json = {
    tier: g.pick(["Admin", "Baseline"]),
    priority: g.int(1001),
    subject: upstreamSubject(g),
  };
  const actions = ["Accept", "Deny", "Pass"];
  if (g.chance(0.7)) spec.ingress = g.some(2, () => upstreamRule(g, "ingress", actions, "protocols", true));
  if (g.chance(0.6)) spec.egress = g.some(2, () => upstreamRule(g, "egress", actions, "protocols", true));
  const m = meta(g, g.chance(0.1));
  return { apiVersion: "policy.networking.k8s.io/v1alpha2", kind: "ClusterNetworkPolicy", metadata: m, spec };
}

function adminNetworkPolicy(g: Gen): Json {
  const spec: Json = { priority: g.int(1001), subject: upstreamSubject(g) };
  const actions = ["Allow", "Deny", "Pass"];
  if (g.chance(0.7)) spec.ingress = g.some(2, () => upstreamRule(g, "ingress", actions, "ports", true));
  if (g.chance(0.6)) spec.egress = g.some(2, () => upstreamRule(g, "egress", actions, "ports", true));
  const m = meta(g, g.chance(0.1));
  return { apiVersion: "policy.networking.k8s.io/v1alpha1", kind: "AdminNetworkPolicy", metadata: m, spec };
}

function baselineAdminNetworkPolicy(g: Gen): Json {
  const spec: Json = { subject: upstreamSubject(g) };
  const actions = ["Allow", "Deny"];
  if (g.chance(0.7)) spec.ingress = g.some(2, () => upstreamRule(g, "ingress", actions, "ports", false));
  if (g.chance(0.6)) spec.egress = g.some(2, () => upstreamRule(g, "egress", actions, "ports", false));
  // The singleton's name, mostly: the API server creates nothing here (dryRun), so each case stands alone.
  const m = { ...meta(g, g.chance(0.1)), name: g.chance(0.8) ? "default" : `p-${g.int(100)}` };
  return {
    apiVersion: "policy.networking.k8s.io/v1alpha1",
    kind: "BaselineAdminNetworkPolicy",
    metadata: m,
    spec,
  };
}

interface KindGen {
  kind: string;
  make(g: Gen): Json;
  /** Misspellings of the kind and its apiVersion that must not pass as "not a policy". */
  wrongKinds: string[];
  wrongApiVersions: string[];
}

const KINDS: KindGen[] = [
  {
    kind: "NetworkPolicy",
    make: networkPolicy,
    wrongKinds: ["NetworkPolcy", "networkpolicy", "NetworkPolicies", "SecurityPolicy"],
    wrongApiVersions: [
      "networking.k8s.io/v2",
      "networking.k8s.io/v1beta1",
      "v1",
      "sluice.dev/v1alpha1",
      "extensions/v1beta1",
    ],
  },
  {
    kind: "SecurityPolicy",
    make: securityPolicy,
    wrongKinds: ["SecurityPolicys", "Securitypolicy", "ClusterSecurityPolicy", "NetworkPolicy"],
    wrongApiVersions: ["sluice.dev/v1", "sluice.io/v1alpha1", "networking.k8s.io/v1"],
  },
  {
    kind: "ClusterSecurityPolicy",
    make: clusterSecurityPolicy,
    wrongKinds: ["ClusterSecurityPolcy", "SecurityPolicy"],
    wrongApiVersions: ["sluice.dev/v1beta1", "v1"],
  },
  {
    kind: "ClusterNetworkPolicy",
    make: clusterNetworkPolicy,
    wrongKinds: ["ClusterNetworkPolcy", "AdminNetworkPolicy", "NetworkPolicy"],
    wrongApiVersions: [
      "policy.networking.k8s.io/v1alpha1",
      "policy.networking.k8s.io/v1",
      "networking.k8s.io/v1",
    ],
  },
  {
    kind: "AdminNetworkPolicy",
    make: adminNetworkPolicy,
    wrongKinds: ["AdminNetworkPolcy", "ClusterNetworkPolicy", "BaselineAdminNetworkPolicy"],
    wrongApiVersions: ["policy.networking.k8s.io/v1alpha2", "policy.networking.k8s.io/v1beta1"],
  },
  {
    kind: "BaselineAdminNetworkPolicy",
    make: baselineAdminNetworkPolicy,
    wrongKinds: ["BaselineAdminNetworkPolcy", "AdminNetworkPolicy"],
    wrongApiVersions: ["policy.networking.k8s.io/v1alpha2", "sluice.dev/v1alpha1"],
  },
];

function paths(v: unknown, at: Path = []): Path[] {
  const out: Path[] = [at];
  if (Array.isArray(v)) for (const [i, x] of v.entries()) out.push(...paths(x, [...at, i]));
  else if (v !== null && typeof v === "object")
    for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...at, k]));
  return out;
}

function getAt(o: unknown, p: Path): unknown {
  return p.reduce<unknown>((x, k) => (x as Record<string | number, unknown>)?.[k], o);
}

function setAt(o: Json, p: Path, v: unknown): void {
  const parent = getAt(o, p.slice(0, -1)) as Record<string | number, unknown>;
  parent[p[p.length - 1]] = v;
}

function deleteAt(o: Json, p: Path): void {
  const parent = getAt(o, p.slice(0, -1));
  const k = p[p.length - 1];
  if (Array.isArray(parent)) parent.splice(k as number, 1);
  else delete (parent as Json)[k as string];
}

// The pool a field's value comes from, by its name (and its list's name for list items).
function poolFor(p: Path): string | undefined {
  const last = p[p.length - 1];
  const key = typeof last === "number" ? p[p.length - 2] : last;
  const parent = p[p.length - 2];
  if (p.length === 2 && p[0] === "metadata" && (key === "name" || key === "namespace")) return key as string;
  if (parent === "matchLabels" || parent === "labels") return "labelValue";
  const byKey: Record<string, string> = {
    cidr: "cidr",
    except: "cidr",
    port: "port",
    endPort: "endPort",
    protocol: "protocol",
    operator: "operator",
    key: "labelKey",
    values: "labelValue",
    policyTypes: "policyType",
    action: "action",
    tier: "tier",
    priority: "priority",
    type: "icmp",
    code: "icmp",
    entities: "entity",
    networks: "cidr",
    number: "port",
    start: "port",
    end: "port",
    destinationNamedPort: "port",
    namedPort: "port",
  };
  return byKey[key as string];
}

// One mutation of a valid object; returns what it did.
function mutate(g: Gen, k: KindGen, o: Json): string {
  const all = paths(o).filter((p) => p.length > 0);
  const pooled = all.filter((p) => poolFor(p) !== undefined);
  const isMap = (p: Path) => {
    const v = getAt(o, p);
    return v !== null && typeof v === "object" && !Array.isArray(v);
  };
  const objects = all.filter(isMap);
  const maps = objects.filter((p) => p[p.length - 1] === "matchLabels" || p[p.length - 1] === "labels");
  switch (g.int(10)) {
    case 0:
    case 1:
    case 2: {
      if (pooled.length === 0) return "none";
      const p = g.pick(pooled);
      const v = g.pick(POOLS[poolFor(p) as string]);
      setAt(o, p, v);
      return `${p.join(".")} = ${JSON.stringify(v)}`;
    }
    case 3: {
      const p = g.pick(all);
      const v = g.pick(POOLS.any);
      setAt(o, p, structuredClone(v));
      return `${p.join(".")} = ${JSON.stringify(v)} (any)`;
    }
    case 4: {
      const p = g.pick(all.filter((x) => x[0] !== "apiVersion" && x[0] !== "kind"));
      deleteAt(o, p);
      return `delete ${p.join(".")}`;
    }
    case 5: {
      const p = g.pick([[], ...objects]);
      const target = getAt(o, p) as Json;
      const name = g.pick(["extra", "ingres", "podselector", "Ports", "status"]);
      target[name] = g.pick([1, "x", {}, null]);
      return `unknown ${[...p, name].join(".")}`;
    }
    case 6: {
      if (maps.length === 0) return "none";
      const p = g.pick(maps);
      const key = g.pick(POOLS.labelKey) as string;
      (getAt(o, p) as Json)[key] = g.pick(GOOD_VALUES);
      return `${p.join(".")} key ${JSON.stringify(key)}`;
    }
    case 7: {
      if (g.chance(0.5)) {
        o.kind = g.pick(k.wrongKinds);
        return `kind = ${o.kind}`;
      }
      o.apiVersion = g.pick(k.wrongApiVersions);
      return `apiVersion = ${o.apiVersion}`;
    }
    case 8: {
      // The structural mistakes NetworkPolicy's validation code is about.
      const peers = objects.filter((p) => ["from", "to", "endpoints"].includes(String(p[p.length - 2])));
      if (peers.length === 0) return "none";
      const p = g.pick(peers);
      const peer = getAt(o, p) as Json;
      const what = g.pick(["ipBlock", "podSelector", "namespaceSelector", "empty"]);
      if (what === "empty") setAt(o, p, {});
      else peer[what] = what === "ipBlock" ? cidrBlock(g) : selector(g);
      return `${p.join(".")} + ${what}`;
    }
    default: {
      const ports = objects.filter((p) => p[p.length - 2] === "ports");
      if (ports.length === 0) return "none";
      const p = g.pick(ports);
      const port = getAt(o, p) as Json;
      port.endPort = g.pick(POOLS.endPort);
      if (g.chance(0.5)) port.port = g.pick(POOLS.port);
      return `${p.join(".")} endPort ${JSON.stringify(port.endPort)} port ${JSON.stringify(port.port)}`;
    }
  }
}

function generateCases(seed: number): Generated[] {
  const g = new Gen(prng(seed));
  const out: Generated[] = [];
  for (const k of KINDS)
    for (let i = 0; i < PER_KIND; i++) {
      const object = k.make(g);
      // A third valid, the rest with one to three mutations.
      const n = i % 3 === 0 ? 0 : 1 + (g.chance(0.8) ? 0 : 1 + g.int(2));
      const did = Array.from({ length: n }, () => mutate(g, k, object));
      out.push({
        kind: k.kind,
        what: `${k.kind} #${i}${did.length ? `: ${did.join("; ")}` : " (valid)"}`,
        object,
      });
    }
  return out;
}

// ---- The test ------------------------------------------------------------------------------------

interface ServerVerdict {
  accepted: boolean;
  /** The fields the API server names (decoding errors: without list indices, as Go's decoder prints them). */
  fields: string[];
  /** False when the API server stopped early (a decoding error, CEL rules skipped): validate may name more. */
  complete: boolean;
  text: string;
}

interface Resource {
  plural: string;
  namespaced: boolean;
}

describe("sluice validate agrees with the API server (differential)", () => {
  let c: Cluster;
  // apiVersion → kind → resource, from the API server's discovery: kubectl's REST mapping.
  const mapping = new Map<string, Map<string, Resource>>();

  before(async () => {
    // Sluice's CRDs and SIG Network's (crds/upstream/), as a cluster with the upstream API has them.
    const crds = new URL("../../crds/", import.meta.url);
    const yaml = (d: URL) => readdirSync(d).filter((f) => f.endsWith(".yaml"));
    c = await startCluster([...yaml(crds), ...yaml(new URL("upstream/", crds)).map((f) => `upstream/${f}`)]);
    for (const ns of NAMESPACES) await kubectlOk(["create", "namespace", ns], c.api.kubeconfigPath);
    for (const gv of Object.keys(KNOWN_GROUP_VERSIONS)) {
      const path = gv.includes("/") ? `/apis/${gv}` : `/api/${gv}`;
      const list = (await call("GET", path)).body as {
        resources: Array<{ name: string; kind: string; namespaced: boolean }>;
      };
      const kinds = new Map<string, Resource>();
      for (const r of list.resources)
        if (!r.name.includes("/")) kinds.set(r.kind, { plural: r.name, namespaced: r.namespaced });
      mapping.set(gv, kinds);
    }
  });
  after(async () => {
    await c?.stop();
  });

  async function call(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ code: number; body: unknown }> {
    const url = new URL(c.api.server + path);
    const opts: Parameters<typeof request>[1] & { headers: Record<string, string> } = {
      method,
      headers: { Accept: "application/json", "Content-Type": "application/json" },
    };
    await c.kc.applyToHTTPSOptions(opts);
    return new Promise((resolve, reject) => {
      const req = request(url, opts, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (d: Buffer) => chunks.push(d));
        res.on("error", reject);
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {}
          resolve({ code: res.statusCode ?? 0, body: parsed });
        });
      });
      req.on("error", reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  // What kubectl apply would get: the REST mapping first, then the create.
  async function serverVerdict(o: Record<string, unknown>): Promise<ServerVerdict> {
    const apiVersion = String(o.apiVersion);
    const kinds = mapping.get(apiVersion);
    const res = kinds?.get(String(o.kind));
    // kubectl: `no matches for kind "K" in version "V"`: either field can be the wrong one.
    if (!res)
      return { accepted: false, fields: ["kind|apiVersion"], complete: false, text: "no REST mapping" };
    const meta = (o.metadata ?? {}) as { namespace?: unknown };
    const ns = typeof meta.namespace === "string" && meta.namespace !== "" ? meta.namespace : "default";
    const base = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
    const path = `${base}${res.namespaced ? `/namespaces/${encodeURIComponent(ns)}` : ""}/${res.plural}`;
    const r = await call(
      "POST",
      `${path}?dryRun=All&fieldValidation=Strict&fieldManager=kubectl-client-side-apply`,
      o,
    );
    const status = (r.body ?? {}) as {
      message?: string;
      details?: { causes?: Array<{ field?: string; message?: string }> };
    };
    const text = `${r.code} ${status.message ?? JSON.stringify(r.body)}`;
    if (r.code >= 200 && r.code < 300) return { accepted: true, fields: [], complete: true, text };
    const msg = status.message ?? "";
    if (r.code === 404 && /namespaces? "[^"]*" not found/.test(msg))
      return { accepted: false, fields: ["metadata.namespace"], complete: false, text };
    if (r.code === 400) {
      const fields = [...msg.matchAll(/(?:unknown|duplicate) field "([^"]+)"/g)].map((m) => m[1]);
      const go = /Go struct field (\w+)\.([\w.]+) of type/.exec(msg);
      // A custom resource's ObjectMeta is decoded on its own: its path starts below metadata.
      if (go)
        fields.push(go[1] === "ObjectMeta" && !go[2].startsWith("metadata.") ? `metadata.${go[2]}` : go[2]);
      if (/namespace of the provided object does not match/.test(msg)) fields.push("metadata.namespace");
      return { accepted: false, fields, complete: false, text };
    }
    const causes = status.details?.causes ?? [];
    // "<nil>": the CEL rules not run because the schema failed, an internal integer re-check.
    const fields = causes.map((x) => x.field ?? "<nil>").filter((f) => f !== "<nil>");
    return { accepted: false, fields: [...new Set(fields)], complete: fields.length === causes.length, text };
  }

  function validateVerdict(g: Generated): string[] {
    const { messages } = validateManifests([{ path: "gen.yaml", line: 1, object: g.object }]);
    return messages.filter((m) => m.source === "apiserver").map((m) => m.field);
  }

  const noIndex = (f: string) => f.replace(/\[\d+\]/g, "");
  // The server's field is named by validate: exactly, or (a decoding error) without indices, or below it
  // (a map's key under the map the decoder names).
  function named(serverField: string, mine: readonly string[]): boolean {
    if (serverField === "kind|apiVersion") return mine.includes("kind") || mine.includes("apiVersion");
    return mine.some(
      (f) => f === serverField || noIndex(f) === serverField || noIndex(f).startsWith(`${serverField}.`),
    );
  }

  test("the kinds validate knows are the API server's (discovery)", () => {
    for (const [gv, kinds] of Object.entries(KNOWN_GROUP_VERSIONS)) {
      const served = [...(mapping.get(gv)?.keys() ?? [])].sort();
      assert.deepEqual([...kinds].filter((k) => k !== "List").sort(), served, gv);
    }
  });

  test("generated policies, valid and subtly invalid: same verdict, same fields", async (t) => {
    const cases = generateCases(SEED);
    const started = performance.now();
    const disagreements: string[] = [];
    let accepted = 0;
    const byKind = new Map<string, number>();
    await pool(cases, 12, async (g) => {
      const server = await serverVerdict(g.object);
      const mine = validateVerdict(g);
      if (server.accepted) accepted++;
      byKind.set(g.kind, (byKind.get(g.kind) ?? 0) + 1);
      const problems: string[] = [];
      if (server.accepted !== (mine.length === 0))
        problems.push(
          server.accepted ? "API server accepts, validate rejects" : "API server rejects, validate accepts",
        );
      else if (!server.accepted) {
        const missed = server.fields.filter((f) => !named(f, mine));
        if (missed.length > 0) problems.push(`validate does not name ${missed.join(", ")}`);
        const extra = server.complete ? mine.filter((f) => !server.fields.includes(f)) : [];
        if (extra.length > 0) problems.push(`validate also names ${extra.join(", ")}`);
      }
      if (problems.length > 0)
        disagreements.push(
          `${g.what}: ${problems.join("; ")}\n    object: ${JSON.stringify(g.object)}\n    server: ${server.text}\n    validate: ${mine.join(", ") || "(accepts)"}`,
        );
    });
    const ms = Math.round(performance.now() - started);
    t.diagnostic(
      `seed ${SEED}: ${cases.length} objects (${[...byKind].map(([k, n]) => `${k} ${n}`).join(", ")}), ${accepted} accepted by the API server, ${ms} ms`,
    );
    assert.ok(
      accepted > cases.length / 5 && accepted < (cases.length * 4) / 5,
      "the generator lost its balance",
    );
    assert.deepEqual(disagreements.slice(0, 40), [], `${disagreements.length} disagreements`);
  });
});
