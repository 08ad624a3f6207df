// The flags of the commands that talk to a cluster (agent, operator): kubectl's --kubeconfig and
// --context, with KUBECONFIG (a path list too) and then ~/.kube/config or the pod's service account
// when no --kubeconfig is given, so one kubeconfig serves sluice and kubectl alike.
import type { KubeConfig } from "@kubernetes/client-node";
import { loadKubeConfig } from "../kube/client.ts";
import { UsageError } from "./usage.ts";

export const kubeOptions = {
  kubeconfig: { type: "string" },
  context: { type: "string" },
} as const;

export const kubeUsage =
  "[--kubeconfig <path>] [--context <name>]   (default: KUBECONFIG, ~/.kube/config or the pod's service account)";

export function kubeConfigFromFlags(values: { kubeconfig?: string; context?: string }): KubeConfig {
  if (values.context === "") throw new UsageError("--context: a context name is required");
  // Not `?? process.env.KUBECONFIG`: the default loader reads it, path lists included.
  return loadKubeConfig(values.kubeconfig, values.context);
}
