// The agent's host routing gate (operator/src/agent/host-routing.ts): on only while every endpoint's
// host-side interface is one end of a veth or netkit pair, with the links listed again only for an
// interface it has not seen.
import assert from "node:assert/strict";
import { test } from "node:test";
import { HostRoutingGate } from "../../operator/src/agent/host-routing.ts";
import type { Link } from "../../operator/src/agent/link-check.ts";

function lister(links: Link[]): { list: () => Link[]; calls: () => number } {
  let calls = 0;
  return {
    list: () => {
      calls++;
      return links;
    },
    calls: () => calls,
  };
}

const veth = (ifname: string, ifindex: number): Link => ({ ifname, ifindex, kind: "veth" });

test("kernel: off by the configuration, without listing links", () => {
  const l = lister([veth("a", 2)]);
  const d = new HostRoutingGate("kernel", l.list).decide([{ ifname: "a", ifindex: 2 }]);
  assert.deepEqual(d, { on: false, by: "configuration", reason: "host routing is set to kernel" });
  assert.equal(l.calls(), 0);
});

test("bpf: on when every interface is a veth or netkit end; links listed once per new interface", () => {
  const l = lister([veth("a", 2), { ifname: "b", ifindex: 3, kind: "netkit" }, veth("c", 4)]);
  const gate = new HostRoutingGate("bpf", l.list);
  assert.deepEqual(gate.decide([]), { on: true });
  assert.deepEqual(
    gate.decide([
      { ifname: "a", ifindex: 2 },
      { ifname: "b", ifindex: 3 },
    ]),
    { on: true },
  );
  assert.equal(l.calls(), 1);
  assert.deepEqual(
    gate.decide([
      { ifname: "a", ifindex: 2 },
      { ifname: "b", ifindex: 3 },
    ]),
    { on: true },
  );
  assert.equal(l.calls(), 1, "nothing new: no listing");
  assert.deepEqual(gate.decide([{ ifname: "c", ifindex: 4 }]), { on: true });
  assert.equal(l.calls(), 2);
});

test("bpf: off by the first interface of another kind, named in the reason", () => {
  const l = lister([
    veth("a", 2),
    { ifname: "br0", ifindex: 5, kind: "bridge" },
    { ifname: "eth0", ifindex: 6 },
  ]);
  const gate = new HostRoutingGate("bpf", l.list);
  const d = gate.decide([
    { ifname: "a", ifindex: 2 },
    { ifname: "br0", ifindex: 5 },
  ]);
  assert.equal(d.on, false);
  assert.ok(!d.on && d.by === "interface" && /br0 #5 is a bridge/.test(d.reason), JSON.stringify(d));
  const nic = gate.decide([{ ifname: "eth0", ifindex: 6 }]);
  assert.ok(!nic.on && /eth0 #6 is a device of no kind/.test(nic.reason), JSON.stringify(nic));
});

test("bpf: an interface under another index, or gone, keeps it off and is asked about again", () => {
  const l = lister([veth("a", 7)]);
  const gate = new HostRoutingGate("bpf", l.list);
  const d = gate.decide([{ ifname: "a", ifindex: 2 }]);
  assert.ok(
    !d.on && d.by === "interface" && /a #2 is not in the node's links/.test(d.reason),
    JSON.stringify(d),
  );
  gate.decide([{ ifname: "a", ifindex: 2 }]);
  assert.equal(l.calls(), 2, "not remembered: listed again");
});
