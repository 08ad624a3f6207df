// Allow-localhost (issue 9 §4): the local node reaches its own pods under default deny ("always", the
// default) or only where a policy allows the host entity ("policy"). Every verdict is checked through
// the compiled map state (what the datapath does) and through the reference evaluator.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { flowEvent } from "../../operator/src/datapath/codec/codecs.ts";
import { decodeFlowEvent } from "../../operator/src/datapath/flow-events.ts";
import { enums } from "../../operator/src/datapath/codec/layout.generated.ts";
import {
  type AllowLocalhost,
  compile,
  inputsFromObjects,
  lookupIdentity,
  lookupVerdict,
  ReferenceEvaluator,
  ReservedIdentity,
  ReservedRuleId,
} from "../../operator/src/policy/index.ts";
import { protocolNumber } from "../../operator/src/policy/ports.ts";
import { node, ns, pod } from "./policy-fixtures.ts";

const N1_HOST = "172.18.0.1"; // n1's Node object InternalIP
const N2_HOST = "172.18.0.2";
// An address on one of n1's interfaces that no Node object lists (a CNI gateway, a second NIC):
// the agent finds it and passes it as hostAddresses.
const N1_IFACE = "192.168.50.1";
const N1_IFACE6 = "fd00::50";
const HOST_ADDRESSES = new Map([["n1", [N1_IFACE, N1_IFACE6]]]);

const base = [
  ns("a", { team: "x" }),
  ns("b", { team: "y" }),
  node("n1", N1_HOST),
  node("n2", N2_HOST),
  pod("a", "web", { app: "web" }, ["10.0.1.1", "fd00::1"], "n1", [{ name: "http", containerPort: 80 }]),
  pod("a", "db", { app: "db" }, "10.0.1.2", "n2"),
  pod("b", "client", { app: "client" }, "10.0.2.1", "n1"),
];

const np = (name: string, namespace: string, spec: object) => ({
  kind: "NetworkPolicy",
  metadata: { name, namespace },
  spec,
});
const sp = (name: string, namespace: string, spec: object) => ({
  kind: "SecurityPolicy",
  metadata: { name, namespace },
  spec,
});
const csp = (name: string, spec: object) => ({ kind: "ClusterSecurityPolicy", metadata: { name }, spec });

const defaultDeny = np("default-deny-ingress", "a", { podSelector: {}, policyTypes: ["Ingress"] });

function compileNode(objects: unknown[], nodeName: string, mode?: AllowLocalhost) {
  return compile(inputsFromObjects([...base, ...objects]), {
    node: nodeName,
    hostAddresses: HOST_ADDRESSES.get(nodeName),
    ...(mode ? { allowLocalhost: mode } : {}),
  });
}

// The ingress verdict of pod `to` for a packet from address `from`, compiled and by the reference.
function ingress(
  objects: unknown[],
  mode: AllowLocalhost | undefined,
  from: string,
  to: string,
  port: number,
  protocol = "TCP",
): string {
  const inputs = inputsFromObjects([...base, ...objects]);
  const dst = inputs.pods.find((p) => `${p.metadata.namespace}/${p.metadata.name}` === to)!;
  const v6 = from.includes(":");
  const dstIp = (dst.status?.podIPs ?? []).map((p) => p.ip).find((ip) => ip.includes(":") === v6)!;
  const proto = protocolNumber(protocol);
  const st = compileNode(objects, dst.spec!.nodeName!, mode).state;
  const ep = st.endpoints.find((e) => e.key === to)!;
  const compiled = lookupVerdict(ep.policy, "ingress", lookupIdentity(st.ipcache, from), proto, port).verdict;
  const ref = new ReferenceEvaluator(inputs, {
    hostAddresses: HOST_ADDRESSES,
    ...(mode ? { allowLocalhost: mode } : {}),
  }).evaluate(from, dstIp, proto, port).ingress;
  assert.equal(compiled, ref, `compiled and reference disagree on ${from} -> ${to}:${port}/${protocol}`);
  return compiled;
}

describe("host classification", () => {
  test("the node's Node addresses and its own interfaces' addresses are host; other nodes' are remote-node", () => {
    const n1 = compileNode([], "n1").state.ipcache;
    assert.equal(lookupIdentity(n1, N1_HOST), ReservedIdentity.HOST);
    assert.equal(lookupIdentity(n1, N1_IFACE), ReservedIdentity.HOST);
    assert.equal(lookupIdentity(n1, N1_IFACE6), ReservedIdentity.HOST);
    assert.equal(lookupIdentity(n1, N2_HOST), ReservedIdentity.REMOTE_NODE);
    // n1's interfaces are n1's business: n2 does not know them.
    const n2 = compileNode([], "n2").state.ipcache;
    assert.equal(lookupIdentity(n2, N1_HOST), ReservedIdentity.REMOTE_NODE);
    assert.equal(lookupIdentity(n2, N1_IFACE), ReservedIdentity.WORLD);
    assert.equal(lookupIdentity(n2, N2_HOST), ReservedIdentity.HOST);
  });

  test("a pod keeps its address even if the node lists it as its own", () => {
    const st = compile(inputsFromObjects(base), { node: "n1", hostAddresses: ["10.0.1.1"] }).state;
    assert.notEqual(lookupIdentity(st.ipcache, "10.0.1.1"), ReservedIdentity.HOST);
  });
});

