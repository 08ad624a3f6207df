// What the integration suites and benchmarks set up in a real API server: Sluice's CRDs and a lab's
// topology (Nodes, Namespaces, Pods with their IPs), through kubectl; the same code `sluice lab up` runs.
export { applyCrds, kubectlOk, registerLabCluster } from "../../operator/src/lab/cluster-setup.ts";
