// Scale benchmark (issue 14 §1): the scale rig (test/scale) at a tenth of issue 14's cluster as the
// baseline, then at full scale (1,000 nodes, 50,000 pods in 5,000 namespaces with 10,000 label sets,
// 1,000 policies), in the same run: the real API server, the real operator and one real agent, the
// other nodes simulated. Prints the tables recorded in docs/performance.md ("Scale"). Takes about
// half an hour on 2 vCPUs; SCALE_FACTORS=0.1 alone takes a few minutes (test/scale/run.ts lists the
// other knobs). Run as root:
//   node --disable-warning=ExperimentalWarning test/bench/scale.bench.ts
import { runScale } from "../scale/run.ts";
import { requireRoot } from "./table.ts";

requireRoot("scale.bench");
await runScale();
process.exit(0);
