// Whether the datapath may route between the node's pods itself (SL_CFG_HOST_ROUTING; sl_host_route in
// bpf/sluice.bpf.c): a packet of a flow tracked at both ends goes from the sender's host-side hook
// straight into the receiver's namespace with bpf_redirect_peer. The kernel carries that out only for
// an interface with a peer in another namespace (veth, netkit) and drops the packet for any other, so
// the agent turns it on only while every endpoint's host-side interface is one, and says which is not.
import { execFileSync } from "node:child_process";
import { type Link, parseLinks } from "./link-check.ts";

export const HOST_ROUTING_MODES = ["bpf", "kernel"] as const;
export type HostRouting = (typeof HOST_ROUTING_MODES)[number];

// Link kinds whose device has a peer in another namespace (ndo_get_peer_dev in the kernel).
export const PAIR_KINDS: ReadonlySet<string> = new Set(["veth", "netkit"]);

// Off by the configuration (--host-routing kernel), or because of an interface, which reason names.
export type HostRoutingDecision =
  | { on: true }
  | { on: false; by: "configuration" | "interface"; reason: string };

export const KERNEL_ROUTING: HostRoutingDecision = {
  on: false,
  by: "configuration",
  reason: "host routing is set to kernel",
};

// Every link of the agent's network namespace with its kind: one `ip -d -j link show`.
export function listLinkKinds(): Link[] {
  return parseLinks(execFileSync("ip", ["-d", "-j", "link", "show"], { encoding: "utf8" }));
}

const keyOf = (i: { ifname: string; ifindex: number }): string => `${i.ifname}#${i.ifindex}`;

export class HostRoutingGate {
  readonly #mode: HostRouting;
  readonly #list: () => Link[];
  // Kind by ifname#ifindex, of the interfaces last asked about: a device keeps its kind for life, so
  // the links are listed again only when a new interface comes.
  #kinds = new Map<string, string | undefined>();

  constructor(mode: HostRouting, list: () => Link[] = listLinkKinds) {
    this.#mode = mode;
    this.#list = list;
  }

  // The decision for a datapath whose endpoints are on these interfaces.
  decide(interfaces: Iterable<{ ifname: string; ifindex: number }>): HostRoutingDecision {
    if (this.#mode === "kernel") return KERNEL_ROUTING;
    const wanted = [...interfaces];
    const kinds = new Map<string, string | undefined>();
    let listed: Map<string, string | undefined> | undefined;
    let blocker: HostRoutingDecision | undefined;
    for (const i of wanted) {
      const k = keyOf(i);
      if (!this.#kinds.has(k)) listed ??= new Map(this.#list().map((l) => [keyOf(l), l.kind]));
      if (!this.#kinds.has(k) && !listed?.has(k)) {
        // Gone, or not there yet: asked again next time.
        blocker ??= {
          on: false,
          by: "interface",
          reason: `interface ${i.ifname} #${i.ifindex} is not in the node's links`,
        };
        continue;
      }
      const kind = this.#kinds.has(k) ? this.#kinds.get(k) : listed?.get(k);
      kinds.set(k, kind);
      if (!kind || !PAIR_KINDS.has(kind))
        blocker ??= {
          on: false,
          by: "interface",
          reason: `interface ${i.ifname} #${i.ifindex} is ${kind ? `a ${kind}` : "a device of no kind"}, not one end of a veth or netkit pair`,
        };
    }
    this.#kinds = kinds;
    return blocker ?? { on: true };
  }
}
