// Finds a pod's host-side interface the way the kernel would forward to it: by the route to its IP
// in the node's network namespace (the agent runs there). This is how CNIs with per-pod routes
// (Calico, Cilium in direct routing) expose pods, and how the lab wires them.
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface HostInterface {
  ifname: string;
  ifindex: number;
}

// Resolves pod IPs to interfaces; an abstraction so tests and other CNIs can supply their own.
export interface InterfaceResolver {
  resolve(ip: string): Promise<HostInterface | undefined>;
}

interface RouteJson {
  dev?: string;
  type?: string;
}
interface LinkJson {
  ifindex: number;
  ifname: string;
}

export class RouteInterfaceResolver implements InterfaceResolver {
  async resolve(ip: string): Promise<HostInterface | undefined> {
    let routes: RouteJson[];
    try {
      const { stdout } = await run("ip", ["-j", "route", "get", ip]);
      routes = JSON.parse(stdout) as RouteJson[];
    } catch {
      return undefined; // no route: the pod is not reachable from this node
    }
    const dev = routes[0]?.dev;
    if (!dev || routes[0]?.type === "local" || dev === "lo") return undefined;
    const { stdout } = await run("ip", ["-j", "link", "show", "dev", dev]);
    const link = (JSON.parse(stdout) as LinkJson[])[0];
    return link ? { ifname: link.ifname, ifindex: link.ifindex } : undefined;
  }
}
