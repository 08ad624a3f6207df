// A real kube-apiserver + etcd for integration tests and benchmarks (operator/src/lab/local-apiserver.ts,
// the same server `sluice lab up` runs). With SLUICE_USE_KUBECONFIG=1 and KUBECONFIG set, the cluster
// KUBECONFIG names is used instead and nothing is started.
import { KubeConfig } from "@kubernetes/client-node";
import {
  type LocalApiServerOptions,
  REPO_ROOT,
  startLocalApiServer,
} from "../../operator/src/lab/local-apiserver.ts";

export { kubectl } from "../../operator/src/lab/cluster-setup.ts";

export const repoRoot = REPO_ROOT;

export interface ApiServer {
  kubeconfigPath: string;
  /** https URL of the API server. */
  server: string;
  /** Milliseconds from spawn to the ready line (0 for an external cluster). */
  startupMs: number;
  /** True when KUBECONFIG's cluster is used instead of a local server. */
  external: boolean;
  stop(): Promise<void>;
}

export type StartApiServerOptions = Pick<
  LocalApiServerOptions,
  "authorizationMode" | "extraArgs" | "timeoutMs"
>;

function externalCluster(): ApiServer | undefined {
  const path = process.env.KUBECONFIG;
  if (process.env.SLUICE_USE_KUBECONFIG !== "1" || !path) return undefined;
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  const server = kc.getCurrentCluster()?.server;
  if (!server) throw new Error(`KUBECONFIG ${path}: current context names no cluster server`);
  return { kubeconfigPath: path, server, startupMs: 0, external: true, stop: async () => {} };
}

export async function startApiServer(opts: StartApiServerOptions = {}): Promise<ApiServer> {
  const external = externalCluster();
  if (external) return external;
  const s = await startLocalApiServer(opts);
  return {
    kubeconfigPath: s.kubeconfigPath,
    server: s.server,
    startupMs: s.startupMs,
    external: false,
    stop: s.stop,
  };
}
