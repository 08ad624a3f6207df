// `sluice monitor`'s naming, pure: flow events as the datapath would emit them for a compiled
// scenario (the decision from the compiled state through the lookup simulator, the record through the
// BTF codec and decodeFlowEvent) are named with the pods, the peer entities and the deciding rule:
// kind/namespace/name and index (and the rule's name), the default deny with the policies that
// isolate the pod, allow-localhost, and the datapath's own reasons.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { flowEvent } from "../../operator/src/datapath/codec/codecs.ts";
import { addressBytes, dirCode, verdictCode } from "../../operator/src/datapath/codec/keys.ts";
import { enums } from "../../operator/src/datapath/codec/layout.generated.ts";
import { decodeFlowEvent } from "../../operator/src/datapath/flow-events.ts";
import { nameFlow } from "../../operator/src/monitor/name.ts";
import { MonitorView } from "../../operator/src/monitor/view.ts";
import { parseIp } from "../../operator/src/policy/cidr.ts";
import {
  IncrementalCompiler,
  inputsFromObjects,
  lookupIdentity,
  lookupVerdict,
} from "../../operator/src/policy/index.ts";
import type { Direction } from "../../operator/src/policy/mapstate.ts";
import { protocolNumber } from "../../operator/src/policy/ports.ts";
import { node, ns, pod } from "./policy-fixtures.ts";

const NODE = "n1";
const HOST_ADDRESS = "192.168.7.1";
const objects = [
  ns("a", { team: "x" }),
  ns("b", { team: "y" }),
  ns("mon", { team: "ops" }),
  node("n1", "172.18.0.1"),
  node("n2", "172.18.0.2"),
  pod("a", "web", { app: "web" }, "10.0.1.1", "n1", [{ name: "http", containerPort: 80 }]),
  pod("a", "api", { app: "api" }, "10.0.1.3", "n1"),
  pod("b", "client", { app: "client" }, "10.0.2.1", "n1"),
  pod("mon", "prom", { app: "prom" }, "10.0.3.1", "n2"),
  {
    kind: "NetworkPolicy",
    metadata: { name: "web-from-b", namespace: "a" },
    spec: {
      podSelector: { matchLabels: { app: "web" } },
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: "y" } } }], ports: [{ port: 80 }] }],
      egress: [{ to: [{ ipBlock: { cidr: "8.8.0.0/16" } }] }],
      policyTypes: ["Ingress", "Egress"],
    },
  },
  {
    kind: "AdminNetworkPolicy",
    apiVersion: "policy.networking.k8s.io/v1alpha1",
    metadata: { name: "guard-api" },
    spec: {
      priority: 5,
      subject: { pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: "api" } } } },
      ingress: [
        { name: "monitoring", action: "Allow", from: [{ namespaces: { matchLabels: { team: "ops" } } }] },
        { name: "no-b", action: "Deny", from: [{ namespaces: { matchLabels: { team: "y" } } }] },
      ],
    },
  },
];

const compiler = new IncrementalCompiler(inputsFromObjects(objects), {
  node: NODE,
  hostAddresses: [HOST_ADDRESS],
});
const view = new MonitorView(compiler, NODE);

// The event the datapath emits for a packet src → dst at `endpoint` in `direction`, decided by the
// compiled state (or forced to a datapath reason).
function event(
  endpoint: string,
  direction: Direction,
  src: string,
  dst: string,
  port: number,
  reason?: keyof typeof enums.sl_reason,
) {
  const st = compiler.state;
  const ep = st.endpoints.find((e) => e.key === endpoint);
  assert.ok(ep, `${endpoint} is a local endpoint`);
  const peer = lookupIdentity(st.ipcache, direction === "ingress" ? src : dst);
  const d = lookupVerdict(ep.policy, direction, peer, protocolNumber("TCP"), port);
  const ip = (a: string) => {
    const p = parseIp(a)!;
    const b = new Uint8Array(16);
    b.set(addressBytes(p.family, p.addr));
    return b;
  };
  const buf = flowEvent.encode({
    ts_ns: 1n,
    ep_id: ep.id,
    ep_identity: ep.identity,
    peer_identity: peer,
    rule_id: d.entry?.ruleId ?? 0,
    dir: dirCode(direction),
    verdict: verdictCode(d.verdict),
    reason: enums.sl_reason[reason ?? (d.entry ? "SL_REASON_POLICY" : "SL_REASON_DEFAULT")],
    family: enums.sl_family.SL_FAMILY_V4,
    proto: protocolNumber("TCP"),
    sport: 40000,
    dport: port,
    len: 60,
    saddr: ip(src),
    daddr: ip(dst),
    audit_verdict: 0,
    audit_rule_id: 0,
  });
  return decodeFlowEvent(buf);
}

const named = (ev: ReturnType<typeof event>) =>
  nameFlow(view, NODE, ev, Date.UTC(2026, 11, 3, 19, 20, 17, 123));

