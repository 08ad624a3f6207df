// The agents a command that reads the nodes (`sluice monitor`, `sluice stats`) reaches, from its flags:
// with --lab those of `sluice lab up` (no kubeconfig applies), else the cluster's agent pods through
// the API server; --node narrows both to a comma list of nodes.
import type { MonitorTarget } from "../monitor/client.ts";
import { kubeConfigFromFlags } from "./kube-flags.ts";
import { UsageError } from "./usage.ts";

export interface AgentTargetFlags {
  node?: string;
  lab?: boolean;
  kubeconfig?: string;
  context?: string;
  "sluice-namespace": string;
}

export async function agentTargetsFromFlags(values: AgentTargetFlags): Promise<MonitorTarget[]> {
  const nodes = values.node
    ?.split(",")
    .map((n) => n.trim())
    .filter((n) => n !== "");
  if (values.lab && (values.kubeconfig !== undefined || values.context !== undefined))
    throw new UsageError(
      "--lab: the lab's agents are reached without a kubeconfig; drop --kubeconfig/--context",
    );
  const { labTargets, clusterTargets } = await import("../monitor/targets.ts");
  return values.lab
    ? labTargets(nodes)
    : await clusterTargets(kubeConfigFromFlags(values), values["sluice-namespace"], nodes);
}
