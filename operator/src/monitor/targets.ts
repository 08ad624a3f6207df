// Where `sluice monitor` finds the agents. A lab (`sluice lab up`): its state file names each node's
// agent socket. A cluster: the agent pods of the Sluice namespace, each reached through the API
// server's pods/portforward (a websocket, @kubernetes/client-node's PortForward) to the monitor port on
// the pod's loopback, which is the node's (the agents are host-network). No port is exposed and no new
// credential exists: whoever may port-forward to the agent pods (Kubernetes RBAC) may read the flows.
import { Duplex, PassThrough } from "node:stream";
import { type KubeConfig, PortForward } from "@kubernetes/client-node";
import { makeClients } from "../kube/client.ts";
import { readState, stateDir } from "../lab/up-state.ts";
import type { MonitorTarget } from "./client.ts";
import { DEFAULT_MONITOR_PORT } from "./server.ts";

export const AGENT_SELECTOR = "app.kubernetes.io/component=agent";

export function labTargets(nodes: readonly string[] | undefined): MonitorTarget[] {
  const dir = stateDir();
  const state = readState(dir);
  if (!state) throw new Error(`no lab is up (no state in ${dir}): run \`sluice lab up\` first`);
  if (state.phase !== "ready") throw new Error(`the lab in ${dir} is ${state.phase}, not ready`);
  const monitors = Object.entries(state.monitors ?? {});
  if (monitors.length === 0)
    throw new Error(`the lab in ${dir} records no agent monitor (started by an older build?)`);
  return pick(
    monitors.map(([node, address]) => ({
      node,
      via: address,
      connection: { socketPath: address.replace(/^unix:/, "") },
    })),
    nodes,
  );
}

export async function clusterTargets(
  kc: KubeConfig,
  namespace: string,
  nodes: readonly string[] | undefined,
): Promise<MonitorTarget[]> {
  const { core } = makeClients(kc);
  const pods = await core.listNamespacedPod({ namespace, labelSelector: AGENT_SELECTOR });
  const running = pods.items.filter((p) => p.status?.phase === "Running" && p.spec?.nodeName);
  if (running.length === 0)
    throw new Error(
      `no running agent pods (${AGENT_SELECTOR}) in namespace ${namespace}: is Sluice installed there (--sluice-namespace)? Against \`sluice lab up\`, use --lab`,
    );
  const forward = new PortForward(kc, true);
  return pick(
    running.map((p) => {
      const name = p.metadata?.name ?? "";
      // The chart names the container port; an agent without one serves the default.
      const port =
        p.spec?.containers.flatMap((c) => c.ports ?? []).find((x) => x.name === "monitor")?.containerPort ??
        DEFAULT_MONITOR_PORT;
      const via = `${namespace}/${name}:${port}`;
      return {
        node: p.spec?.nodeName ?? "",
        via,
        connection: { connect: () => portForwardStream(forward, namespace, name, port, via) },
      };
    }),
    nodes,
  );
}

function pick(targets: MonitorTarget[], nodes: readonly string[] | undefined): MonitorTarget[] {
  if (!nodes) return targets.sort((a, b) => (a.node < b.node ? -1 : 1));
  const missing = nodes.filter((n) => !targets.some((t) => t.node === n));
  if (missing.length > 0)
    throw new Error(
      `--node: no agent on ${missing.join(", ")} (agents on: ${targets.map((t) => t.node).join(", ") || "none"})`,
    );
  return targets.filter((t) => nodes.includes(t.node));
}

// One TCP connection to the pod's port, as a byte stream: what one HTTP request runs over. The
// kubelet reports a failed connection (nothing listening) on the port's error channel.
function portForwardStream(
  forward: PortForward,
  namespace: string,
  pod: string,
  port: number,
  via: string,
): Duplex {
  const toPod = new PassThrough();
  const fromPod = new PassThrough();
  const errors = new PassThrough();
  const stream = Duplex.from({ readable: fromPod, writable: toPod });
  errors.on("data", (d: Buffer) => stream.destroy(new Error(`port-forward ${via}: ${d.toString().trim()}`)));
  forward.portForward(namespace, pod, [port], fromPod, errors, toPod).then(
    (ws) => {
      if (typeof ws === "function") return;
      ws.on("close", () => fromPod.end());
      stream.on("close", () => ws.close());
    },
    (e: unknown) =>
      stream.destroy(
        new Error(`port-forward ${via}: ${e instanceof Error ? e.message : "the API server refused it"}`),
      ),
  );
  return stream;
}