describe("monitor naming", () => {
  test("an allow by a NetworkPolicy rule: the pods, the policy and the rule index", () => {
    const ev = event("a/web", "ingress", "10.0.2.1", "10.0.1.1", 80);
    const r = named(ev);
    assert.equal(r.verdict, "allowed");
    assert.equal(r.source.pod, "b/client");
    assert.equal(r.destination.pod, "a/web");
    assert.equal(r.endpoint, "a/web");
    assert.deepEqual(r.rule, {
      policy: "NetworkPolicy/a/web-from-b",
      kind: "NetworkPolicy",
      namespace: "a",
      name: "web-from-b",
      direction: "ingress",
      index: 0,
      action: "allow",
      ruleId: ev.ruleId,
    });
    assert.equal(r.decidedBy, "NetworkPolicy/a/web-from-b ingress[0]");
    assert.equal(r.protocol, "TCP");
    assert.equal(r.port, 80);
    assert.equal(r.source.port, 40000);
    assert.equal(r.time, "2026-12-03T19:20:17.123Z");
  });

  test("a default deny names the policies that isolate the pod; the peer on another node by its pod", () => {
    const r = named(event("a/web", "ingress", "10.0.3.1", "10.0.1.1", 80));
    assert.equal(r.verdict, "denied");
    assert.equal(r.source.pod, "mon/prom");
    assert.deepEqual(r.isolatedBy, ["NetworkPolicy/a/web-from-b"]);
    assert.equal(r.decidedBy, "default deny (isolated by NetworkPolicy/a/web-from-b)");
    assert.equal(r.rule, undefined);
    // A port no rule names is the default too.
    assert.equal(named(event("a/web", "ingress", "10.0.2.1", "10.0.1.1", 81)).decidedBy, r.decidedBy);
  });

  test("a named rule of an AdminNetworkPolicy: index and name", () => {
    const deny = named(event("a/api", "ingress", "10.0.2.1", "10.0.1.3", 8080));
    assert.equal(deny.verdict, "denied");
    assert.equal(deny.decidedBy, 'AdminNetworkPolicy/guard-api ingress[1] "no-b"');
    assert.equal(deny.rule?.ruleName, "no-b");
    assert.equal(deny.rule?.namespace, undefined);
    const allow = named(event("a/api", "ingress", "10.0.3.1", "10.0.1.3", 8080));
    assert.equal(allow.decidedBy, 'AdminNetworkPolicy/guard-api ingress[0] "monitoring"');
  });

  test("an endpoint no policy isolates: default allow", () => {
    const r = named(event("b/client", "egress", "10.0.2.1", "10.0.1.3", 8080));
    assert.equal(r.verdict, "allowed");
    assert.equal(r.decidedBy, "default allow (not isolated)");
    assert.equal(r.source.pod, "b/client");
    assert.equal(r.destination.pod, "a/api");
  });

  test("peers that are no pod: a policy CIDR, the world, this node, another node", () => {
    const cidr = named(event("a/web", "egress", "10.0.1.1", "8.8.8.8", 53));
    assert.equal(cidr.verdict, "allowed");
    assert.deepEqual(
      { entity: cidr.destination.entity, cidr: cidr.destination.cidr, pod: cidr.destination.pod },
      { entity: "world", cidr: "8.8.0.0/16", pod: undefined },
    );
    assert.equal(cidr.decidedBy, "NetworkPolicy/a/web-from-b egress[0]");
    const world = named(event("a/web", "egress", "10.0.1.1", "1.1.1.1", 53));
    assert.equal(world.destination.entity, "world");
    assert.equal(world.destination.cidr, undefined);
    assert.equal(world.verdict, "denied");
    const host = named(event("a/web", "ingress", HOST_ADDRESS, "10.0.1.1", 80));
    assert.deepEqual([host.source.entity, host.source.node], ["host", NODE]);
    // The allow-localhost entry (CompileOptions.allowLocalhost "always") decided, not a policy.
    assert.equal(host.reason, "allow-localhost");
    assert.equal(host.decidedBy, "allow-localhost");
    const remote = named(event("b/client", "ingress", "172.18.0.2", "10.0.2.1", 80));
    assert.deepEqual([remote.source.entity, remote.source.node], ["remote-node", "n2"]);
  });

  test("the datapath's own reasons decide without a rule", () => {
    const r = named(event("a/web", "egress", "10.0.1.1", "10.0.2.1", 80, "SL_REASON_CT_REPLY"));
    assert.equal(r.reason, "ct_reply");
    assert.equal(r.decidedBy, "ct_reply");
    assert.equal(r.rule, undefined);
  });

  test("before the agent's first pass: numbers only, never a wrong name", () => {
    const r = nameFlow(undefined, NODE, event("a/web", "ingress", "10.0.2.1", "10.0.1.1", 80), 0);
    assert.match(r.endpoint, /^endpoint:\d+$/);
    assert.equal(r.source.pod, undefined);
    assert.match(r.decidedBy, /^rule \d+ \(not among the agent's policies\)$/);
  });

  test("labels on request: the identity's pod labels and namespace", () => {
    const r = named(event("a/web", "ingress", "10.0.2.1", "10.0.1.1", 80));
    assert.deepEqual(view.labels(r.source.identity), { app: "client", "io.kubernetes.pod.namespace": "b" });
  });
});