describe("allow-localhost always (the default)", () => {
  for (const mode of [undefined, "always"] as const)
    test(`an isolated endpoint accepts the local node on every port and protocol (${mode ?? "default"})`, () => {
      for (const from of [N1_HOST, N1_IFACE, N1_IFACE6]) {
        assert.equal(ingress([defaultDeny], mode, from, "a/web", 80), "allow", from);
        assert.equal(ingress([defaultDeny], mode, from, "a/web", 10250), "allow", from);
        assert.equal(ingress([defaultDeny], mode, from, "a/web", 53, "UDP"), "allow", from);
        assert.equal(ingress([defaultDeny], mode, from, "a/web", 132, "SCTP"), "allow", from);
      }
    });

  test("everyone else stays denied: pods, other nodes, the world", () => {
    assert.equal(ingress([defaultDeny], "always", "10.0.2.1", "a/web", 80), "deny");
    assert.equal(ingress([defaultDeny], "always", N2_HOST, "a/web", 80), "deny");
    assert.equal(ingress([defaultDeny], "always", "8.8.8.8", "a/web", 80), "deny");
    // db is on n2: n1 is a remote node there, and n1's own interfaces are unknown (world).
    assert.equal(ingress([defaultDeny], "always", N1_HOST, "a/db", 80), "deny");
    assert.equal(ingress([defaultDeny], "always", N1_IFACE, "a/db", 80), "deny");
    assert.equal(ingress([defaultDeny], "always", N2_HOST, "a/db", 80), "allow");
  });

  test("the entry: one allow of every protocol per host identity, rule id LOCALHOST, decides the lookup", () => {
    const st = compileNode([defaultDeny], "n1", "always").state;
    const web = st.endpoints.find((e) => e.key === "a/web")!;
    assert.deepEqual(
      web.policy.entries.filter((e) => e.identity === ReservedIdentity.HOST),
      [
        {
          direction: "ingress",
          identity: ReservedIdentity.HOST,
          protocol: 0,
          port: 0,
          portPrefixLen: 0,
          verdict: "allow",
          ruleId: ReservedRuleId.LOCALHOST,
        },
      ],
    );
    const r = lookupVerdict(web.policy, "ingress", ReservedIdentity.HOST, 6, 5432);
    assert.equal(r.entry?.ruleId, ReservedRuleId.LOCALHOST);
    // Nothing in egress: the pod's connections to the node are policy as before.
    assert.ok(!web.policy.entries.some((e) => e.direction === "egress"));
  });

  test("no entry where nothing could deny the node (an endpoint no ingress policy selects)", () => {
    const st = compileNode([defaultDeny], "n1", "always").state;
    const client = st.endpoints.find((e) => e.key === "b/client")!;
    assert.deepEqual(client.policy.entries, []);
    assert.equal(ingress([defaultDeny], "always", N1_HOST, "b/client", 80), "allow");
  });

  test("a Deny cannot take it away: namespace Deny of the host entity, Admin-tier Deny of everything", () => {
    const denyHost = sp("deny-host", "a", {
      endpointSelector: {},
      ingress: [{ action: "Deny", entities: ["host"] }, { entities: ["world"] }],
    });
    const adminDeny = csp("admin-deny", {
      tier: "Admin",
      priority: 1,
      endpointSelector: {},
      ingress: [{ action: "Deny" }],
    });
    for (const objects of [[denyHost], [adminDeny], [defaultDeny, denyHost, adminDeny]]) {
      assert.equal(ingress(objects, "always", N1_HOST, "a/web", 80), "allow");
      assert.equal(ingress(objects, "always", N1_IFACE, "a/web", 80), "allow");
      assert.equal(ingress(objects, "always", N2_HOST, "a/web", 80), "deny");
      assert.equal(ingress(objects, "policy", N1_HOST, "a/web", 80), "deny");
    }
    // The Admin deny hits b/client too, which no namespace policy isolates.
    assert.equal(ingress([adminDeny], "always", N1_HOST, "b/client", 80), "allow");
    assert.equal(ingress([adminDeny], "policy", N1_HOST, "b/client", 80), "deny");
  });

  test("node addresses a policy CIDR splits into several host identities all get the entry", () => {
    // 192.168.0.0/16 holds N1_IFACE but not N1_HOST: two refined identities of base HOST.
    const cidr = np("cidr", "a", {
      podSelector: {},
      policyTypes: ["Ingress"],
      ingress: [{ from: [{ ipBlock: { cidr: "192.168.0.0/16" } }], ports: [{ port: 8080 }] }],
    });
    const st = compileNode([cidr], "n1", "always").state;
    const ids = new Set([lookupIdentity(st.ipcache, N1_HOST), lookupIdentity(st.ipcache, N1_IFACE)]);
    assert.equal(ids.size, 2, "the CIDR tells the two host addresses apart");
    const web = st.endpoints.find((e) => e.key === "a/web")!;
    for (const id of ids)
      assert.equal(lookupVerdict(web.policy, "ingress", id, 6, 22).entry?.ruleId, ReservedRuleId.LOCALHOST);
    assert.equal(ingress([cidr], "always", N1_HOST, "a/web", 22), "allow");
    assert.equal(ingress([cidr], "always", N1_IFACE, "a/web", 22), "allow");
    assert.equal(ingress([cidr], "policy", N1_HOST, "a/web", 8080), "deny");
    assert.equal(ingress([cidr], "policy", N1_IFACE, "a/web", 8080), "allow");
    assert.equal(ingress([cidr], "policy", N1_IFACE, "a/web", 22), "deny");
  });
});

