// `sluice explain` on hand-written scenarios: the chain it prints (tiers in order, Pass, Deny over
// Allow, CIDR except, named ports, default deny naming the isolating policies, Baseline, allow-
// localhost, a full endpoint failing closed) and the command line around it (ends, ports, text, -o).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { explainRequest, formatExplanation, parseExplainPort } from "../../operator/src/cli/explain.ts";
import { type Explanation, Explainer, type SideExplanation } from "../../operator/src/policy/explain.ts";
import { formatRule } from "../../operator/src/policy/rule-names.ts";
import { inputsFromObjects } from "../../operator/src/policy/index.ts";
import { Protocol, ReservedRuleId } from "../../operator/src/policy/mapstate.ts";
import { node, ns, pod } from "./policy-fixtures.ts";

const base = [
  ns("a", { team: "x" }),
  ns("b", { team: "y" }),
  node("n1", "172.18.0.1"),
  node("n2", "172.18.0.2"),
  pod("a", "web", { app: "web" }, ["10.0.1.1", "fd00::1"], "n1", [{ name: "http", containerPort: 80 }]),
  pod("a", "db", { app: "db" }, "10.0.1.2", "n2", [{ name: "http", containerPort: 8080 }]),
  pod("b", "client", { app: "client" }, ["10.0.2.1", "fd00::2"], "n1"),
];
const WEB = "10.0.1.1";
const DB = "10.0.1.2";
const CLIENT = "10.0.2.1";

const np = (namespace: string, name: string, spec: object) => ({
  apiVersion: "networking.k8s.io/v1",
  kind: "NetworkPolicy",
  metadata: { namespace, name },
  spec,
});
const sp = (namespace: string, name: string, spec: object) => ({
  apiVersion: "sluice.dev/v1alpha1",
  kind: "SecurityPolicy",
  metadata: { namespace, name },
  spec,
});
const csp = (name: string, spec: object) => ({
  apiVersion: "sluice.dev/v1alpha1",
  kind: "ClusterSecurityPolicy",
  metadata: { name },
  spec,
});

function explain(
  objects: unknown[],
  src: string,
  dst: string,
  port: number,
  protocol: number = Protocol.TCP,
  options: ConstructorParameters<typeof Explainer>[1] = {},
): Explanation {
  const x = new Explainer(inputsFromObjects([...base, ...objects]), options).explain(
    src,
    dst,
    protocol,
    port,
  );
  // Every side's chain decides what its compiled map entries decide (unless a side says why not).
  for (const s of [x.egress, x.ingress])
    if (s && !s.problem) assert.ok(s.agrees, `${s.direction}: ${JSON.stringify(s)}`);
  return x;
}

// The chain as "tier policy rule outcome [*]" lines: what the tests compare.
function chain(s: SideExplanation | undefined): string[] {
  assert.ok(s, "the side is explained");
  return s.steps.map(
    (st) =>
      `${st.tier} ${st.policy}${st.rule ? ` ${st.rule.direction}[${st.rule.index}]` : ""} ${st.outcome}${st.decides ? " *" : ""}`,
  );
}

