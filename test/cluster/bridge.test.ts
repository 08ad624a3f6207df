// The real-cluster suite on a bridged CNI (bridge + host-local, as Flannel does): the route to a pod
// goes to the bridge, so the agent learns the pod's veth from the chained plugin.
import { clusterSuite } from "./support/suite.ts";

clusterSuite("bridge", { lifecycle: false });
