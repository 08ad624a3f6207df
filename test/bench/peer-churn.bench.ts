// What one peer change costs the agent's compiler at issue 14's scale (50,000 pods in 5,000
// namespaces, 10,000 identities, 1,000 policies of every kind, the scale rig's shapes): a new
// identity, a relabelled remote pod, a relabelled namespace, each recorded and recompiled as the
// agent's keyed pass does (record + recompile with no endpoint named). Pods are cached as the agent's
// informer keeps them (kube/cache-view.ts nodePodView). The baseline is a compile from scratch of the
// same inputs in the same run: what every such change cost before the compiler kept its universe's
// derivations and recompiled only the endpoints a changed peer reaches. Also the heap the compiler
// holds beside the objects (after gc), against the heap of the objects themselves as the baseline.
// Run: node --expose-gc test/bench/peer-churn.bench.ts
import type { Namespace, Pod } from "../../operator/src/api/k8s.ts";
import type { SecurityIdentity } from "../../operator/src/api/types.generated.ts";
import { type LabelSet, securityLabels } from "../../operator/src/identity/labels.ts";
import { nodePodView } from "../../operator/src/kube/cache-view.ts";
import { IncrementalCompiler, inputsFromObjects } from "../../operator/src/policy/index.ts";
import {
  FULL_SCALE,
  namespaceObject,
  nodeObject,
  podObject,
  podPlace,
  podStatus,
  policyObject,
  simNodeName,
} from "../scale/shape.ts";
import { machine, markdownTable, median, ratio } from "./table.ts";

const s = FULL_SCALE;
const NODE = simNodeName(1);
const RUNS = 15;
const view = nodePodView(NODE);
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

const heapUsed = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};
const heapBefore = heapUsed();
const sim = s.nodes - 1;
const objects: unknown[] = [];
for (let i = 0; i < s.namespaces; i++) objects.push(namespaceObject(i));
for (let i = 1; i <= sim; i++) objects.push(nodeObject(simNodeName(i)));
const podAt = (i: number, labels?: Record<string, string>): Pod => {
  const p = podPlace(s, i, sim);
  return view({ ...podObject({ ...p, ...(labels && { labels }) }), ...podStatus(p.ip) } as Pod);
};
for (let i = 0; i < s.pods; i++) objects.push(podAt(i));
for (let i = 0; i < s.policies; i++) objects.push(policyObject(s, i, true));
const heapObjects = heapUsed();
const inputs = inputsFromObjects(objects);

function time(f: () => void): number {
  const t0 = performance.now();
  f();
  return performance.now() - t0;
}

gc();
const scratch = [0, 1, 2].map(() => time(() => new IncrementalCompiler({ ...inputs }, { node: NODE })));
const inc = new IncrementalCompiler({ ...inputs }, { node: NODE });
const local = inc.localEndpoints;
const heapCompiler = heapUsed();

const identity = (id: number, labels: LabelSet): SecurityIdentity =>
  ({ kind: "SecurityIdentity", metadata: { name: String(id) }, spec: { labels } }) as SecurityIdentity;
// Security labels of a pod with these labels in the rig's namespace i, or in a namespace without the
// rig's labels (no team: no policy's peers select its pods).
const podSetIn = (nsIndex: number, labels: Record<string, string>) => {
  const ns = namespaceObject(nsIndex);
  return securityLabels({ metadata: { namespace: ns.metadata.name, labels } }, ns);
};
// A namespace of a local endpoint: its namespace policies' peers (tier web) reach new label sets there.
const localNs = Number(local[0].key.split("/")[0].slice("scale-".length));
const unreached = (k: number) =>
  securityLabels({ metadata: { namespace: "elsewhere", labels: { app: `batch-${k}` } } }, undefined);
const reached = (k: number) => podSetIn(localNs, { app: `web-${k}`, tier: "web" });

type Pass = { recompiled: number; ms: number };
function pass(changes: () => void): Pass {
  let recompiled = 0;
  const ms = time(() => {
    changes();
    recompiled = inc.recompile([]).recompiled.length;
  });
  return { recompiled, ms };
}
function runs(name: string, f: (k: number) => void): [string, Pass[]] {
  gc();
  return [name, Array.from({ length: RUNS }, (_, k) => pass(() => f(k)))];
}

const cases = [
  runs("a new identity no local rule reaches", (k) =>
    inc.record({ type: "upsert", object: identity(800_000 + k, unreached(k)) }),
  ),
  runs("a new identity a local endpoint's rule reaches", (k) =>
    inc.record({ type: "upsert", object: identity(900_000 + k, reached(k)) }),
  ),
  runs("a remote pod relabelled (to an existing label set)", (k) =>
    inc.record({
      type: "upsert",
      object: podAt(7 * k + 3, k % 2 ? { app: "app-0", tier: "web" } : { app: "app-1", tier: "api" }),
    }),
  ),
  runs("a namespace relabelled (its 10 pods' label sets change)", (k) => {
    const ns = namespaceObject((localNs + 2 + k) % s.namespaces) as Namespace;
    inc.record({
      type: "upsert",
      object: { ...ns, metadata: { ...ns.metadata, labels: { ...ns.metadata.labels, team: "t-moved" } } },
    });
  }),
];

const base = median(scratch);
const rows = [
  [
    `compile from scratch (baseline): ${s.pods} pods, ${inputs.identities.length} identities, ${s.policies} policies, ${local.length} local endpoints`,
    `${base.toFixed(0)} ms`,
    "1.00×",
    "",
  ],
  ...cases.map(([name, ps]) => {
    const ms = median(ps.map((p) => p.ms));
    return [
      `${name}: record + recompile (median of ${RUNS})`,
      `${ms.toFixed(0)} ms`,
      ratio(ms, base),
      `endpoints recompiled: median ${median(ps.map((p) => p.recompiled))} of ${local.length}`,
    ];
  }),
];
console.log(`peer churn at full scale — ${await machine()}`);
console.log(markdownTable(["what", "time", "× baseline", "notes"], rows));
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
const [held, compiler] = [heapObjects - heapBefore, heapCompiler - heapObjects];
console.log(
  markdownTable(
    ["heap held (after gc)", "MiB", "× baseline"],
    [
      ["the objects as the agent's caches hold them (baseline)", mib(held), "1.00×"],
      [
        "the incremental compiler built from them (its inputs, universe, endpoints)",
        mib(compiler),
        ratio(compiler, held),
      ],
    ],
  ),
);