describe("the chain", () => {
  test("Admin tier: by priority, the first matching rule decides; the rest is not reached", () => {
    const objects = [
      csp("late-allow", {
        tier: "Admin",
        priority: 20,
        ingress: [{ action: "Allow", endpoints: [{ namespaceSelector: {} }] }],
      }),
      csp("early-deny", {
        tier: "Admin",
        priority: 10,
        endpointSelector: { matchLabels: { app: "db" } },
        ingress: [
          { action: "Deny", endpoints: [{ namespaceSelector: { matchLabels: { team: "nobody" } } }] },
          {
            name: "no-web",
            action: "Deny",
            endpoints: [{ endpointSelector: { matchLabels: { app: "web" } } }],
          },
        ],
      }),
      np("a", "allow-all", { podSelector: {}, ingress: [{}] }),
    ];
    const x = explain(objects, WEB, DB, 80);
    assert.equal(x.verdict, "deny");
    assert.deepEqual(chain(x.ingress), [
      "admin ClusterSecurityPolicy/early-deny ingress[1] deny *",
      "admin ClusterSecurityPolicy/late-allow not-reached",
      "namespace NetworkPolicy/a/allow-all not-reached",
    ]);
    const d = x.ingress?.decision;
    assert.equal(d?.by, "rule");
    assert.equal(d?.rule && formatRule(d.rule), 'ClusterSecurityPolicy/early-deny ingress[1] "no-web"');
    assert.notEqual(d?.ruleId, ReservedRuleId.DEFAULT);
    // From another namespace the Deny does not match: the next Admin policy allows.
    const y = explain(objects, CLIENT, DB, 80);
    assert.deepEqual(chain(y.ingress), [
      "admin ClusterSecurityPolicy/early-deny no-match",
      "admin ClusterSecurityPolicy/late-allow ingress[0] allow *",
      "namespace NetworkPolicy/a/allow-all not-reached",
    ]);
  });

  test("Pass: skips the rest of the Admin tier; the namespace policies decide", () => {
    const objects = [
      csp("hand-off", { tier: "Admin", priority: 1, ingress: [{ action: "Pass", endpoints: [{}] }] }),
      csp("deny-all", { tier: "Admin", priority: 2, ingress: [{ action: "Deny" }] }),
      np("a", "db-from-web", {
        podSelector: { matchLabels: { app: "db" } },
        ingress: [{ from: [{ podSelector: { matchLabels: { app: "web" } } }] }],
      }),
    ];
    const x = explain(objects, WEB, DB, 80);
    assert.equal(x.verdict, "allow");
    assert.deepEqual(chain(x.ingress), [
      "admin ClusterSecurityPolicy/hand-off ingress[0] pass",
      "admin ClusterSecurityPolicy/deny-all not-reached",
      "namespace NetworkPolicy/a/db-from-web ingress[0] allow *",
    ]);
    // From b the Pass still applies (any endpoint), the namespace policy isolates: default deny.
    const y = explain(objects, CLIENT, DB, 80);
    assert.deepEqual(chain(y.ingress), [
      "admin ClusterSecurityPolicy/hand-off ingress[0] pass",
      "admin ClusterSecurityPolicy/deny-all not-reached",
      "namespace NetworkPolicy/a/db-from-web isolates",
    ]);
    assert.equal(y.ingress?.decision.by, "default");
    assert.deepEqual(y.ingress?.isolatedBy, ["NetworkPolicy/a/db-from-web"]);
  });

  test("Deny beats Allow among namespace policies; the Allow shows as overridden", () => {
    const objects = [
      np("a", "allow-web", { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] }),
      sp("a", "block", {
        endpointSelector: { matchLabels: { app: "db" } },
        ingress: [
          { action: "Allow", endpoints: [{ endpointSelector: {} }], ports: [{ port: 80, protocol: "TCP" }] },
          {
            name: "no-80",
            action: "Deny",
            endpoints: [{ endpointSelector: {} }],
            ports: [{ port: 80, protocol: "TCP" }],
          },
        ],
      }),
    ];
    const x = explain(objects, WEB, DB, 80);
    assert.equal(x.verdict, "deny");
    assert.deepEqual(chain(x.ingress), [
      "namespace NetworkPolicy/a/allow-web ingress[0] overridden",
      "namespace SecurityPolicy/a/block ingress[1] deny *",
    ]);
    const text = formatExplanation(x, "80/TCP");
    assert.match(text, /^a\/web \(10\.0\.1\.1\) -> a\/db \(10\.0\.1\.2\) 80\/TCP: DENIED$/m);
    assert.match(
      text,
      /dropped at the destination's ingress by SecurityPolicy\/a\/block ingress\[1\] "no-80" \(Deny\)/,
    );
    // Another port: the Deny does not match, the first Allow decides.
    const y = explain(objects, WEB, DB, 81);
    assert.deepEqual(chain(y.ingress), [
      "namespace NetworkPolicy/a/allow-web ingress[0] allow *",
      "namespace SecurityPolicy/a/block isolates",
    ]);
  });

  test("CIDR except: an excepted address matches nothing; the peer shows the policy CIDRs it is in", () => {
    const objects = [
      np("a", "egress-net", {
        podSelector: { matchLabels: { app: "web" } },
        policyTypes: ["Egress"],
        egress: [{ to: [{ ipBlock: { cidr: "192.168.0.0/16", except: ["192.168.1.0/24"] } }] }],
      }),
    ];
    const inside = explain(objects, WEB, "192.168.2.7", 443);
    assert.equal(inside.verdict, "allow");
    assert.deepEqual(chain(inside.egress), ["namespace NetworkPolicy/a/egress-net egress[0] allow *"]);
    assert.equal(inside.egress?.peer.kind, "world");
    assert.deepEqual(inside.egress?.peer.cidrs, ["192.168.0.0/16"]);
    assert.equal(inside.ingress, undefined);
    assert.match(inside.notes.join(), /not a pod/);
    const excepted = explain(objects, WEB, "192.168.1.7", 443);
    assert.equal(excepted.verdict, "deny");
    assert.deepEqual(chain(excepted.egress), ["namespace NetworkPolicy/a/egress-net isolates"]);
    assert.deepEqual(excepted.egress?.peer.cidrs, ["192.168.0.0/16", "192.168.1.0/24"]);
    assert.equal(excepted.egress?.decision.ruleId, ReservedRuleId.DEFAULT);
  });

  test("named ports: ingress against the pod itself, egress against the peer", () => {
    const objects = [
      np("a", "http-in", {
        podSelector: { matchLabels: { app: "db" } },
        ingress: [{ ports: [{ port: "http" }] }],
      }),
      np("b", "http-out", {
        podSelector: {},
        policyTypes: ["Egress"],
        egress: [{ to: [{ namespaceSelector: {} }], ports: [{ port: "http" }] }],
      }),
    ];
    // db's http is 8080: allowed there, not on web's http number (80).
    assert.deepEqual(chain(explain(objects, WEB, DB, 8080).ingress), [
      "namespace NetworkPolicy/a/http-in ingress[0] allow *",
    ]);
    assert.deepEqual(chain(explain(objects, WEB, DB, 80).ingress), [
      "namespace NetworkPolicy/a/http-in isolates",
    ]);
    // client's egress resolves http on each destination: 80 to web, 8080 to db.
    assert.equal(explain(objects, CLIENT, WEB, 80).egress?.decision.verdict, "allow");
    assert.equal(explain(objects, CLIENT, WEB, 8080).egress?.decision.verdict, "deny");
    assert.equal(explain(objects, CLIENT, DB, 8080).egress?.decision.verdict, "allow");
  });

  test("default deny names every policy that isolates the pod", () => {
    const objects = [
      np("a", "deny-in", { podSelector: {}, policyTypes: ["Ingress"] }),
      sp("a", "db-egress-only", { endpointSelector: {}, egress: [{ action: "Allow" }] }),
      sp("a", "db-in", { endpointSelector: { matchLabels: { app: "db" } }, ingress: [] }),
    ];
    const x = explain(objects, CLIENT, DB, 5432);
    assert.equal(x.verdict, "deny");
    assert.equal(x.ingress?.decision.by, "default");
    assert.deepEqual(x.ingress?.isolatedBy, ["NetworkPolicy/a/deny-in", "SecurityPolicy/a/db-in"]);
    assert.match(
      formatExplanation(x, "5432/TCP"),
      /by default deny \(isolated by NetworkPolicy\/a\/deny-in, SecurityPolicy\/a\/db-in\)/,
    );
    // The egress-only policy is not part of the ingress chain.
    assert.ok(!chain(x.ingress).some((l) => l.includes("db-egress-only")));
  });

  test("Baseline: decides where no namespace policy does; a Baseline Pass hands over to the default", () => {
    const objects = [
      csp("base-deny", {
        tier: "Baseline",
        priority: 5,
        ingress: [{ action: "Deny", endpoints: [{ namespaceSelector: { matchLabels: { team: "y" } } }] }],
      }),
      csp("base-open", { tier: "Baseline", priority: 9, ingress: [{ action: "Allow" }] }),
    ];
    const x = explain(objects, CLIENT, DB, 80);
    assert.deepEqual(chain(x.ingress), [
      "baseline ClusterSecurityPolicy/base-deny ingress[0] deny *",
      "baseline ClusterSecurityPolicy/base-open not-reached",
    ]);
    // A namespace Allow comes first: the Baseline is not reached.
    const withNp = [...objects, np("a", "open", { podSelector: {}, ingress: [{}] })];
    assert.deepEqual(chain(explain(withNp, CLIENT, DB, 80).ingress), [
      "namespace NetworkPolicy/a/open ingress[0] allow *",
      "baseline ClusterSecurityPolicy/base-deny not-reached",
      "baseline ClusterSecurityPolicy/base-open not-reached",
    ]);
    // A Baseline Pass (SIG Network's ClusterNetworkPolicy) leaves it to the default, which allows.
    const pass = [
      {
        apiVersion: "policy.networking.k8s.io/v1alpha2",
        kind: "ClusterNetworkPolicy",
        metadata: { name: "base-pass" },
        spec: {
          tier: "Baseline",
          priority: 1,
          subject: { namespaces: {} },
          ingress: [{ name: "hand-over", action: "Pass", from: [{ namespaces: {} }] }],
        },
      },
      ...objects,
    ];
    const p = explain(pass, CLIENT, DB, 80);
    assert.equal(p.verdict, "allow");
    assert.deepEqual(chain(p.ingress), [
      "baseline ClusterNetworkPolicy/base-pass ingress[0] pass",
      "baseline ClusterSecurityPolicy/base-deny not-reached",
      "baseline ClusterSecurityPolicy/base-open not-reached",
    ]);
    assert.equal(p.ingress?.decision.by, "default");
    assert.equal(p.ingress?.decision.passedBy?.ruleName, "hand-over");
    assert.match(
      formatExplanation(p, "80/TCP"),
      /default allow \(after the Baseline Pass of ClusterNetworkPolicy\/base-pass ingress\[0\] "hand-over"\)/,
    );
  });

  test("allow-localhost: the node reaches its isolated pods, unless the agents say policy", () => {
    const objects = [np("a", "deny-in", { podSelector: {}, policyTypes: ["Ingress"] })];
    const always = explain(objects, "172.18.0.2", DB, 8080);
    assert.equal(always.verdict, "allow");
    assert.equal(always.ingress?.peer.kind, "host");
    assert.equal(always.ingress?.decision.by, "allow-localhost");
    assert.equal(always.ingress?.decision.ruleId, ReservedRuleId.LOCALHOST);
    const policy = explain(objects, "172.18.0.2", DB, 8080, Protocol.TCP, { allowLocalhost: "policy" });
    assert.equal(policy.verdict, "deny");
    assert.equal(policy.ingress?.decision.by, "default");
    // Another node is a remote node either way.
    const remote = explain(objects, "172.18.0.1", DB, 8080);
    assert.equal(remote.ingress?.peer.kind, "remote-node");
    assert.equal(remote.ingress?.peer.node, "n1");
    assert.equal(remote.verdict, "deny");
    // An Audit deny of the node's own address only, on a pod nothing else isolates: enforced, allow-
    // localhost would keep the node in, so the Audit policy changes nothing and reports nothing (the
    // merged map then holds no ingress entry at all: the condition is the compiler's, with it enforced).
    const auditNode = [
      node("n3", "172.18.0.3", { role: "edge" }),
      pod("a", "edge-db", { app: "db" }, "10.0.1.9", "n3"),
      csp("no-edge", {
        tier: "Baseline",
        enforcement: "Audit",
        endpointSelector: {},
        ingress: [{ action: "Deny", nodes: [{ matchLabels: { role: "edge" } }] }],
      }),
    ];
    const own = explain(auditNode, "172.18.0.3", "10.0.1.9", 8080);
    assert.equal(own.verdict, "allow");
    assert.equal(own.ingress?.peer.kind, "host");
    assert.equal(own.ingress?.audit, undefined);
    assert.equal(own.ingress?.datapath.audit, undefined);
    assert.equal(own.audit, undefined);
    // From there to another node's pod allow-localhost does not apply: the Audit deny would drop it.
    assert.equal(explain(auditNode, "172.18.0.3", DB, 8080).ingress?.audit?.verdict, "deny");
  });

  test("an endpoint over its map capacity: the datapath fails closed and the side says so", () => {
    const objects = [
      np("a", "open", { podSelector: {}, ingress: [{ ports: [{ port: 80 }, { port: 81 }, { port: 82 }] }] }),
    ];
    const x = explain(objects, WEB, DB, 80, Protocol.TCP, { capacity: 1 });
    assert.equal(x.verdict, "deny");
    assert.equal(x.ingress?.decision.verdict, "allow", "what the policies say");
    assert.equal(x.ingress?.datapath.verdict, "deny", "what the full map does");
    assert.equal(x.ingress?.agrees, false);
    assert.match(x.ingress?.problem ?? "", /needs \d+ policy entries, more than/);
    assert.match(formatExplanation(x, "80/TCP"), /WARNING: endpoint a\/db needs \d+ policy entries/);
  });

  test("ICMP: type and code as the map keys hold them", () => {
    const objects = [
      sp("a", "ping", {
        endpointSelector: {},
        ingress: [{ name: "echo", action: "Allow", ports: [{ protocol: "ICMP", type: 8 }] }],
      }),
    ];
    assert.equal(explain(objects, CLIENT, DB, 8 << 8, Protocol.ICMP).verdict, "allow");
    assert.equal(
      explain(objects, CLIENT, DB, (8 << 8) | 3, Protocol.ICMP).ingress?.decision.rule?.ruleName,
      "echo",
    );
    assert.equal(explain(objects, CLIENT, DB, 0, Protocol.ICMP).verdict, "deny");
  });

  test("audit mode: an Audit deny shows [audit] in the chain and an audit: line, and decides nothing", () => {
    const objects = [
      np("a", "allow-all", { podSelector: {}, ingress: [{}] }),
      sp("a", "no-client", {
        enforcement: "Audit",
        endpointSelector: { matchLabels: { app: "db" } },
        ingress: [
          {
            name: "no-b",
            action: "Deny",
            endpoints: [{ namespaceSelector: { matchLabels: { team: "y" } } }],
          },
        ],
      }),
    ];
    const x = explain(objects, CLIENT, DB, 80);
    assert.equal(x.verdict, "allow");
    assert.deepEqual(x.audit, { verdict: "deny" });
    assert.deepEqual(chain(x.ingress), [
      "namespace NetworkPolicy/a/allow-all ingress[0] allow *",
      "namespace SecurityPolicy/a/no-client ingress[0] deny *",
    ]);
    assert.equal(x.ingress?.steps[1]?.audit, true);
    assert.equal(x.ingress?.decision.by, "rule");
    assert.equal(x.ingress?.audit?.verdict, "deny");
    assert.equal(x.ingress?.audit?.rule?.ruleName, "no-b");
    assert.equal(x.ingress?.datapath.audit?.ruleId, x.ingress?.audit?.ruleId);
    const text = formatExplanation(x, "80/TCP");
    assert.match(text, /^ {2}audit: the Audit policies would DENY it/m);
    assert.match(
      text,
      /audit: the Audit policies would DENY by SecurityPolicy\/a\/no-client ingress\[0\] "no-b" \(Deny\)/,
    );
    assert.match(text, /\[audit\] SecurityPolicy\/a\/no-client: ingress\[0\] "no-b" Deny {3}<- would decide/);
    // From a the Audit rule does not match: it changes nothing, no audit line.
    const y = explain(objects, WEB, DB, 80);
    assert.equal(y.audit, undefined);
    assert.equal(y.ingress?.audit, undefined);
    assert.doesNotMatch(formatExplanation(y, "80/TCP"), /audit:/);
    // An Audit policy that isolates: default deny by the audited isolation.
    const z = explain(
      [np("b", "lockdown", { metadata: {}, podSelector: {}, policyTypes: ["Ingress"] })].map((o) => ({
        ...o,
        metadata: { ...o.metadata, annotations: { "sluice.dev/enforcement": "Audit" } },
      })),
      WEB,
      "10.0.2.1",
      80,
    );
    assert.equal(z.verdict, "allow");
    assert.deepEqual(z.ingress?.audit?.isolatedBy, ["NetworkPolicy/b/lockdown"]);
    assert.equal(z.ingress?.audit?.by, "default");
    assert.match(
      formatExplanation(z, "80/TCP"),
      /would DENY by default deny \(isolated by NetworkPolicy\/b\/lockdown\)/,
    );
  });
});

