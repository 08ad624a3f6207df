// Shared by the kernel tests of issue 14 §2 (capacity.test.ts, map-resize.test.ts): a node n1 with
// pods web and db and a client on another node, real policies compiled for n1, and verdicts of a
// datapath's programs on each endpoint's own interface (BPF_PROG_RUN with that ifindex; the
// interfaces are veth pairs that carry no traffic).
import { compile, inputsFromObjects } from "../../operator/src/policy/index.ts";
import type { EndpointState, MapState } from "../../operator/src/policy/mapstate.ts";
import type { Datapath } from "../../operator/src/datapath/kernel/programs.ts";
import type { EndpointInterface } from "../../operator/src/agent/enforcer.ts";
import { packet } from "../support/packets.ts";
import { testInterface } from "./addon-rig.ts";

export const OK = 0; // TC_ACT_OK
export const SHOT = 2; // TC_ACT_SHOT
export const NODE = "n1";
export const HOST = "10.1.0.1"; // the node's own address: identity host
export const WEB = "10.1.0.10";
export const DB = "10.1.0.11";
export const CACHE = "10.1.0.12";
export const CLIENT = "10.2.0.10"; // a pod on another node

export const pod = (name: string, ip: string, node: string) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, namespace: "shop", labels: { app: name } },
  spec: { nodeName: node, containers: [{ name: "c" }] },
  status: { podIP: ip, podIPs: [{ ip }] },
});

// A NetworkPolicy admitting client into app on these TCP ports (ingress only: egress stays open).
export const admit = (name: string, app: string, ports: number[]) => ({
  apiVersion: "networking.k8s.io/v1",
  kind: "NetworkPolicy",
  metadata: { name, namespace: "shop" },
  spec: {
    podSelector: { matchLabels: { app } },
    ingress: [
      { from: [{ podSelector: { matchLabels: { app: "client" } } }], ports: ports.map((port) => ({ port })) },
    ],
  },
});

// Ports 3 apart: each its own entry (the compiler merges neighbouring ports into prefix blocks).
export const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + 3 * i);

export const BASE = [
  { apiVersion: "v1", kind: "Namespace", metadata: { name: "shop" } },
  pod("web", WEB, NODE),
  pod("db", DB, NODE),
  pod("client", CLIENT, "n2"),
  admit("web", "web", [80]),
  admit("db", "db", [5432]),
];
// 40 more ports for web: 2 x 42 entries, more than a 64-entry map has left beside db.
export const BIG = admit("web-big", "web", range(1000, 40));

export function compiled(objects: unknown[], capacity?: number): { state: MapState; errors: string[] } {
  const r = compile(inputsFromObjects(objects), { node: NODE, hostAddresses: [HOST], capacity });
  return { state: r.state, errors: r.errors.map((e) => e.message) };
}

// One interface per endpoint key, and packets through a datapath's programs on them.
export class EndpointLinks {
  readonly #links: ReturnType<typeof testInterface>[] = [];
  readonly ifindex = new Map<string, number>();
  #sport = 30000;

  constructor(dp: Datapath, keys: readonly string[]) {
    for (const key of keys) {
      const link = testInterface();
      this.#links.push(link);
      this.ifindex.set(key, dp.addon.ifNameToIndex(link.name));
    }
  }

  readonly ifindexOf = (ep: EndpointState): number | undefined => this.ifindex.get(ep.key);

  ifname(key: string): string {
    return this.#links[[...this.ifindex.keys()].indexOf(key)]!.name;
  }

  // What an Enforcer is handed for these endpoints: each key's interface, with its pod's one address.
  interfaces(addresses: Readonly<Record<string, string>>): Map<string, EndpointInterface> {
    return new Map(
      Object.entries(addresses).map(([key, ip]) => [
        key,
        { ifname: this.ifname(key), ifindex: this.ifindex.get(key)!, addresses: [ip] },
      ]),
    );
  }

  // One TCP packet through dp's program on the endpoint's interface: to the pod (its ingress) or from
  // it; sport: a given flow's, else a new one.
  verdict(
    dp: Datapath,
    key: string,
    way: "to" | "from",
    src: string,
    dst: string,
    dport: number,
    sport?: number,
  ): number {
    const ctx = new Uint8Array(192); // struct __sk_buff; ifindex at offset 40
    new DataView(ctx.buffer).setUint32(40, this.ifindex.get(key)!, true);
    return dp.addon.progTestRun(dp.programFor(way === "from" ? "ingress" : "egress"), {
      data: packet({ src, dst, l4: { kind: "tcp", sport: sport ?? this.#sport++, dport } }),
      ctx,
    }).retval;
  }

  // What web enforces: [client->web:80, client->web:1003, node->web:80, web->client:443].
  web(dp: Datapath): number[] {
    return [
      this.verdict(dp, "shop/web", "to", CLIENT, WEB, 80),
      this.verdict(dp, "shop/web", "to", CLIENT, WEB, 1003),
      this.verdict(dp, "shop/web", "to", HOST, WEB, 80),
      this.verdict(dp, "shop/web", "from", WEB, CLIENT, 443),
    ];
  }

  // What db enforces: [client->db:5432, client->db:80].
  db(dp: Datapath): number[] {
    return [
      this.verdict(dp, "shop/db", "to", CLIENT, DB, 5432),
      this.verdict(dp, "shop/db", "to", CLIENT, DB, 80),
    ];
  }

  remove(): void {
    for (const l of this.#links.splice(0)) l.remove();
  }
}
