// The node's own addresses the agent maps to identity host (allow-localhost, issue 9 §4).
import assert from "node:assert/strict";
import type { NetworkInterfaceInfo } from "node:os";
import { test } from "node:test";
import { nodeAddresses } from "../../operator/src/agent/node-addresses.ts";

const a = (address: string, internal = false): NetworkInterfaceInfo =>
  ({
    address,
    family: address.includes(":") ? "IPv6" : "IPv4",
    internal,
    netmask: "",
    mac: "00:00:00:00:00:00",
    cidr: null,
    ...(address.includes(":") ? { scopeid: 0 } : {}),
  }) as NetworkInterfaceInfo;

test("every address of the node's interfaces but loopback and link-local, sorted and unique", () => {
  const got = nodeAddresses({
    lo: [a("127.0.0.1", true), a("::1", true)],
    eth0: [a("172.31.255.2"), a("FD5C:1CE:0:FFFF::2"), a("fe80::5c:3ff:fe00:1")],
    cni0: [a("10.244.1.1"), a("169.254.1.1"), a("febf::1")],
    dummy: [a("127.0.0.2"), a("172.31.255.2")],
    down: undefined,
  });
  assert.deepEqual(got, ["10.244.1.1", "172.31.255.2", "fd5c:1ce:0:ffff::2"]);
});

test("this process's network namespace: no loopback in it", () => {
  for (const ip of nodeAddresses()) assert.ok(ip !== "127.0.0.1" && ip !== "::1", ip);
});
