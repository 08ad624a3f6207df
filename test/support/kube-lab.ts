// The demo lab registered in a real API server with a Kubernetes-mode agent per node, as the agent's
// integration tests share it: kubectl against it, and probes until real packets measure what the
// compiler says.
import { join } from "node:path";
import { loadObjects } from "../../operator/src/manifests/load.ts";
import type { Lab } from "../../operator/src/lab/lab.ts";
import { type MatrixRow, sortRows } from "../../operator/src/api/matrix-rows.ts";
import { computeMatrix, inputsFromObjects } from "../../operator/src/policy/index.ts";
import { type ApiServer, repoRoot, startApiServer } from "./apiserver.ts";
import { createLabCluster, kubectlOk } from "../../operator/src/lab/cluster-setup.ts";

export const DEMO_TOPOLOGY = join(repoRoot, "samples/demo/topology.yaml");
export const DEMO_POLICIES = join(repoRoot, "samples/demo/policies");

export interface KubeLab {
  api: ApiServer;
  lab: Lab;
  kubectl(args: string[], input?: string): Promise<string>;
  startAgents(): Promise<void>;
  /** Probes until the lab measures want (the agents apply asynchronously); returns the last result. */
  probeUntil(want: MatrixRow[], timeoutMs?: number): Promise<MatrixRow[]>;
  destroy(): Promise<void>;
}

/** What the compiler says the objects' pods may do to each other. */
export function expectedMatrix(objects: readonly unknown[]): MatrixRow[] {
  return sortRows(computeMatrix(inputsFromObjects(objects)));
}

export async function startKubeLab(topologyFile = DEMO_TOPOLOGY): Promise<KubeLab> {
  const api = await startApiServer();
  let l: Lab;
  try {
    l = await createLabCluster(api, loadObjects([topologyFile]));
  } catch (err) {
    await api.stop();
    throw err;
  }
  const kl: KubeLab = {
    api,
    lab: l,
    kubectl: (args, input) => kubectlOk(args, api.kubeconfigPath, input),
    startAgents: async () => {
      for (const n of l.plan.nodes) await l.startKubeAgent(n.name, api.kubeconfigPath);
    },
    probeUntil: async (want, timeoutMs = 30_000) => {
      const t0 = Date.now();
      for (;;) {
        const got = sortRows((await l.probe()).results);
        if (JSON.stringify(got) === JSON.stringify(want) || Date.now() - t0 > timeoutMs) return got;
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    destroy: async () => {
      await l.destroy();
      await api.stop();
    },
  };
  return kl;
}
