// The agent resolves a pod's host-side interface once per set of pod addresses and caches it (each
// resolution spawns `ip` twice: too slow to repeat on every reconcile). A CNI that re-wires a pod
// without changing the Pod object (a new veth, a new ifindex) would leave the cache stale, so the
// agent lists the node's links now and then (one `ip -j link show`) and drops entries whose name no
// longer has their ifindex; their endpoints are then resolved and reconciled again.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { HostInterface } from "./host-interfaces.ts";

const run = promisify(execFile);

// Keys whose cached interface no longer exists under that name and index (pure).
export function staleInterfaces(
  cached: Iterable<[string, HostInterface | undefined]>,
  links: ReadonlyMap<string, number>,
): string[] {
  const out: string[] = [];
  for (const [key, iface] of cached) if (iface && links.get(iface.ifname) !== iface.ifindex) out.push(key);
  return out;
}

export interface Link {
  ifname: string;
  ifindex: number;
  // linkinfo.info_kind, when `ip -d` printed it; undefined for a device without one (a NIC, loopback).
  kind?: string;
}

// The links of `ip [-d] -j link show`'s output.
export function parseLinks(stdout: string): Link[] {
  const links = JSON.parse(stdout) as {
    ifname?: string;
    ifindex?: number;
    linkinfo?: { info_kind?: string };
  }[];
  return links.flatMap((l) =>
    l.ifname && typeof l.ifindex === "number"
      ? [
          {
            ifname: l.ifname,
            ifindex: l.ifindex,
            ...(l.linkinfo?.info_kind && { kind: l.linkinfo.info_kind }),
          },
        ]
      : [],
  );
}

// ifname → ifindex of every link in this network namespace.
export async function listLinks(): Promise<Map<string, number>> {
  const { stdout } = await run("ip", ["-j", "link", "show"]);
  return new Map(parseLinks(stdout).map((l) => [l.ifname, l.ifindex]));
}