describe("allow-localhost policy", () => {
  test("an isolated endpoint denies the local node", () => {
    for (const from of [N1_HOST, N1_IFACE, N1_IFACE6])
      assert.equal(ingress([defaultDeny], "policy", from, "a/web", 80), "deny", from);
    const st = compileNode([defaultDeny], "n1", "policy").state;
    const web = st.endpoints.find((e) => e.key === "a/web")!;
    assert.ok(!web.policy.entries.some((e) => e.ruleId === ReservedRuleId.LOCALHOST));
  });

  test("unless a policy allows the host entity, on its ports only", () => {
    const kubelet = sp("kubelet", "a", {
      endpointSelector: { matchLabels: { app: "web" } },
      ingress: [{ entities: ["host"], ports: [{ port: 80, protocol: "TCP" }] }],
    });
    assert.equal(ingress([defaultDeny, kubelet], "policy", N1_HOST, "a/web", 80), "allow");
    assert.equal(ingress([defaultDeny, kubelet], "policy", N1_IFACE, "a/web", 80), "allow");
    assert.equal(ingress([defaultDeny, kubelet], "policy", N1_HOST, "a/web", 81), "deny");
    assert.equal(ingress([defaultDeny, kubelet], "policy", N2_HOST, "a/web", 80), "deny");
    // `always` opens the rest.
    assert.equal(ingress([defaultDeny, kubelet], "always", N1_HOST, "a/web", 81), "allow");
  });

  test("an endpoint no policy isolates still accepts the node", () => {
    assert.equal(ingress([], "policy", N1_HOST, "a/web", 80), "allow");
  });
});

test("egress to the node is policy in both modes", () => {
  const egress = np("no-egress", "a", { podSelector: {}, policyTypes: ["Egress"] });
  const inputs = inputsFromObjects([...base, egress]);
  for (const mode of ["always", "policy"] as const) {
    const st = compileNode([egress], "n1", mode).state;
    const web = st.endpoints.find((e) => e.key === "a/web")!;
    const v = lookupVerdict(web.policy, "egress", lookupIdentity(st.ipcache, N1_HOST), 6, 10250).verdict;
    assert.equal(v, "deny", mode);
    const ref = new ReferenceEvaluator(inputs, { allowLocalhost: mode, hostAddresses: HOST_ADDRESSES });
    assert.equal(ref.evaluate("10.0.1.1", N1_HOST, 6, 10250).egress, "deny", mode);
  }
});

test("flow events name the allow-localhost entry's decisions", () => {
  const record = (ruleId: number) =>
    decodeFlowEvent(
      flowEvent.encode({
        ts_ns: 1n,
        ep_id: 7,
        ep_identity: 300,
        peer_identity: ReservedIdentity.HOST,
        rule_id: ruleId,
        dir: 0,
        verdict: enums.sl_verdict.SL_VERDICT_ALLOW,
        reason: enums.sl_reason.SL_REASON_POLICY,
        family: enums.sl_family.SL_FAMILY_V4,
        proto: 6,
        sport: 40000,
        dport: 5432,
        len: 60,
        saddr: new Uint8Array(16),
        daddr: new Uint8Array(16),
        audit_verdict: 0,
        audit_rule_id: 0,
      }),
    );
  const e = record(ReservedRuleId.LOCALHOST);
  assert.equal(e.reason, "allow-localhost");
  assert.equal(e.ruleId, ReservedRuleId.LOCALHOST);
  assert.equal(record(4242).reason, "policy");
});
