// The real-cluster suite on a routed CNI (ptp + host-local: one veth per pod with a host route, as
// Calico does), with the agent restart and the uninstall (test/cluster/support/suite.ts).
import { clusterSuite } from "./support/suite.ts";

clusterSuite("ptp", { lifecycle: true });