describe("the command's inputs", () => {
  const inputs = inputsFromObjects(base);
  const dbEnd = { text: "a/db", addresses: [DB], pod: inputs.pods.find((p) => p.metadata.name === "db") };

  test("ports: numbers, protocols, names of the destination, ICMP types", () => {
    assert.deepEqual(parseExplainPort("80", dbEnd, false), { protocol: 6, port: 80, label: "80/TCP" });
    assert.deepEqual(parseExplainPort("53/udp", dbEnd, false), { protocol: 17, port: 53, label: "53/UDP" });
    assert.equal(parseExplainPort("80/SCTP", dbEnd, false).protocol, 132);
    assert.deepEqual(parseExplainPort("http", dbEnd, false), {
      protocol: 6,
      port: 8080,
      label: "8080/TCP (http)",
    });
    assert.deepEqual(parseExplainPort("ICMP", dbEnd, false), {
      protocol: 1,
      port: 8 << 8,
      label: "ICMP echo request",
    });
    assert.equal(parseExplainPort("icmpv6", dbEnd, true).port, 128 << 8);
    assert.equal(parseExplainPort("3:4/ICMP", dbEnd, false).port, (3 << 8) | 4);
    assert.throws(
      () => parseExplainPort("80/XTP", dbEnd, false),
      /--port: "80\/XTP": protocol must be one of .*ICMP/,
    );
    assert.throws(() => parseExplainPort("300/ICMP", dbEnd, false), /each 0\.\.255/);
    assert.throws(() => parseExplainPort("ICMP", dbEnd, true), /ICMP is IPv4's/);
    assert.throws(() => parseExplainPort("nope", dbEnd, false), /no container port named "nope"/);
  });

  test("ends: pods, nodes, addresses, CIDRs; the family of the pair", () => {
    const r = explainRequest(inputs, { from: "b/client", to: "a/web", port: "80", ipv6: true });
    assert.equal(r.explanation.from.address, "fd00::2");
    assert.equal(r.explanation.to.address, "fd00::1");
    const n = explainRequest(inputs, { from: "a/web", to: "node/n2", port: "10250" });
    assert.equal(n.explanation.to.node, "n2");
    assert.equal(n.explanation.egress?.peer.kind, "remote-node");
    const c = explainRequest(inputs, { from: "a/web", to: "10.9.0.0/16", port: "443" });
    assert.equal(c.explanation.to.address, "10.9.0.0");
    assert.throws(
      () => explainRequest(inputs, { from: "a/db", to: "a/web", port: "80", ipv6: true }),
      /no IPv6 addresses/,
    );
    assert.throws(
      () => explainRequest(inputs, { from: "a/nope", to: "a/web", port: "80" }),
      /pod a\/nope not found/,
    );
    assert.throws(
      () => explainRequest(inputs, { from: "web", to: "a/web", port: "80" }),
      /expected ns\/pod, node\/NAME or an address/,
    );
  });

  test("a host-network pod stands for its node's address and has no side of its own", () => {
    const exporter = pod("b", "exporter", { app: "exporter" }, [], "n2");
    exporter.spec = { ...exporter.spec, hostNetwork: true };
    const withHost = inputsFromObjects([...base, exporter]);
    const r = explainRequest(withHost, { from: "b/exporter", to: "a/web", port: "80" });
    assert.equal(r.explanation.from.address, "172.18.0.2");
    assert.equal(r.explanation.egress, undefined);
    assert.equal(r.explanation.ingress?.peer.kind, "remote-node");
  });
});

describe("bin/sluice explain", () => {
  const root = fileURLToPath(new URL("../..", import.meta.url));
  const run = (args: string[], stdin = "") =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(join(root, "bin/sluice"), args, { cwd: root }, (err, stdout, stderr) =>
        resolve({ code: err ? Number(err.code) : 0, stdout, stderr }),
      );
      child.stdin?.end(stdin);
    });

  test("the demo's drop, as text, json and yaml; -f - reads stdin", async () => {
    const args = [
      "explain",
      "--from",
      "shop/frontend",
      "--to",
      "shop/db",
      "--port",
      "pg",
      "-f",
      "samples/demo",
    ];
    const text = await run(args);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /5432\/TCP \(pg\): DENIED/);
    assert.match(
      text.stdout,
      /isolated by NetworkPolicy\/shop\/default-deny-ingress, SecurityPolicy\/shop\/db/,
    );
    const json = JSON.parse((await run([...args, "-o", "json"])).stdout) as Record<string, unknown>;
    assert.equal(json.verdict, "deny");
    assert.equal(json.protocol, "TCP");
    assert.deepEqual(parseYaml((await run([...args, "-o", "yaml"])).stdout), json);
    const { readFileSync } = await import("node:fs");
    const { yamlFiles } = await import("../../operator/src/manifests/load.ts");
    const stream = yamlFiles([join(root, "samples/demo")])
      .map((f) => readFileSync(f, "utf8"))
      .join("\n---\n");
    const piped = await run([...args.slice(0, -1), "-", "-o", "json"], stream);
    assert.equal(piped.code, 0, piped.stderr);
    assert.deepEqual(JSON.parse(piped.stdout), json);
  });

  test("usage errors exit 2 with one line", async () => {
    for (const [args, want] of [
      [["explain", "--to", "a/b", "--port", "80", "-f", "samples/demo"], /--from is required/],
      [
        ["explain", "--from", "shop/db", "--to", "shop/frontend", "--port", "80/XTP", "-f", "samples/demo"],
        /--port: "80\/XTP"/,
      ],
      [["explain", "--from", "a/b", "--to", "a/c", "--port", "80", "-f", "x", "--context", "y"], /not both/],
    ] as const) {
      const r = await run([...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, want);
    }
  });
});
